"""A hold gate around the learner: the warmup read as an LR range test (issue 29, item 2; an experiment).

Until ``decide_at`` of the run the learner's correction is held at 0 (the run follows the WSD prior alone). At that
step a linear estimator reads the run's features (those the learner reads, the same extractor) and predicts
``log10(right base LR / this base LR)``; from then on

- predicted ≥ ``up`` decades too small: the learner's correction as it is (boosts allowed: the rescue);
- predicted ≤ ``-down``: only its cuts (δ ≤ 0);
- in between (near the right LR): δ ≡ 0 — the prior alone, which is within 1.02 of the best stock schedule at the
  right LR on 12 of 14 held-out tasks (``lab/results/declared-wsd-alone``).

The estimator is fitted on the meta-training families only (never the held-out ones it is scored on):

    python lab/experiments/lr-gate/gate.py collect runs/lr-gate.json        # meta-training + held-out families
    python lab/experiments/lr-gate/gate.py fit runs/lr-gate.json runs/lr-gate-estimator.json
    python lab/experiments/lr-gate/gate.py eval runs/lr-gate-estimator.json metalr-default-v3 OUT [--up U --down D]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict

import numpy as np
import torch

from metalr_hf import MetaLearner
from metalr_hf.features import FEATURE_NAMES, FeatureExtractor
from metalr_hf.metatrain.evaluate import LR_GRID
from metalr_hf.metatrain.families import FINETUNE, HELD_OUT, META_TRAIN, TaskSpec
from metalr_hf.metatrain.simulate import PriorPolicy, simulate
from metalr_hf.metatrain.zoo import make_populations

FRACTIONS = (0.05, 0.1, 0.15, 0.2)
HORIZON = 300
CONTEXT = ("progress", "prior", "prev_delta", "nonfinite_recent", "loss_missing", "pretrained")
READ = [n for n in FEATURE_NAMES if n not in CONTEXT]  # what the estimator reads (with `adaptive`)
CLIP = 5.0


class Recorder(PriorPolicy):
    """WSD for every run (what the gated learner runs until its decision); records the features."""

    def __init__(self, pop):
        super().__init__("wsd", pop)
        self.fx = FeatureExtractor(pop.horizon, batch_size=pop.size, pretrained=torch.tensor(
            [float(s.family in FINETUNE) for s in pop.specs]))  # fmt: skip
        self.out: dict[float, list] = {}

    def update(self, s, step=None):
        feats = self.fx.update(s, super().scale(step), torch.zeros(self.pop.size, dtype=torch.float64)).double()
        progress = float(feats[0, FEATURE_NAMES.index("progress")])
        for fr in FRACTIONS:
            if fr not in self.out and progress >= fr:
                self.out[fr] = feats.tolist()
        return s.finite()


def collect(path: str, seeds=(1000, 1001, 1002)) -> None:
    grid = [(f, opt, seed, lr) for f in META_TRAIN + HELD_OUT for opt in ("adam", "sgd") for seed in seeds
            for lr in LR_GRID[opt]]  # fmt: skip
    specs = [TaskSpec(f, seed, 32, opt, lr, HORIZON, HORIZON // 20, 64) for f, opt, seed, lr in grid]
    rows: list = [None] * len(specs)
    for idx, pop in make_populations(specs):
        rec = Recorder(pop)
        res = simulate(pop, rec, seed=0)
        for col, i in enumerate(idx):
            feats = {str(fr): rec.out[fr][col] for fr in FRACTIONS}
            rows[i] = {"final": float(res.final_val_loss[col]), "feats": feats}
        print(pop.kind, len(idx), "runs", flush=True)
    with open(path, "w") as f:
        json.dump({"specs": [s.to_dict() for s in specs], "rows": rows}, f)


def dataset(path: str, fraction: str):
    """Features ``X`` (clipped), labels ``y`` (log10 right LR / base LR; the right LR by WSD's seed mean), families."""
    data = json.load(open(path))
    specs, rows = data["specs"], data["rows"]
    finals = defaultdict(lambda: defaultdict(list))
    for s, r in zip(specs, rows):
        f = r["final"] if math.isfinite(r["final"]) else 1e9
        finals[(s["family"], s["optimizer"])][s["base_lr"]].append(min(f, 1e9))
    right = {k: min(v, key=lambda lr: np.mean(v[lr])) for k, v in finals.items()}
    X = np.array([[r["feats"][fraction][FEATURE_NAMES.index(n)] for n in READ] for r in rows])
    X = np.clip(np.nan_to_num(X), -CLIP, CLIP)
    y = np.array([math.log10(right[(s["family"], s["optimizer"])] / s["base_lr"]) for s in specs])
    fam = np.array([s["family"] for s in specs])
    return X, y, fam


def ridge(X, y, lam=1e-1):
    A = np.c_[X, np.ones(len(X))]
    reg = lam * np.eye(A.shape[1])
    reg[-1, -1] = 0.0
    w = np.linalg.solve(A.T @ A + reg, A.T @ y)
    return w[:-1], float(w[-1])


def fit(path: str, out: str, fraction: str = "0.05") -> None:
    lines = ["| fraction | LOFO RMSE (train fams) all / near | held-out RMSE all / near | right LR held (|pred|<0.5) "
             "| 10× small boosted (pred≥0.5) | boosted at up 0.7 / 1.0: right LR, 0.1× |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    best = None
    for fr in map(str, FRACTIONS):
        X, y, fam = dataset(path, fr)
        train = np.isin(fam, META_TRAIN)
        errs = []
        for f in META_TRAIN:
            tr, te = train & (fam != f), fam == f
            w, b = ridge(X[tr], y[tr])
            errs.append(X[te] @ w + b - y[te])
        e = np.concatenate(errs)
        yt = np.concatenate([y[fam == f] for f in META_TRAIN])
        w, b = ridge(X[train], y[train])
        ho = ~train
        p = X[ho] @ w + b
        near = np.abs(y[ho]) <= 1.01
        held = np.mean(np.abs(p[np.abs(y[ho]) < 0.01]) < 0.5)
        boosted = np.mean(p[np.abs(y[ho] - 1) < 0.01] >= 0.5)
        rmse = lambda v: math.sqrt(np.mean(np.square(v)))  # noqa: E731
        yh = y[ho]
        roc = " / ".join(f"{np.mean(p[np.abs(yh) < 0.01] >= up):.0%}, {np.mean(p[np.abs(yh - 1) < 0.01] >= up):.0%}"
                         for up in (0.7, 1.0))  # fmt: skip
        lines.append(f"| {fr} | {rmse(e):.2f} / {rmse(e[np.abs(yt) <= 1.01]):.2f} | {rmse(p - y[ho]):.2f} / "
                     f"{rmse((p - y[ho])[near]):.2f} | {held:.0%} | {boosted:.0%} | {roc} |")  # fmt: skip
        if fr == fraction:
            best = {"fraction": float(fr), "features": READ, "weights": w.tolist(), "bias": b, "clip": CLIP}
    print("\n".join(lines))
    with open(out, "w") as f:
        json.dump(best, f, indent=1)


class GatedLearner(MetaLearner):
    """``inner``'s correction behind the hold gate; its state is the inner state, then [decided, prediction]."""

    def __init__(self, inner: MetaLearner, estimator: dict, up: float = 0.5, down: float = 0.5):
        torch.nn.Module.__init__(self)
        self.inner = inner
        self.config = inner.config
        self.idx = [FEATURE_NAMES.index(n) for n in estimator["features"]]
        self.w = torch.tensor(estimator["weights"], dtype=torch.float32)
        self.b, self.clip, self.at = float(estimator["bias"]), float(estimator["clip"]), float(estimator["fraction"])
        self.up, self.down = up, down

    @property
    def device(self):
        return self.inner.device

    @property
    def state_size(self):
        return self.inner.state_size + 2

    def init_state(self, batch_size: int = 1):
        return torch.zeros(batch_size, self.state_size)

    def one_run_step(self):
        return None

    def forward(self, features, state):
        S = self.inner.state_size
        delta, inner = self.inner(features, state[:, :S])
        decided, pred = state[:, S], state[:, S + 1]
        progress = features[:, FEATURE_NAMES.index("progress")].float()
        now = (decided < 0.5) & (progress >= self.at)
        est = features[:, self.idx].float().nan_to_num(0.0).clamp(-self.clip, self.clip) @ self.w + self.b
        pred = torch.where(now, est, pred)
        decided = torch.where(now, torch.ones_like(decided), decided)
        gated = torch.where(pred >= self.up, delta, torch.where(pred <= -self.down, delta.clamp(max=0.0), 0.0 * delta))
        out = torch.where(decided > 0.5, gated, 0.0 * delta)
        return out, torch.cat([inner, decided[:, None], pred[:, None]], 1)


def evaluate_gate(estimator: str, learner: str, out: str, ups: list[float], down: float) -> None:
    """The declared table on the held-out zoo for each threshold ``up`` (``OUT-upU.md``/``.json``; the baselines are
    simulated once)."""
    from metalr_hf.metatrain.evaluate import EvalConfig, evaluate, results_text

    cfg = EvalConfig(prior="wsd")
    for up in ups:
        gated = GatedLearner(MetaLearner.from_pretrained(learner), json.load(open(estimator)), up, down)
        t0 = time.time()
        result = evaluate(gated, cfg)
        d = result["summary"]["declared"]
        with open(f"{out}-up{up:g}.md", "w") as f:
            f.write(results_text(cfg, result["summary"], None) + f"\n\n`{' '.join(sys.argv)}` (up {up:g}): "
                    f"{time.time() - t0:.0f} s\n")  # fmt: skip
        with open(f"{out}-up{up:g}.json", "w") as f:
            json.dump(d, f, indent=1, default=str)
        print(f"up {up:g}:", {k: v for k, v in d.items() if k != "tasks"}, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("collect", "fit", "eval"))
    p.add_argument("paths", nargs="+")
    p.add_argument("--up", default="0.5", help="comma-separated thresholds (decades)")
    p.add_argument("--fraction", default="0.05")
    p.add_argument("--down", type=float, default=0.5)
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.mode == "collect":
        collect(a.paths[0])
    elif a.mode == "fit":
        fit(*a.paths, a.fraction)
    else:
        evaluate_gate(*a.paths, [float(u) for u in a.up.split(",")], a.down)


if __name__ == "__main__":
    main()
