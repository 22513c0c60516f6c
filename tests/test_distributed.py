"""Two ranks (torchrun or accelerate launch, gloo on CPU), different data on each: every rank sets the identical LR
at every step."""

import json
import os
import sys

import pytest
from conftest import free_port, launch_ranks


@pytest.mark.parametrize("launcher, grad_acc", [("torchrun", 1), ("torchrun", 2), ("accelerate", 2)])
def test_two_ranks_set_identical_lrs(tmp_path, launcher, grad_acc):
    worker = os.path.join(os.path.dirname(__file__), "dist_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    from conftest import perturbed_learner

    perturbed_learner(seed=61).save_pretrained(tmp_path / "learner")
    port = str(free_port())
    if launcher == "torchrun":
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                  "--master_addr", "127.0.0.1", "--master_port", port]  # fmt: skip
    else:  # `accelerate launch --multi_gpu` runs gloo ranks on a machine without GPUs
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--main_process_ip", "127.0.0.1", "--main_process_port", port,
                  "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    cmd = [*launch, worker, str(tmp_path), str(grad_acc)]
    launch_ranks(cmd, [tmp_path / f"rank{r}-run.json" for r in (0, 1)], env=env)
    r0 = json.loads((tmp_path / "rank0-run.json").read_text())
    r1 = json.loads((tmp_path / "rank1-run.json").read_text())
    assert len(r0["lrs"]) == len(r1["lrs"]) == 12
    assert r0["lrs"] == r1["lrs"]  # exactly equal, every step
    assert len(r0["evals"]) == 4 and r0["evals"] == r1["evals"] and r0["eval_best"] == min(r0["evals"])
    assert r0["local_losses"] != r1["local_losses"]  # the ranks really saw different data
    scales = [lr / prior for lr, prior in zip(r0["lrs"][2:-1], r0["priors"][2:-1])]
    assert max(abs(s - 1.0) for s in scales) > 0.05  # the learner moved the LR off the prior


def test_two_ranks_killed_and_resumed_continue_the_uninterrupted_trajectory(tmp_path):
    """torchrun, 2 gloo ranks: a run checkpointed at step 6 and killed at step 8, resumed from the checkpoint, sets
    the LRs of the uninterrupted run at steps 7-12, identical on both ranks."""
    worker = os.path.join(os.path.dirname(__file__), "dist_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    from conftest import perturbed_learner

    perturbed_learner(seed=61).save_pretrained(tmp_path / "learner")
    for mode in ("run", "save", "resume"):
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                  "--master_addr", "127.0.0.1", "--master_port", str(free_port())]  # fmt: skip
        launch_ranks([*launch, worker, str(tmp_path), "1", mode], [tmp_path / f"rank{r}-{mode}.json" for r in (0, 1)],
                     env=env)  # fmt: skip
    runs = {(r, m): json.loads((tmp_path / f"rank{r}-{m}.json").read_text())["lrs"] for r in (0, 1)
            for m in ("run", "save", "resume")}  # fmt: skip
    assert len(runs[0, "save"]) == 8 and len(runs[0, "resume"]) == 6
    for rank in (0, 1):
        assert runs[rank, "resume"] == pytest.approx(runs[0, "run"][6:], rel=1e-6)
        assert runs[rank, "save"] == runs[0, "run"][:8]
    assert runs[0, "resume"] == runs[1, "resume"]


def test_meta_training_shards_over_two_ranks_with_the_same_result(tmp_path):
    """ES under torchrun: the perturbations are split over 2 gloo ranks; the fitness history equals the one of a
    single process (same seed) up to floating-point rounding (batched kernels of another batch size round
    differently, and a training run amplifies it), and rank 0 alone writes the learner."""
    import torch

    from metalr_hf.metatrain.es import meta_train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: reductions split over threads round differently
    try:
        single = meta_train("smoke", tmp_path / "one", progress=False, evaluate_at_end=False, iterations=2)
    finally:
        torch.set_num_threads(threads)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), "-m", "metalr_hf.cli", "meta-train", "--preset", "smoke",
        "--output-dir", str(tmp_path / "two"), "--iterations", "2", "--no-eval", "--no-progress",
    ]  # fmt: skip
    launch_ranks(cmd, [tmp_path / "two" / "history.json", tmp_path / "two" / "learner" / "model.safetensors"], env=env)
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    for a, b in zip(single["history"], two, strict=True):
        for key in ("fitness_current", "fitness_perturbed_mean", "fitness_perturbed_best"):
            assert a[key] == pytest.approx(b[key], rel=0.02, abs=1e-4), key
    assert (tmp_path / "two" / "learner" / "model.safetensors").exists()
