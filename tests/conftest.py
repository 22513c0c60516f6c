"""Shared fixtures: tiny models built from configs, local data, perturbed learners. Nothing is downloaded."""

import os
import signal
import socket
import subprocess
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "METALR_HF_CACHE" not in os.environ:  # the zoo's pretrained transformers: a folder of this test session
    os.environ["METALR_HF_CACHE"] = tempfile.mkdtemp(prefix="metalr-hf-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402

from metalr_hf import MetaLearner  # noqa: E402


def perturbed_learner(seed: int = 0, scale: float = 0.5, **config) -> MetaLearner:
    """A learner whose weights (output layer included) are random, so that it really moves the LR."""
    with torch.random.fork_rng(devices=[]):  # the same learner for a seed, whatever ran before
        torch.manual_seed(seed)
        learner = MetaLearner(**config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return learner


def boosting_learner(feature_names) -> MetaLearner:
    """A learner that asks for the largest LR its bound allows, whatever it reads."""
    learner = MetaLearner(feature_names=list(feature_names))
    with torch.no_grad():
        learner.head.bias.fill_(5.0)
    return learner


@pytest.fixture
def learner():
    return perturbed_learner()


def tiny_bert(seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config)


def pretrained_like(model):
    """``model`` with weights moved off their initialisation as pretraining moves them (matrices and kernels at 3×
    the spread of their initialisation, as all-MiniLM-L6-v2's are): what the Trainer integration reads as
    pretrained."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(3.0)
    return model


def toy_classification(n: int = 256, seq_len: int = 16, seed: int = 0):
    """Label = which half of the vocabulary the tokens come from: learnable in a few dozen steps."""
    from datasets import Dataset

    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=gen)
    ids = torch.randint(8, 36, (n, seq_len), generator=gen) + 28 * labels[:, None]
    ids[:, 0] = 2
    return Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": [[1] * seq_len] * n, "labels": labels.tolist()}
    )


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    return GPT2LMHeadModel(config)


def toy_lm(n: int = 320, seq_len: int = 16, seed: int = 0):
    """Sequences counting up modulo 64 from a random start: next-token prediction is learnable."""
    from datasets import Dataset

    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 64, (n, 1), generator=gen)
    ids = (start + torch.arange(seq_len)) % 64
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})


GLOO_TEARDOWN_ABORT = "terminate called without an active exception"
TEARDOWN_GRACE_S = 60


def launch_ranks(cmd, outputs, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a ``torchrun``/``accelerate launch`` command and check it with :func:`assert_launch_ok`.

    Once every file in ``outputs`` exists (each rank's work is done and written), the ranks get
    ``TEARDOWN_GRACE_S`` seconds to leave. A rank that hangs at teardown instead is stopped through the launcher
    (SIGTERM, then SIGKILL to its group) and the launch is marked ``hung_at_teardown``. Seen once in CI and
    four times in 170 local launches of the launcher test's 8-step run; ``py-spy dump`` of the stuck rank:
    the DDP ``Reducer`` freed at the script's end drops the last reference to the gloo process group, whose
    destructor joins its worker thread with the GIL held, while that thread waits for the GIL to free the tensor
    of a finished all-gather (the Trainer's) — pytorch/pytorch#56297. A launch that has not written its outputs
    within ``timeout`` fails."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True, start_new_session=True)
        start, written_at, hung = time.monotonic(), None, False
        while proc.poll() is None:
            now = time.monotonic()
            if written_at is None and all(os.path.exists(p) for p in outputs):
                written_at = now
            if (written_at is not None and now - written_at > TEARDOWN_GRACE_S) or now - start > timeout:
                hung = written_at is not None
                proc.terminate()  # torchrun stops its workers (they run in sessions of their own) on SIGTERM
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                break
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
    result.hung_at_teardown = hung
    assert_launch_ok(result, outputs)
    return result


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a launcher's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_launch_ok(proc, outputs=()) -> None:
    """A ``torchrun``/``accelerate launch`` run finished. A gloo rank can abort at interpreter teardown, after its
    process group is destroyed and its work written (SIGABRT, "terminate called without an active exception",
    pytorch/pytorch#190489), or hang there (:func:`launch_ranks`): such an exit is accepted only when every file
    in ``outputs`` was written and it is the only failure; any Python error in a rank still fails."""
    if proc.returncode == 0:
        return
    rank_errors = [line for line in proc.stderr.splitlines() if "Error" in line and "ChildFailedError" not in line]
    teardown = GLOO_TEARDOWN_ABORT in proc.stderr or getattr(proc, "hung_at_teardown", False)
    known = teardown and outputs and all(os.path.exists(p) for p in outputs)
    assert known and not rank_errors, proc.stderr[-4000:]


class _Said:
    def __init__(self, record):
        self.message = record.getMessage()


class logged:
    """What the package's loggers (``metalr_hf``) said at WARNING or above inside the block, as a list of items with
    a ``message`` (as ``pytest.warns`` gives); with ``match``, at least one message must match that pattern."""

    def __init__(self, match: str | None = None):
        import logging

        self.match, self.said = match, []
        outer = self

        class _Handler(logging.Handler):
            def emit(self, record):
                outer.said.append(_Said(record))

        self._handler = _Handler(level=logging.WARNING)

    def __enter__(self):
        import logging

        logger = logging.getLogger("metalr_hf")
        self._level = logger.level
        logger.addHandler(self._handler)
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
        return self.said

    def __exit__(self, exc_type, *exc):
        import logging
        import re

        logger = logging.getLogger("metalr_hf")
        logger.removeHandler(self._handler)
        logger.setLevel(self._level)
        if exc_type is None and self.match is not None:
            messages = [s.message for s in self.said]
            assert any(re.search(self.match, m) for m in messages), f"no warning matched {self.match!r}: {messages}"
