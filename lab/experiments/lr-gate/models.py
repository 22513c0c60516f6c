"""Other estimators than the ridge: gradient boosting and a small MLP, on the features at 5-20 % of the run.

python lab/experiments/lr-gate/models.py   # after gate.py collect; leave-one-family-out and held-out errors
"""

import math
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from gate import META_TRAIN, dataset  # noqa: E402

MODELS = {
    "gbm": lambda: HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, random_state=0),
    "mlp": lambda: make_pipeline(
        StandardScaler(), MLPRegressor(hidden_layer_sizes=(32,), alpha=1e-2, max_iter=2000, random_state=0)
    ),
}


def score(p, y):
    held = np.mean(np.abs(p[np.abs(y) < 0.01]) < 0.5)
    boosted = np.mean(p[np.abs(y - 1) < 0.01] >= 0.5)
    return f"rmse {math.sqrt(np.mean((p - y) ** 2)):.2f} held {held:.0%} boost10x {boosted:.0%}"


X = {}
for fr in ("0.05", "0.1", "0.2"):
    X[fr], y, fam = dataset("runs/lr-gate.json", fr)
X["0.05+0.1"] = np.c_[X["0.05"], X["0.1"]]
X["all"] = np.c_[X["0.05"], X["0.1"], X["0.2"]]
train = np.isin(fam, META_TRAIN)
for name, x in X.items():
    for model_name, make in MODELS.items():
        preds, labels = [], []
        for f in META_TRAIN:
            tr, te = train & (fam != f), fam == f
            preds.append(make().fit(x[tr], y[tr]).predict(x[te]))
            labels.append(y[te])
        lofo = score(np.concatenate(preds), np.concatenate(labels))
        held_out = score(make().fit(x[train], y[train]).predict(x[~train]), y[~train])
        print(f"{name:9s} {model_name}: LOFO {lofo} | held-out {held_out}", flush=True)
