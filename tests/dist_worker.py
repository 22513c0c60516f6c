"""Launched by tests/test_distributed.py under torchrun: a MetaTrainer job on gloo; writes each rank's LRs.

    python dist_worker.py OUT_DIR GRAD_ACC [MODE]

MODE ``run`` (default) trains 12 steps; ``save`` also writes a checkpoint at step 6 and is killed (stops) at step 8;
``resume`` continues from that checkpoint to step 12; ``zero2``, ``zero2-save``, ``zero2-resume`` do the same under
``--deepspeed`` (ZeRO-2)."""

import json
import os
import sys

import torch.distributed

sys.path.insert(0, os.path.dirname(__file__))

from conftest import tiny_bert, toy_classification  # noqa: E402

from metalr_hf import MetaLRCallback, MetaTrainer, MetaTrainingArguments  # noqa: E402


def main():
    out_dir, grad_acc = sys.argv[1], int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "run"
    zero = mode.startswith("zero2")
    phase = mode.removeprefix("zero2").removeprefix("-") or "run"
    rank = int(os.environ["RANK"])
    learner_dir = os.path.join(out_dir, "learner")
    args = MetaTrainingArguments(
        output_dir=os.path.join(out_dir, "trainer"),
        save_strategy="steps" if phase == "save" else "no",
        save_steps=6,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=grad_acc,
        learning_rate=3e-3,
        max_steps=12,
        logging_steps=1,
        report_to=[],
        lr_scheduler_type="meta",
        lr_scheduler_kwargs={"meta_learner": learner_dir},
        use_cpu=not zero,
        deepspeed={
            "zero_optimization": {"stage": 2},
            "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto",
        }
        if zero
        else None,
        ddp_backend="gloo",
        seed=0,
        disable_tqdm=True,
        # evaluations feed `eval_patience` (the Trainer gathers the eval loss: every rank reads the same)
        eval_strategy="no" if zero else "steps",
        eval_steps=3,
    )
    local_losses = []

    class Spy(MetaLRCallback):
        def on_optimizer_step(self, args, state, control, **kw):
            local_losses.append(float(self.step_loss()))  # this rank's own loss, before the all-reduce
            return super().on_optimizer_step(args, state, control, **kw)

    trainer = MetaTrainer(model=tiny_bert(), args=args, train_dataset=toy_classification(n=512), callbacks=[Spy()],
                          eval_dataset=None if zero else toy_classification(n=64, seed=5))  # fmt: skip
    lrs, priors, read = [], [], []

    class Record(MetaLRCallback.__mro__[1]):
        def on_step_end(self, args, state, control, optimizer=None, **kw):
            lrs.append(optimizer.param_groups[0]["lr"])
            sched = trainer.lr_scheduler
            priors.append(sched.base_lrs[0] * float(sched.controller.prior_at(sched.last_epoch)[0]))
            read.append(float(sched.last_signals.gm[0]))  # g·m: read from the gradients and moments
            if phase == "save" and state.global_step == 8:
                control.should_training_stop = True  # killed after the checkpoint

    trainer.add_callback(Record())
    checkpoint = os.path.join(out_dir, "trainer", "checkpoint-6")
    trainer.train(resume_from_checkpoint=checkpoint if phase == "resume" else None)
    with open(os.path.join(out_dir, f"rank{rank}-{mode}.json"), "w") as f:
        evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
        eval_best = float(trainer.lr_scheduler.controller.eval_best[0])
        json.dump({"lrs": lrs, "priors": priors, "local_losses": local_losses, "gm": read, "evals": evals,
                   "eval_best": eval_best}, f)  # fmt: skip
    # a gloo rank that exits with its group alive can abort at teardown (exit -6, pytorch/pytorch#190489); it
    # happened here even after destroying the group, so this helper leaves without interpreter teardown
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
