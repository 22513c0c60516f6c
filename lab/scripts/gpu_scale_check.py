"""The sharded-training check on one GPU: GPT-2 small from its config, bf16 autocast, a few hundred steps.

    python lab/scripts/gpu_scale_check.py OUT_DIR [--preset gpu|cpu]

Runs, one after the other in one process: (1) cosine (transformers), (2) meta in one process, (3) meta with the
model sharded by FSDP2 (``fully_shard``) over a process group of one rank, (4) cosine again (an A/A control for
the step time), (5) ``MetaTrainer`` with ``bf16=True``. Records the LR trajectories of (2) and (3) (equal: the
DTensor path reads what the plain one reads), the scheduler's own host time per step (``observe`` + ``step``), the
whole step time against cosine, and whether the scheduler makes the host wait for the device: its calls run
under ``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronising CUDA call. ``--preset cpu``
is the same on a tiny GPT-2 and gloo, for checking the script without a GPU. Writes OUT_DIR/gpu_scale.json.
"""

import json
import os
import statistics
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, get_scheduler

from metalr_hf import MetaLRScheduler

PRESETS = {
    "gpu": dict(config={}, batch=8, seq=512, steps=300, trainer_steps=60),
    "cpu": dict(config=dict(n_embd=32, n_layer=2, n_head=2, vocab_size=128, n_positions=64), batch=4, seq=32,
                steps=30, trainer_steps=10),
}  # fmt: skip


def batches(vocab, batch, seq, steps, device):
    """Counting sequences modulo the vocabulary from random starts: learnable next-token prediction."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        start = torch.randint(0, vocab, (batch, 1), generator=gen)
        yield ((start + torch.arange(seq)) % vocab).to(device, non_blocking=True)


def run(kind, preset, device, shard=False):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**preset["config"])).to(device)
    if shard:
        from torch.distributed.fsdp import fully_shard

        for block in model.transformer.h:
            fully_shard(block)
        fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=device.type == "cuda")
    steps, warmup = preset["steps"], preset["steps"] // 20
    if kind == "cosine":
        sched = get_scheduler("cosine", opt, num_warmup_steps=warmup, num_training_steps=steps)
    else:
        sched = MetaLRScheduler(opt, num_training_steps=steps, num_warmup_steps=warmup)
    lrs, own, step_ends, syncs = [], [], [], []
    cuda = device.type == "cuda"
    start = time.perf_counter()
    for ids in batches(model.config.vocab_size, preset["batch"], preset["seq"], steps, device):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t0 = time.perf_counter()
        if kind == "meta":
            if cuda:
                torch.cuda.set_sync_debug_mode("error")  # any synchronising call in the scheduler raises
            try:
                sched.observe(loss.detach())
                sched.step()
            except RuntimeError as e:
                if not cuda:
                    raise
                syncs.append(str(e)[:200])
                torch.cuda.set_sync_debug_mode(0)
                sched.step()
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode(0)
        else:
            sched.step()
        own.append(time.perf_counter() - t0)
        opt.zero_grad(set_to_none=True)
        lrs.append(opt.param_groups[0]["lr"])
        step_ends.append(time.perf_counter())
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    final = float(loss.detach().float())
    per_step = [b - a for a, b in zip(step_ends, step_ends[1:])]
    return {
        "kind": kind + (" (FSDP2)" if shard else ""),
        "wall_s": wall,
        "median_step_ms": 1e3 * statistics.median(per_step[10:]),
        "scheduler_own_ms_median": 1e3 * statistics.median(own[10:]),
        "scheduler_own_ms_p90": 1e3 * sorted(own[10:])[int(0.9 * len(own[10:]))],
        "sync_errors": syncs[:3],
        "num_sync_errors": len(syncs),
        "final_loss": final,
        "lrs": lrs,
    }


def trainer_run(preset, device, out):
    from torch.utils.data import Dataset

    from metalr_hf import MetaTrainer, MetaTrainingArguments

    vocab, seq = GPT2Config(**preset["config"]).vocab_size, preset["seq"]

    class Counting(Dataset):
        def __len__(self):
            return 4096

        def __getitem__(self, i):
            ids = (torch.arange(seq) + i * 7) % vocab
            return {"input_ids": ids, "labels": ids}

    torch.manual_seed(0)
    args = MetaTrainingArguments(
        os.path.join(out, "trainer"), max_steps=preset["trainer_steps"], per_device_train_batch_size=preset["batch"],
        learning_rate=6e-4, warmup_steps=3, lr_scheduler_type="meta", bf16=device.type == "cuda", logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=device.type != "cuda", disable_tqdm=True,
    )  # fmt: skip
    trainer = MetaTrainer(model=GPT2LMHeadModel(GPT2Config(**preset["config"])), args=args, train_dataset=Counting())
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"kind": "MetaTrainer bf16", "first_loss": losses[0], "last_loss": losses[-1],
            "lrs": [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]}  # fmt: skip


def main():
    out = sys.argv[1]
    name = sys.argv[sys.argv.index("--preset") + 1] if "--preset" in sys.argv else "gpu"
    preset = PRESETS[name]
    os.makedirs(out, exist_ok=True)
    device = torch.device("cuda" if name == "gpu" else "cpu")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29571")
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    if device.type == "cuda":
        torch.cuda.set_device(0)
        # the same run twice gives the same gradients, so that (2) against (3) compares the schedulers alone
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    results = {"preset": name, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "runs": []}  # fmt: skip
    for kind, shard in (("cosine", False), ("meta", False), ("meta", True), ("cosine", False)):
        r = run(kind, preset, device, shard)
        print({k: v for k, v in r.items() if k != "lrs"}, flush=True)
        results["runs"].append(r)
    cos1, meta, fsdp, cos2 = results["runs"]
    pairs = [(a, b) for a, b in zip(meta["lrs"], fsdp["lrs"])]
    results["fsdp_vs_one_process_max_rel_lr_diff"] = max(abs(a - b) / max(abs(a), 1e-12) for a, b in pairs)
    results["meta_over_cosine_step_time"] = meta["median_step_ms"] / statistics.mean(
        [cos1["median_step_ms"], cos2["median_step_ms"]]
    )
    results["cosine_aa_step_time"] = cos2["median_step_ms"] / cos1["median_step_ms"]
    t = trainer_run(preset, device, out)
    print({k: v for k, v in t.items() if k != "lrs"}, flush=True)
    results["runs"].append(t)
    with open(os.path.join(out, "gpu_scale.json"), "w") as f:
        json.dump(results, f, indent=1)
    summary = {k: v for k, v in results.items() if k != "runs"}
    print(json.dumps(summary, indent=1))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
