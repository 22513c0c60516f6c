"""An interventional LR probe: does the run speed up when its LR is raised? (issue 29, item 2; an experiment)

The passive reading of a run's features locates its right LR within about 0.7 decades (``../lr-gate/``), not
enough to tell a right LR from one 3-10x too small. This asks the run instead: after the warmup, K steps at the
prior (window A), then K steps at ``m``x the prior (window B). Where the LR is too small the loss falls about m
times faster in B; where it is right, raising it buys little or nothing. The response ``R`` = slope_B / slope_A
(least-squares slopes of the per-step log-loss) is compared with the same windows of the unprobed WSD run.

    python lab/experiments/boost-probe/probe.py collect runs/boost-probe.pt   # both policies, every family
    python lab/experiments/boost-probe/probe.py analyse runs/boost-probe.pt   # analyse.txt
    python lab/experiments/boost-probe/probe.py combine runs/boost-probe.pt runs/lr-gate.json   # combine.txt

``combine`` fits the lr-gate's ridge estimator (``../lr-gate/gate.py``, whose ``collect`` ran the same specs in
the same order under WSD) on the passive features at 5 % of the run, on four probe features, and on both.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from metalr_hf.metatrain.evaluate import LR_GRID
from metalr_hf.metatrain.families import HELD_OUT, META_TRAIN, TaskSpec
from metalr_hf.metatrain.simulate import PriorPolicy, simulate
from metalr_hf.metatrain.zoo import make_populations

HORIZON, WARMUP = 300, 15


class Probe(PriorPolicy):
    """WSD, times ``m`` on [start, start + K); records every run's per-step loss."""

    def __init__(self, pop, m=1.0, start=WARMUP + 15, k=15):
        super().__init__("wsd", pop)
        self.m, self.start, self.k = m, start, k
        self.losses = []

    def scale(self, step):
        s = super().scale(step)
        return s * self.m if self.start <= step < self.start + self.k else s

    def update(self, s, step=None):
        self.losses.append(s.loss.float().clone())
        return super().update(s, step)


def collect(path: str, seeds=(1000, 1001, 1002), ms=(1.0, 3.0)) -> None:
    grid = [(f, opt, seed, lr) for f in META_TRAIN + HELD_OUT for opt in ("adam", "sgd") for seed in seeds
            for lr in LR_GRID[opt]]  # fmt: skip
    specs = [TaskSpec(f, seed, 32, opt, lr, HORIZON, WARMUP, 64) for f, opt, seed, lr in grid]
    out = {"specs": [s.to_dict() for s in specs]}
    for m in ms:
        finals = torch.zeros(len(specs))
        curves = torch.zeros(len(specs), HORIZON)
        for idx, pop in make_populations(specs):
            pol = Probe(pop, m)
            res = simulate(pop, pol, seed=0)
            finals[idx] = res.final_val_loss.float()
            curves[idx] = torch.stack(pol.losses, 1)
            print(m, pop.kind, len(idx), flush=True)
        out[f"final_{m:g}"], out[f"curve_{m:g}"] = finals, curves
    torch.save(out, path)


def slope(logl, a, b):
    t = np.arange(a, b, dtype=float)
    t -= t.mean()
    y = logl[:, a:b]
    return ((y - y.mean(1, keepdims=True)) * t).sum(1) / (t * t).sum()


def analyse(path: str, k=15) -> None:
    d = torch.load(path)
    specs = d["specs"]
    finals = defaultdict(lambda: defaultdict(list))
    for s, f in zip(specs, d["final_1"].tolist()):
        finals[(s["family"], s["optimizer"])][s["base_lr"]].append(f if math.isfinite(f) else 1e9)
    right = {key: min(v, key=lambda lr: np.mean(v[lr])) for key, v in finals.items()}
    y = np.array([math.log10(right[(s["family"], s["optimizer"])] / s["base_lr"]) for s in specs])
    held = np.array([s["family"] in HELD_OUT for s in specs])
    a0 = WARMUP
    res = {}
    for m in ("1", "3"):
        c = np.log(np.clip(np.nan_to_num(d[f"curve_{m}"].numpy(), nan=1e9), 1e-12, 1e12))
        sa, sb = slope(c, a0, a0 + k), slope(c, a0 + k, a0 + 2 * k)
        res[m] = (sa, sb)
    sa, sb = res["3"]
    ca, cb = res["1"]
    R = sb / np.where(np.abs(sa) > 1e-9, sa, -1e-9)  # >0: both falling; ~m where too small
    Rc = cb / np.where(np.abs(ca) > 1e-9, ca, -1e-9)
    cost = d["final_3"].numpy() / d["final_1"].numpy()
    print("y = log10(right/base); R = slope_B/slope_A probed (x3), Rc unprobed")
    for name, mask in (("train fams", ~held), ("held-out", held)):
        print(f"-- {name}")
        for yy in sorted(set(np.round(y[mask], 2))):
            sel = mask & (np.abs(y - yy) < 0.01)
            if sel.sum() < 3:
                continue
            q = lambda v, sel=sel: "/".join(f"{x:5.2f}" for x in np.nanpercentile(v[sel], [10, 50, 90]))  # noqa: E731
            print(f"y={yy:+.2f} n={sel.sum():3d} R {q(R)}  Rc {q(Rc)}  R-Rc {q(R - Rc)}  final probe/wsd {q(cost)}")
    for name, mask in (("train fams", ~held), ("held-out", held)):
        r0 = mask & (np.abs(y) < 0.01)
        r1 = mask & (y > 0.9)
        for thr in (1.2, 1.5, 2.0):
            print(
                f"{name} thr {thr}: boost at right LR {np.mean(R[r0] > thr):.0%}, at >=0.1x-small "
                f"{np.mean(R[r1] > thr):.0%}"
            )


def combine(path: str, gate_data: str) -> None:
    spec = importlib.util.spec_from_file_location("gate", Path(__file__).parent.parent / "lr-gate" / "gate.py")
    gate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gate)
    X, y, fam = gate.dataset(gate_data, "0.05")
    d = torch.load(path)
    assert [s["family"] for s in d["specs"]] == list(fam), "the two collections must hold the same specs"
    c = np.log(np.clip(np.nan_to_num(d["curve_3"].numpy(), nan=1e9), 1e-12, 1e12))
    a0, k = WARMUP, 15
    sa, sb = slope(c, a0, a0 + k), slope(c, a0 + k, a0 + 2 * k)
    R = np.clip(sb / np.where(np.abs(sa) > 1e-9, sa, -1e-9), -5, 5)
    noise = np.std(c[:, a0 : a0 + k] - c[:, a0 : a0 + k].mean(1, keepdims=True), 1) + 1e-6
    drop = c[:, a0 + k : a0 + 2 * k].mean(1) - c[:, a0 : a0 + k].mean(1)
    P = np.c_[R, np.clip(drop / noise, -5, 5), np.clip(sa * k / noise, -5, 5), np.clip(sb * k / noise, -5, 5)]
    train = np.isin(fam, META_TRAIN)
    for name, Z in (("passive", X), ("probe", P), ("both", np.c_[X, P])):
        w, b = gate.ridge(Z[train], y[train])
        p, yh = Z[~train] @ w + b, y[~train]
        near = np.abs(yh) <= 1.01
        rates = " ".join(f"up {u}: boosts at the right LR {np.mean(p[np.abs(yh) < 0.01] >= u):.0%}, at 0.1x "
                         f"{np.mean(p[np.abs(yh - 1) < 0.01] >= u):.0%};" for u in (0.5, 0.7, 1.0))  # fmt: skip
        print(
            f"{name}: held-out RMSE {math.sqrt(np.mean((p - yh) ** 2)):.2f} (near the right LR "
            f"{math.sqrt(np.mean((p - yh)[near] ** 2)):.2f}); {rates}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("collect", "analyse", "combine"))
    p.add_argument("paths", nargs="+")
    a = p.parse_args()
    torch.set_num_threads(1)
    {"collect": collect, "analyse": analyse, "combine": combine}[a.mode](*a.paths)


if __name__ == "__main__":
    main()
