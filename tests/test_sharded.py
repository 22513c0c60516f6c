"""Sharded training: FSDP2 (``fully_shard``, DTensor shards) on 2 gloo ranks gives the LR of one process, and the
layouts the reader cannot read are refused at once, naming them."""

import json
import os
import sys

import pytest
import torch
from conftest import free_port, launch_ranks

WORKER = os.path.join(os.path.dirname(__file__), "fsdp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _torchrun(tmp_path, mode):
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(free_port()), WORKER, str(tmp_path), mode]  # fmt: skip
    launch_ranks(launch, [tmp_path / f"{mode}-rank{r}.json" for r in (0, 1)], env=ENV)
    return [json.loads((tmp_path / f"{mode}-rank{r}.json").read_text()) for r in (0, 1)]


def test_fsdp2_on_two_ranks_sets_the_lr_of_one_process_and_resumes_from_sharded_checkpoints(tmp_path):
    import subprocess

    subprocess.run([sys.executable, WORKER, str(tmp_path), "single"], env=ENV, check=True, capture_output=True)
    single = json.loads((tmp_path / "single-rank0.json").read_text())
    fsdp = _torchrun(tmp_path, "fsdp")
    assert fsdp[0]["lrs"] == fsdp[1]["lrs"]  # every rank sets the same LR, exactly
    # The statistics of the first step, read from each rank's shards and reduced, are those of the whole tensors
    # in one process: the same values summed in another order (float32, ~1e5 terms: n·u bounds it, see
    # tests/test_reader.py), the loss averaged over the ranks' halves of the batch.
    for key, value in single["signals"].items():
        assert fsdp[0]["signals"][key] == pytest.approx(value, rel=2e-5, abs=1e-12), key
    # The LRs: equal to float32 rounding at first (1 ulp, 1.2e-7); later the two runs train on gradients averaged
    # in another order, and their weights part by rounding: 1.2e-6 by step 9 of 12 on a quiet machine, more under
    # load (other thread splits); a wrong shard scaling would be off by ×2.
    lrs, reference = fsdp[0]["lrs"], single["lrs"]
    assert lrs[0] == pytest.approx(reference[0], rel=2.5e-7)
    assert lrs == pytest.approx(reference, rel=1e-4)
    assert max(reference) > 1.5 * reference[0]  # the learner moved the LR: the equality says something
    # Kill and resume: a DCP checkpoint (sharded model and optimizer) at step 6, killed at step 8, resumed
    saved = _torchrun(tmp_path, "save")
    resumed = _torchrun(tmp_path, "resume")
    assert saved[0]["lrs"] == lrs[:8]
    assert resumed[0]["lrs"] == resumed[1]["lrs"]
    assert resumed[0]["lrs"] == pytest.approx(lrs[6:], rel=1e-6)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_zero_on_two_ranks_sets_the_lr_of_one_process(tmp_path, stage):
    """DeepSpeed ZeRO (stage 1-2: optimizer state and gradients partitioned; 3: parameters too) on 2 gloo ranks: the
    scheduler reads its inner optimizer's flat partitions inside that optimizer's step, and sets the LR of one
    process (the single-process run of the FSDP2 test, same data and update)."""
    pytest.importorskip("deepspeed")
    import subprocess

    subprocess.run([sys.executable, WORKER, str(tmp_path), "single"], env=ENV, check=True, capture_output=True)
    single = json.loads((tmp_path / "single-rank0.json").read_text())
    zero = _torchrun(tmp_path, f"zero{stage}")
    assert zero[0]["lrs"] == zero[1]["lrs"]
    for key, value in single["signals"].items():
        assert zero[0]["signals"][key] == pytest.approx(value, rel=2e-5, abs=1e-12), key
    assert zero[0]["lrs"][0] == pytest.approx(single["lrs"][0], rel=2.5e-7)
    assert zero[0]["lrs"] == pytest.approx(single["lrs"], rel=1e-4)


def test_trainer_with_deepspeed_zero2_reads_the_partitions_and_resumes(tmp_path):
    """``MetaTrainer`` with ``--deepspeed`` (ZeRO-2) on 2 gloo ranks: the scheduler, built on the torch optimizer
    before DeepSpeed wrapped it, is handed the ZeRO optimizer at train begin and reads its partitions group by group
    inside its step (g·m is there on every step, not the no-gradient fallback); both ranks set the same LR, which
    the learner moves off the prior; a run checkpointed at step 6 (DeepSpeed's checkpoint and scheduler.pt) and
    killed at step 8, resumed, continues the uninterrupted trajectory."""
    pytest.importorskip("deepspeed")
    from conftest import perturbed_learner

    worker = os.path.join(os.path.dirname(__file__), "dist_worker.py")
    perturbed_learner(seed=61).save_pretrained(tmp_path / "learner")
    runs = {}
    for mode in ("zero2", "zero2-save", "zero2-resume"):
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                  "127.0.0.1", "--master_port", str(free_port()), worker, str(tmp_path), "1", mode]  # fmt: skip
        launch_ranks(launch, [tmp_path / f"rank{r}-{mode}.json" for r in (0, 1)], env=ENV)
        runs[mode] = [json.loads((tmp_path / f"rank{r}-{mode}.json").read_text()) for r in (0, 1)]
    r0, r1 = runs["zero2"]
    assert len(r0["lrs"]) == 12 and r0["lrs"] == r1["lrs"]
    assert all(gm != 0 for gm in r0["gm"])  # the gradients and moments were read (the fallback leaves g·m at 0)
    scales = [lr / prior for lr, prior in zip(r0["lrs"][2:-1], r0["priors"][2:-1])]
    assert max(abs(s - 1.0) for s in scales) > 0.05
    assert runs["zero2-save"][0]["lrs"] == r0["lrs"][:8]
    resumed = runs["zero2-resume"]
    assert resumed[0]["lrs"] == resumed[1]["lrs"] and len(resumed[0]["lrs"]) == 6
    assert resumed[0]["lrs"] == pytest.approx(r0["lrs"][6:], rel=1e-6)


def test_other_deepspeed_optimizers_are_refused_at_once_naming_them():
    from metalr_hf import MetaLRScheduler

    model = torch.nn.Linear(4, 2)
    inner = torch.optim.AdamW(model.parameters(), lr=1e-3)
    Fp16Optimizer = type("FP16_Optimizer", (), {"__module__": "deepspeed.runtime.fp16.fused_optimizer"})
    wrapper = Fp16Optimizer()
    wrapper.optimizer, wrapper.param_groups, wrapper.state = inner, inner.param_groups, inner.state
    with pytest.raises(NotImplementedError, match="DeepSpeed's FP16_Optimizer.*ZeRO"):
        MetaLRScheduler(wrapper, num_training_steps=10)


def test_fsdp1_flat_parameters_are_refused_at_once_naming_them():
    from torch.distributed.fsdp._flat_param import FlatParameter

    from metalr_hf import MetaLRScheduler

    flat = FlatParameter(torch.zeros(16), requires_grad=True)
    with pytest.raises(NotImplementedError, match="FSDP1's flat parameters.*fully_shard"):
        MetaLRScheduler(torch.optim.AdamW([flat], lr=1e-3), num_training_steps=10)
