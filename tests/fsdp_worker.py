"""Launched by tests/test_sharded.py: a tiny GPT-2 trained in a plain loop with ``MetaLRScheduler``, in one
process or sharded over the ranks of ``torchrun`` (gloo, CPU) with FSDP2 (``fully_shard``) or DeepSpeed ZeRO.

    python fsdp_worker.py OUT_DIR MODE [STEPS]

MODE ``single`` trains in one process on the whole batch; ``fsdp`` (under torchrun) shards the model and gives each
rank its slice of the same batch, so both see the same global batch and the same averaged gradient; ``save`` is
``fsdp`` that writes a sharded checkpoint (torch.distributed.checkpoint) at step 6 and stops at step 8; ``resume``
loads it and trains on to the end; ``zero1``, ``zero2``, ``zero3`` train as ``fsdp`` under a DeepSpeed engine at that
ZeRO stage (fp32, no clipping: the same update as one process). Each rank writes its LRs to
``OUT_DIR/MODE-rankR.json``."""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))

from conftest import perturbed_learner, tiny_gpt2  # noqa: E402

from metalr_hf import MetaLRScheduler  # noqa: E402

BATCH, SEQ, SAVE_AT, STOP_AT = 8, 16, 6, 8


def batch(step):
    gen = torch.Generator().manual_seed(1000 + step)
    start = torch.randint(0, 64, (BATCH, 1), generator=gen)
    return (start + torch.arange(SEQ)) % 64


def main():
    out_dir, mode = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    torch.set_num_threads(1)
    distributed, zero = mode != "single", mode.startswith("zero")
    rank, world = 0, 1
    if zero:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
    elif distributed:
        torch.distributed.init_process_group("gloo")
    if distributed:
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model = tiny_gpt2()
    if distributed and not zero:
        from torch.distributed.fsdp import fully_shard

        for block in model.transformer.h:
            fully_shard(block)
        fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    if zero:
        config = {
            "train_micro_batch_size_per_gpu": BATCH // world,
            "zero_optimization": {"stage": int(mode[-1])},
            "gradient_clipping": 0.0,
        }
        model, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    learner = perturbed_learner(seed=61)  # moves the LR, so that equal trajectories say something
    scheduler = MetaLRScheduler(optimizer, num_training_steps=steps, num_warmup_steps=2, meta_learner=learner)
    first = 0
    checkpoint = os.path.join(out_dir, "checkpoint")
    if mode == "resume":
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=checkpoint)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        scheduler.load_state_dict(torch.load(os.path.join(checkpoint, f"scheduler-{rank}.pt"), weights_only=True))
        first = SAVE_AT
    lrs, losses, signals = [], [], None
    for step in range(first, steps):
        ids = batch(step)
        if distributed:
            ids = ids.chunk(world)[rank]  # this rank's slice of the global batch
        loss = model(input_ids=ids, labels=ids).loss
        if zero:  # the engine reduces the gradients and steps its ZeRO optimizer
            model.backward(loss)
            scheduler.observe(loss.detach())
            model.step()
            scheduler.step()
        else:
            loss.backward()
            scheduler.observe(loss.detach())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        lrs.append(optimizer.param_groups[0]["lr"])
        losses.append(float(scheduler.last_signals.loss[0]))
        if signals is None:  # the first step's statistics, as every rank reduced them
            signals = {k: float(getattr(scheduler.last_signals, k)[0]) for k in ("loss", "grad_norm", "gg", "gm",
                       "mm", "g_upd", "upd_sq", "ww", "vv")}  # fmt: skip
        if mode == "save" and step + 1 == SAVE_AT:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import get_state_dict

            model_state, optim_state = get_state_dict(model, optimizer)
            dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=checkpoint)
            torch.save(scheduler.state_dict(), os.path.join(checkpoint, f"scheduler-{rank}.pt"))
        if mode == "save" and step + 1 == STOP_AT:
            break  # killed after the checkpoint
    with open(os.path.join(out_dir, f"{mode}-rank{rank}.json"), "w") as f:
        json.dump({"lrs": lrs, "losses": losses, "signals": signals}, f)
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # see dist_worker.py: gloo teardown


if __name__ == "__main__":
    main()
