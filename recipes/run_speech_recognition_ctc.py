#!/usr/bin/env python
"""Wav2Vec2 CTC fine-tuning on LibriSpeech or a local audio folder/CSV, with any LR scheduler; reports WER.

Wav2Vec 2.0 base on LibriSpeech clean-100, the plan's setting:

    python recipes/run_speech_recognition_ctc.py --model_name_or_path facebook/wav2vec2-base \
        --dataset_name openslr/librispeech_asr --dataset_config_name clean --train_split_name train.100 \
        --eval_split_name validation --per_device_train_batch_size 16 --learning_rate 1e-4 --max_steps 20000 \
        --warmup_steps 500 --lr_scheduler_type meta --do_train --do_eval --output_dir out/w2v2-meta

Local data: ``--train_file train.csv --validation_file dev.csv`` with columns ``audio`` (path to a sound file
relative to the CSV: WAV, FLAC, OGG, ...) and ``text``. A character vocabulary is built from the training transcripts
unless ``--tokenizer_name_or_path`` is given. Multi-GPU: ``torchrun --nproc_per_node 8 ...``.

Audio is decoded lazily, batch by batch as the Trainer reads it (``Dataset.with_transform``, as the image example
does). Where torchcodec is installed and loads (it needs FFmpeg and a torch build its wheel was made for), through
``datasets.Audio(sampling_rate=16000)``, as the transformers example does; otherwise with soundfile, resampled to
16 kHz where a file is at another rate (``--audio_decoder`` picks one). Only the headers are read up front (the clip
lengths for ``--max_duration_s``; a file that cannot be read is named before anything is written).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
from recipe_utils import (
    HubArguments,
    last_checkpoint,
    load_metric,
    parse_args,
    require_columns,
    setup_logging,
    train_evaluate_save,
)  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCTC,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
    set_seed,
)

from metalr_hf import MetaTrainer, MetaTrainingArguments  # noqa: E402

logger = logging.getLogger(__name__)
SAMPLING_RATE = 16_000


@dataclass
class ModelArguments(HubArguments):
    model_name_or_path: str = field(metadata={"help": "A Wav2Vec2 checkpoint on the Hub or a local folder."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "A CTC tokenizer; else built."})


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "e.g. openslr/librispeech_asr"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "e.g. clean"})
    train_split_name: str = field(default="train", metadata={"help": "Training split of the Hub dataset."})
    eval_split_name: str = field(default="validation", metadata={"help": "Evaluation split of the Hub dataset."})
    train_file: str | None = field(
        default=None,
        metadata={"help": "Local CSV with `audio` (paths) and `text` columns, or a folder holding a metadata.csv."},
    )
    validation_file: str | None = field(default=None, metadata={"help": "Local CSV for evaluation."})
    audio_column: str = field(default="audio", metadata={"help": "The column with the audio (path or array)."})
    text_column: str = field(default="text", metadata={"help": "The column with the transcript."})
    max_duration_s: float = field(default=20.0, metadata={"help": "Longer clips are dropped."})
    audio_decoder: str = field(
        default="auto",
        metadata={
            "help": "`torchcodec` (datasets.Audio; FFmpeg reads any format), `soundfile` (WAV, FLAC, OGG, MP3), or "
            "`auto`: torchcodec where it is installed and loads, else soundfile.",
            "choices": ["auto", "torchcodec", "soundfile"],
        },
    )

    def __post_init__(self):
        if self.dataset_name is None and self.train_file is None:
            raise ValueError("Pass --dataset_name or --train_file.")


def torchcodec_loads() -> bool:
    """Whether torchcodec is installed and its libraries load: a wheel built for another torch (its PyPI wheels link
    a CUDA build) or a machine without FFmpeg fails at import, which counts as not installed."""
    try:
        from torchcodec.decoders import AudioDecoder  # noqa: F401
    except Exception:  # ImportError, or OSError/RuntimeError from the native libraries
        return False
    return True


def pick_audio_decoder(choice: str) -> str:
    if choice == "auto":
        return "torchcodec" if torchcodec_loads() else "soundfile"
    if choice == "torchcodec" and not torchcodec_loads():
        raise ValueError(
            "--audio_decoder torchcodec: torchcodec is not installed or does not load here (it needs FFmpeg and a "
            "torch build its wheel was made for); use --audio_decoder soundfile."
        )
    return choice


def _soundfile(read, audio: dict):
    """``read`` (a soundfile function) on an undecoded ``datasets.Audio`` value (``{"path", "bytes"}``); a clear
    error names a file that cannot be read."""
    import soundfile as sf

    try:
        return read(io.BytesIO(audio["bytes"]) if audio.get("bytes") else audio["path"])
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as e:
        raise ValueError(f"Cannot decode audio file {audio.get('path')}: {e}") from None


def audio_seconds(audio: dict, decoder: str = "soundfile") -> float:
    """The length of an undecoded ``datasets.Audio`` value from its header alone; a clear error names a file that
    cannot be read."""
    if decoder == "torchcodec":
        from torchcodec.decoders import AudioDecoder

        try:
            reader = AudioDecoder(audio["bytes"] if audio.get("bytes") else audio["path"])
            seconds = reader.metadata.duration_seconds_from_header  # None where the header does not say
            if seconds is None:
                samples = reader.get_all_samples()
                seconds = samples.data.shape[-1] / samples.sample_rate
            return float(seconds)
        except (RuntimeError, ValueError, OSError, TypeError) as e:
            raise ValueError(f"Cannot decode audio file {audio.get('path')}: {e}") from None
    import soundfile as sf

    info = _soundfile(sf.info, audio)
    return info.frames / info.samplerate


def decode_audio(audio: dict) -> np.ndarray:
    """A mono float32 array at 16 kHz from an undecoded ``datasets.Audio`` value, read with soundfile and resampled
    (polyphase, ``scipy.signal.resample_poly``) where the file is at another rate; a clear error names the file."""
    import soundfile as sf
    from scipy.signal import resample_poly

    data, rate = _soundfile(lambda f: sf.read(f, dtype="float32"), audio)
    data = data if data.ndim == 1 else data.mean(1)
    if rate != SAMPLING_RATE:
        g = math.gcd(int(rate), SAMPLING_RATE)
        data = resample_poly(data, SAMPLING_RATE // g, int(rate) // g).astype(np.float32)
    return data


def load_data(data_args, cache_dir):
    """Hub datasets, or local data through the `csv` builder: a CSV with a column of paths relative to it, or a
    folder in the `audiofolder` layout (its ``metadata.csv`` names each clip in ``file_name``; the `audiofolder`
    builder itself encodes through torchcodec in datasets 5, which needs FFmpeg). The audio column becomes a
    ``datasets.Audio`` feature, read undecoded (decoded as the Trainer reads it)."""
    if data_args.dataset_name is not None:
        raw = datasets.DatasetDict(
            train=datasets.load_dataset(
                data_args.dataset_name, data_args.dataset_config_name, split=data_args.train_split_name
            ),
            validation=datasets.load_dataset(
                data_args.dataset_name, data_args.dataset_config_name, split=data_args.eval_split_name
            ),
        )
    else:
        files = {k: v for k, v in (("train", data_args.train_file), ("validation", data_args.validation_file)) if v}
        audio_column = {}
        for split, source in files.items():
            if os.path.isdir(source):  # the audiofolder layout
                files[split], audio_column[split] = os.path.join(source, "metadata.csv"), "file_name"
        raw = datasets.load_dataset("csv", data_files=files, cache_dir=cache_dir)
        for split, source in files.items():
            column = audio_column.get(split, data_args.audio_column)
            require_columns(raw[split], [column, data_args.text_column], source)
            base = os.path.dirname(os.path.abspath(source))
            raw[split] = (
                raw[split]
                .map(
                    lambda ex, base=base, column=column: {data_args.audio_column: os.path.join(base, ex[column])},
                    remove_columns=[column] if column != data_args.audio_column else [],
                    desc="paths",
                )
                .cast_column(data_args.audio_column, datasets.Value("string"))
            )  # the Audio cast wants `string`
    return raw.cast_column(data_args.audio_column, datasets.Audio(decode=False))


def build_tokenizer(texts) -> Wav2Vec2CTCTokenizer:
    """A character vocabulary from the transcriptions. Every rank builds the same one from the same texts, in a
    temporary file: nothing is written to ``output_dir`` before the model has loaded (the tokenizer is saved with the
    model, as part of the processor)."""
    chars = sorted(set("".join(texts).lower()) - {" "})
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vocab.json")
        with open(path, "w") as f:
            json.dump(vocab, f)
        return Wav2Vec2CTCTokenizer(path, unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")


@dataclass
class CTCCollator:
    processor: Wav2Vec2Processor

    def __call__(self, features):
        batch = self.processor.feature_extractor.pad(
            [{"input_values": f["input_values"]} for f in features], padding=True, return_tensors="pt"
        )
        labels = self.processor.tokenizer.pad([{"input_ids": f["labels"]} for f in features], return_tensors="pt")
        batch["labels"] = labels["input_ids"].masked_fill(labels["attention_mask"].ne(1), -100)
        return batch


def main():
    model_args, data_args, training_args = parse_args(ModelArguments, DataTrainingArguments, MetaTrainingArguments)
    setup_logging(training_args)
    checkpoint = last_checkpoint(training_args)
    set_seed(training_args.seed)
    raw = load_data(data_args, model_args.cache_dir)
    # Clip lengths from the headers: a file that cannot be read is named now, before a model loads or anything is
    # written; the audio is decoded on the fly, batch by batch, as the Trainer reads it (`transform` below).
    decoder = pick_audio_decoder(data_args.audio_decoder)
    logger.info(f"Decoding audio with {decoder}")
    with training_args.main_process_first(desc="clip lengths"):
        raw = raw.filter(
            lambda audio: audio_seconds(audio, decoder) <= data_args.max_duration_s,
            input_columns=data_args.audio_column,
            desc="clip lengths",
        )
    if decoder == "torchcodec":  # datasets decodes (and resamples) each clip as a batch is read
        raw = raw.cast_column(data_args.audio_column, datasets.Audio(sampling_rate=SAMPLING_RATE))
    metric = load_metric("wer")  # evaluate, local module (jiwer)
    hub = model_args.hub_kwargs()
    if model_args.tokenizer_name_or_path:
        tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(model_args.tokenizer_name_or_path, **hub)
    else:
        tokenizer = build_tokenizer(raw["train"][data_args.text_column])
    try:
        feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(model_args.model_name_or_path, **hub)
    except OSError:
        feature_extractor = Wav2Vec2FeatureExtractor(sampling_rate=SAMPLING_RATE, return_attention_mask=True)
    processor = Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    model = AutoModelForCTC.from_pretrained(
        model_args.model_name_or_path,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        ctc_loss_reduction="mean",
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub,
    )

    def transform(batch):
        if decoder == "torchcodec":  # datasets' decoders: mono, at 16 kHz
            arrays = [np.asarray(a["array"], dtype=np.float32) for a in batch[data_args.audio_column]]
        else:
            arrays = [decode_audio(a) for a in batch[data_args.audio_column]]
        return {
            "input_values": feature_extractor(arrays, sampling_rate=SAMPLING_RATE).input_values,
            "labels": [tokenizer(t.lower()).input_ids for t in batch[data_args.text_column]],
        }

    ds = raw.with_transform(transform)
    training_args.remove_unused_columns = False  # the transform reads the audio and text columns

    def compute_metrics(p):
        pred_ids = np.argmax(p.predictions, axis=-1)
        label_ids = np.where(p.label_ids == -100, tokenizer.pad_token_id, p.label_ids)
        preds = tokenizer.batch_decode(pred_ids)
        refs = tokenizer.batch_decode(label_ids, group_tokens=False)
        return metric.compute(predictions=preds, references=refs)

    trainer = MetaTrainer(
        model=model,
        args=training_args,
        train_dataset=ds["train"] if training_args.do_train else None,
        eval_dataset=ds["validation"] if training_args.do_eval and "validation" in ds else None,
        processing_class=processor,
        data_collator=CTCCollator(processor),
        compute_metrics=compute_metrics,
    )
    train_evaluate_save(
        trainer,
        training_args,
        checkpoint,
        {
            "finetuned_from": model_args.model_name_or_path,
            "tasks": "automatic-speech-recognition",
            "dataset": data_args.dataset_name or data_args.train_file,
        },  # fmt: skip
    )


if __name__ == "__main__":
    main()
