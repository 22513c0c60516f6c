"""Two ranks (torchrun or accelerate launch, gloo on CPU), different data on each: every rank sets the identical LR
at every step."""

import json
import os
import socket
import subprocess
import sys

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("launcher, grad_acc", [("torchrun", 1), ("torchrun", 2), ("accelerate", 2)])
def test_two_ranks_set_identical_lrs(tmp_path, launcher, grad_acc):
    worker = os.path.join(os.path.dirname(__file__), "dist_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    from conftest import perturbed_learner

    perturbed_learner(seed=61).save_pretrained(tmp_path / "learner")
    port = str(_free_port())
    if launcher == "torchrun":
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                  "--master_addr", "127.0.0.1", "--master_port", port]  # fmt: skip
    else:  # `accelerate launch --multi_gpu` runs gloo ranks on a machine without GPUs
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--main_process_ip", "127.0.0.1", "--main_process_port", port,
                  "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    cmd = [*launch, worker, str(tmp_path), str(grad_acc)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert len(r0["lrs"]) == len(r1["lrs"]) == 12
    assert r0["lrs"] == r1["lrs"]  # exactly equal, every step
    assert r0["local_losses"] != r1["local_losses"]  # the ranks really saw different data
    scales = [lr / prior for lr, prior in zip(r0["lrs"][2:-1], r0["priors"][2:-1])]
    assert max(abs(s - 1.0) for s in scales) > 0.05  # the learner moved the LR off the prior
