"""A probe, not a learner: `metalr-default-v3` drives the run until its correction has sat at its bound (×7.4) for
a while early on (K steps, or a fraction K < 1 of the horizon, within the first 30 %), then a wide-bound learner
does (both read the run's features from the first step). Evaluated on the held-out zoo or the quick bench:

    python lab/experiments/wide-bound/handover.py held-out runs/scratch-judge5/learner K
    python lab/experiments/wide-bound/handover.py quick runs/scratch-judge5/learner K OUTPUT_DIR
      (OUTPUT_DIR holding the non-meta runs of runs/bench-quick-4seeds/results.json first)
"""

import sys

import torch

import metalr_hf.scheduler as scheduler
from metalr_hf.learner import MetaLearner


class Handover(torch.nn.Module):
    def __init__(self, a: MetaLearner, b: MetaLearner, k: float, window: float = 0.3, thresh: float = 0.95):
        super().__init__()
        self.a, self.b, self.k, self.window, self.thresh = a, b, k, window, thresh
        self.config, self.max_delta, self.card_context = a.config, b.max_delta, {}
        self.source = {"name_or_path": "handover"}

    @property
    def device(self) -> torch.device:
        return self.a.device

    def fingerprint(self) -> str:
        return f"handover-{self.a.fingerprint()[:6]}{self.b.fingerprint()[:6]}"

    def one_run_step(self):
        return None  # the scheduler runs the batched forward

    def init_state(self, batch_size: int = 1) -> torch.Tensor:
        parts = [self.a.init_state(batch_size), self.b.init_state(batch_size), torch.zeros(batch_size, 2)]
        return torch.cat(parts, 1)

    def forward(self, feats: torch.Tensor, state: torch.Tensor):
        na, nb = self.a.state_size, self.b.state_size
        sa, sb, c = state[:, :na], state[:, na : na + nb], state[:, na + nb :]
        da, sa = self.a(feats, sa)
        db, sb = self.b(feats, sb)
        progress = feats[:, 0]  # t / T
        at_bound = da >= self.thresh * self.a.max_delta
        zero = torch.zeros_like(progress)
        if self.k < 1:  # c0: the progress at which the streak at the bound began, plus 1 (0: no streak)
            count = torch.where(at_bound, torch.where(c[:, 0] > 0, c[:, 0], progress + 1.0), zero)
            long = at_bound & (progress + 1.0 - count >= self.k)
        else:  # c0: the streak's length in steps
            count = torch.where(at_bound, c[:, 0] + 1, zero)
            long = count >= self.k
        switched = (c[:, 1] > 0.5) | (long & (progress < self.window))
        return torch.where(switched, db, da), torch.cat([sa, sb, torch.stack([count, switched.float()], 1)], 1)


def main() -> None:
    what, wide, k = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def make() -> Handover:
        return Handover(MetaLearner.from_pretrained("metalr-default-v3"), MetaLearner.from_pretrained(wide), k).eval()

    if what == "held-out":
        from metalr_hf.metatrain.evaluate import EvalConfig, evaluate, format_eval_table

        print(format_eval_table(evaluate(make(), EvalConfig())["summary"]))
        return
    load = scheduler.load_learner
    scheduler.load_learner = lambda name=None, **kw: make() if name == "handover" else load(name, **kw)
    from metalr_hf.cli import main as cli

    sys.argv = ["metalr-hf", "bench", "--suite", "quick", "--seeds", "0", "1", "2", "3", "--output-dir", sys.argv[4],
                "--meta-learner", "handover", "--no-progress"]  # fmt: skip
    cli()


if __name__ == "__main__":
    main()
