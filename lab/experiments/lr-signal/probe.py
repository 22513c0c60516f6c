"""How well can the run's own signals tell how far its base LR is from the best one? (not a learner)

Every (family, optimizer, seed) of the zoo is trained with cosine at a grid of base LRs (half-decade steps); the
label of a run is ``log10(best base LR / its base LR)`` (the best by final validation loss, per seed). The features
the learners read (``FeatureExtractor``, the shipped code) are recorded at a few fractions of the run, with two
candidates the learners do not read:

- ``hg_f``, ``hg_s``: the hypergradient alignment ``cos(g_t, m_{t-1})`` (EMA over the fast / slow time scale), the
  gradient against the previous step's momentum — derived from the sums the reader already takes
  (``g·m_{t-1} = (g·m_t - (1-β)‖g‖²)/β``), free of the self-term that ``grad_momentum_cos`` carries;
- ``probe``: an LR probe: at 10 % of the run the LR is raised ×``k`` for ``K`` steps; the loss change over those
  steps against the first-order prediction (Σ g·Δw), read as the curvature ratio is, and the features after it.

Then, leaving one family out at a time, a gradient-boosted regressor (and a ridge) predicts the label from the
features; its error, with and without the candidates, against the seed-to-seed disagreement of the best LR itself.

    python lab/experiments/lr-signal/probe.py collect runs/lr-signal.json [--families scratch|finetune]
    python lab/experiments/lr-signal/probe.py analyse runs/lr-signal.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

import numpy as np
import torch

from metalr_hf.features import FEATURE_NAMES, FeatureExtractor
from metalr_hf.metatrain.families import DECLARED_FINETUNE, FINETUNE, HELD_OUT, META_TRAIN, TaskSpec
from metalr_hf.metatrain.simulate import PriorPolicy, simulate
from metalr_hf.metatrain.zoo import make_populations

FRACTIONS = (0.05, 0.1, 0.2, 0.3)
LRS = {"adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1), "sgd": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)}
FT_LRS = {"adam": (3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3), "sgd": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)}
ARMS = {"control": (1.0, 0), "probe2": (4.0, 2), "probe5": (4.0, 5)}  # LR factor, steps
BETA = 0.9  # the simulator's Adam β₁ and SGD momentum
HORIZON = 300
EXTRA = ("hg_f", "hg_s", "probe")
CONTEXT = ("progress", "prior", "adaptive", "prev_delta", "nonfinite_recent", "loss_missing", "pretrained")


class Recorder(PriorPolicy):
    """Cosine for every run, raised ×factor for ``steps`` steps from 10 % of the run; records the features."""

    def __init__(self, pop, factor: float, steps: int):
        super().__init__("cosine", pop)
        B, self.T = pop.size, float(pop.horizon[0])
        self.factor, self.start, self.stop = factor, int(0.1 * self.T), int(0.1 * self.T) + steps
        self.fx = FeatureExtractor(pop.horizon, batch_size=B, pretrained=torch.tensor(
            [float(s.family in FINETUNE) for s in pop.specs]))  # fmt: skip
        zeros = lambda: torch.zeros(B, dtype=torch.float64)  # noqa: E731
        self.mm_prev, self.hg_f, self.hg_s, self.obs, self.pred = zeros(), zeros(), zeros(), zeros(), zeros()
        self.prev_loss, self.prev_pred = None, None
        self.a_f, self.a_s = 1.0 / float(self.fx.tau_f[0]), 1.0 / float(self.fx.tau_s[0])  # the features' time scales
        self.out: dict[float, list] = {}

    def scale(self, step):
        s = super().scale(step)
        return s * self.factor if self.start <= step < self.stop else s

    def update(self, s, step=None):
        t = step
        feats = self.fx.update(s, super().scale(t), torch.zeros(self.pop.size, dtype=torch.float64)).double()
        cos = ((s.gm - (1 - BETA) * s.gg) / BETA) / torch.sqrt(s.gg * self.mm_prev).clamp_min(1e-30)
        cos = torch.where(self.mm_prev > 0, cos.nan_to_num(0.0).clamp(-1, 1), torch.zeros_like(cos))
        self.hg_f += self.a_f * (cos - self.hg_f)
        self.hg_s += self.a_s * (cos - self.hg_s)
        self.mm_prev = s.mm.clone()
        if self.prev_loss is not None and self.start < t <= self.stop:  # the loss change over the probe's steps
            self.obs += s.loss - self.prev_loss
            self.pred += self.prev_pred
        self.prev_loss, self.prev_pred = s.loss.clone(), s.g_upd.clone()
        probe = (self.obs / self.pred.where(self.pred.abs() > 1e-30, torch.full_like(self.pred, -1e-30))).clamp(-5, 5)
        for fr in FRACTIONS:
            if t + 1 == int(fr * self.T) + (self.stop - self.start if fr > 0.1 else 0) + 1:
                extra = torch.stack([self.hg_f, self.hg_s, probe.nan_to_num(0.0)], 1)
                self.out[fr] = torch.cat([feats, extra], 1).tolist()
        return s.finite()


def collect(path: str, families: str, seeds=(0, 1)) -> None:
    fams, lrs = (META_TRAIN + HELD_OUT, LRS) if families == "scratch" else (DECLARED_FINETUNE, FT_LRS)
    specs = [TaskSpec(f, 1000 + seed, 32, opt, lr, HORIZON, HORIZON // 20, 64)
             for f in fams for opt in ("adam", "sgd") for seed in seeds for lr in lrs[opt]]  # fmt: skip
    rows: dict[str, list] = {arm: [None] * len(specs) for arm in ARMS}
    for idx, pop in make_populations(specs):
        for arm, (factor, steps) in ARMS.items():
            rec = Recorder(pop, factor, steps)
            res = simulate(pop, rec, seed=0)
            for col, i in enumerate(idx):
                rows[arm][i] = {"final": float(res.final_val_loss[col]),
                                "feats": {str(fr): rec.out[fr][col] for fr in FRACTIONS}}  # fmt: skip
        print(pop.kind, len(idx), "runs", flush=True)
    with open(path, "w") as f:
        json.dump({"families": families, "specs": [s.to_dict() for s in specs], "rows": rows}, f)


def analyse(path: str) -> str:
    from sklearn.ensemble import HistGradientBoostingRegressor

    data = json.load(open(path))
    specs, rows = data["specs"], data["rows"]
    names = list(FEATURE_NAMES) + list(EXTRA)
    groups, best = defaultdict(list), {}
    for i, s in enumerate(specs):
        groups[(s["family"], s["optimizer"], s["seed"])].append(i)
    control = rows["control"]
    y = np.zeros(len(specs))
    for key, idx in groups.items():
        final = [control[i]["final"] if math.isfinite(control[i]["final"]) else 1e9 for i in idx]
        best[key] = math.log10(specs[idx[int(np.argmin(final))]]["base_lr"])
        for i in idx:
            y[i] = best[key] - math.log10(specs[i]["base_lr"])
    seeds = sorted({s["seed"] for s in specs})
    diff = [best[(f, o, seeds[0])] - best[(f, o, seeds[1])] for (f, o, s) in best if s == seeds[0]]
    lines = [f"{len(specs)} runs ({data['families']}), {len(groups)} (family, optimizer, seed) cells",
             f"best base LR, seed against seed: RMSE {math.sqrt(np.mean(np.square(diff))):.2f} decades "
             f"(label noise of one seed about {math.sqrt(np.mean(np.square(diff)) / 2):.2f})", "",
             "| arm | fraction | features | GBM RMSE all / near best | ridge RMSE all / near best |",
             "|---|---|---|---|---|"]  # fmt: skip
    fam = np.array([s["family"] for s in specs])
    adam = np.array([s["optimizer"] != "sgd" for s in specs], dtype=float)
    near = np.abs(y) <= 1.01  # the hard cases: within 10× of the best
    base = [n for n in FEATURE_NAMES if n not in CONTEXT]
    sets = {
        "none (optimizer only)": [],
        "read today": base,
        "+ hypergradient": base + ["hg_f", "hg_s"],
        "+ probe": base + ["probe"],
    }
    for arm in ARMS:
        for fr in ("0.1", "0.2"):
            X = np.clip(np.array([rows[arm][i]["feats"][fr] for i in range(len(specs))]), -5, 5)
            for set_name, cols in sets.items():
                if set_name.startswith("+") and (set_name == "+ probe") != (arm != "control"):
                    continue
                if set_name.startswith("none") and (arm != "control" or fr != "0.1"):
                    continue
                cols = [names.index(n) for n in cols]
                errs = {"gbm": ([], []), "ridge": ([], [])}
                for f in np.unique(fam):
                    tr, te = fam != f, fam == f
                    a, b = np.c_[X[tr][:, cols], adam[tr]], np.c_[X[te][:, cols], adam[te]]
                    model = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, random_state=0)
                    preds = {"gbm": model.fit(a, y[tr]).predict(b)}
                    a1, b1 = np.c_[a, np.ones(len(a))], np.c_[b, np.ones(len(b))]
                    preds["ridge"] = b1 @ np.linalg.solve(a1.T @ a1 + 1e-2 * np.eye(a1.shape[1]), a1.T @ y[tr])
                    for k, p in preds.items():
                        errs[k][0].extend((p - y[te]) ** 2)
                        errs[k][1].extend(((p - y[te]) ** 2)[near[te]])
                cell = {k: f"{math.sqrt(np.mean(e)):.2f} / {math.sqrt(np.mean(n)):.2f}" for k, (e, n) in errs.items()}
                lines.append(f"| {arm} | {fr} | {set_name} | {cell['gbm']} | {cell['ridge']} |")
    from scipy.stats import spearmanr

    lines += ["", "| feature (at 20 %) | Spearman with the label: all / near best |", "|---|---|"]
    for arm, name in [("control", n) for n in ("update_ratio", "grad_snr", "grad_momentum_cos", "curvature_ratio",
                                               "hg_s")] + [("probe2", "probe"), ("probe5", "probe")]:  # fmt: skip
        x = np.array([rows[arm][i]["feats"]["0.2"][names.index(name)] for i in range(len(specs))])
        both = spearmanr(x, y)[0], spearmanr(x[near], y[near])[0]
        lines.append(f"| {name}{'' if arm == 'control' else f' ({arm})'} | {both[0]:+.2f} / {both[1]:+.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("collect", "analyse"))
    parser.add_argument("path")
    parser.add_argument("--families", choices=("scratch", "finetune"), default="scratch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.mode == "collect":
        collect(args.path, args.families)
    else:
        print(analyse(args.path))


if __name__ == "__main__":
    main()
