"""Prior schedules agree with transformers' schedules of the same name."""

import pytest
import torch
from transformers import get_scheduler as hf_get_scheduler

from metalr_hf.schedules import PRIORS, prior_multiplier


@pytest.mark.parametrize(
    "name,hf_name", [("cosine", "cosine"), ("linear", "linear"), ("constant", "constant_with_warmup")]
)
@pytest.mark.parametrize("warmup", [0, 7])
def test_priors_match_transformers(name, hf_name, warmup):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = hf_get_scheduler(hf_name, opt, num_warmup_steps=warmup, num_training_steps=50)
    for step in range(50):
        assert float(prior_multiplier(name, step, 50, warmup)) == pytest.approx(sched.get_last_lr()[0], abs=1e-7)
        opt.step()
        sched.step()


def test_wsd_shape_and_batching():
    steps = torch.arange(100)
    m = prior_multiplier("wsd", steps, 100, 10, decay_fraction=0.2, min_lr_ratio=0.1)
    # decay over the last 20 % of the post-warmup steps: 10 + 0.8 * 90 = 82
    assert m[0] == 0 and m[10:83].eq(1).all() and m[-1] < 0.2 and (m[83:].diff() < 0).all()
    # one horizon per run, batched
    batched = PRIORS["cosine"](torch.tensor([5.0, 5.0]), torch.tensor([10.0, 100.0]))
    assert batched[0] == pytest.approx(0.5) and batched[1] > 0.99


def test_unknown_prior():
    with pytest.raises(ValueError, match="valid priors"):
        prior_multiplier("cosin", 0, 10)
