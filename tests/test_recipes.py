"""Every recipe end to end, offline: tiny models from configs, local data, a few steps with the meta scheduler."""

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "movie", "was", "a", "b", "c", "d"]


def run(script, *args, expect_ok=True, hub_offline=True, env_extra=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_DISABLED": "true", "TOKENIZERS_PARALLELISM": "false"}
    env.update(env_extra or {})
    if not hub_offline:  # no network here either way: evaluation must not wait for it
        env.pop("HF_HUB_OFFLINE")
    common = [
        "--report_to", "none", "--use_cpu", "--max_steps", "4", "--lr_scheduler_type", "meta",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8", "--save_strategy", "no",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(RECIPES / script), *args, *common], env=env, capture_output=True, text=True, timeout=300
    )
    if expect_ok:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _tokenizer_dir(path: Path):
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    tok.save_pretrained(path)
    return tok


def _metrics(out: Path) -> dict:
    return json.loads((out / "eval_results.json").read_text())


def _sentences(n, rng):
    labels = rng.integers(0, 2, n)
    text = [" ".join(["the", "movie", "was", rng.choice(WORDS[:3] if y else WORDS[3:6])]) for y in labels]
    return text, labels


def test_run_glue_local_csv(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    model_dir = tmp_path / "model"
    tok = _tokenizer_dir(model_dir)
    BertForSequenceClassification(
        BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, num_labels=2)
    ).save_pretrained(model_dir)  # fmt: skip
    rng = np.random.default_rng(0)
    for name, n in (("train", 48), ("dev", 24)):
        text, labels = _sentences(n, rng)
        (tmp_path / f"{name}.csv").write_text("sentence,label\n" + "\n".join(f"{t},{y}" for t, y in zip(text, labels)))
    out = tmp_path / "out"
    run("run_glue.py", "--model_name_or_path", str(model_dir), "--train_file", str(tmp_path / "train.csv"),
        "--validation_file", str(tmp_path / "dev.csv"), "--do_train", "--do_eval", "--max_seq_length", "16",
        "--output_dir", str(out))  # fmt: skip
    m = _metrics(out)
    assert {"eval_loss", "eval_accuracy", "eval_f1"} <= set(m)
    info = json.loads((out / "metalr_hf_learner.json").read_text())
    assert info["name_or_path"] == "metalr-default-v3"
    assert "metalr-hf" in (out / "README.md").read_text()


def _glue_model(model_dir: Path, num_labels: int):
    from transformers import BertConfig, BertForSequenceClassification

    tok = _tokenizer_dir(model_dir)
    BertForSequenceClassification(
        BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, num_labels=num_labels)
    ).save_pretrained(model_dir)  # fmt: skip


@pytest.mark.parametrize("hub_offline", [True, False], ids=["HF_HUB_OFFLINE", "no-HF_HUB_OFFLINE"])
def test_run_glue_cola_shaped_csv_reports_matthews_correlation(tmp_path, hub_offline):
    _glue_model(tmp_path / "model", 2)
    rng = np.random.default_rng(1)
    for name, n in (("train", 32), ("dev", 24)):
        text, labels = _sentences(n, rng)
        (tmp_path / f"{name}.csv").write_text("sentence,label\n" + "\n".join(f"{t},{y}" for t, y in zip(text, labels)))
    out = tmp_path / "out"
    run("run_glue.py", "--model_name_or_path", str(tmp_path / "model"), "--task_name", "cola", "--train_file",
        str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"), "--do_train", "--do_eval",
        "--max_seq_length", "16", "--output_dir", str(out), hub_offline=hub_offline)  # fmt: skip
    m = _metrics(out)
    assert -1.0 <= m["eval_matthews_correlation"] <= 1.0 and "eval_f1" not in m
    assert m["eval_runtime"] < 10  # not waiting on the network (a failed Hub fetch took ~14 s)


def test_run_glue_stsb_shaped_csv_reports_pearson_and_spearman(tmp_path):
    _glue_model(tmp_path / "model", 1)
    rng = np.random.default_rng(2)
    for name, n in (("train", 32), ("dev", 24)):
        a, _ = _sentences(n, rng)
        b, _ = _sentences(n, rng)
        scores = rng.uniform(0, 5, n)
        rows = [f"{x},{y},{z:.2f}" for x, y, z in zip(a, b, scores)]
        (tmp_path / f"{name}.csv").write_text("sentence1,sentence2,label\n" + "\n".join(rows))
    out = tmp_path / "out"
    run("run_glue.py", "--model_name_or_path", str(tmp_path / "model"), "--task_name", "stsb", "--train_file",
        str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"), "--do_train", "--do_eval",
        "--max_seq_length", "16", "--output_dir", str(out))  # fmt: skip
    m = _metrics(out)
    assert {"eval_pearson", "eval_spearmanr"} <= set(m) and "eval_accuracy" not in m


def test_run_glue_bad_input_names_the_culprit(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\nhello,1\n")
    out = tmp_path / "out"
    proc = run("run_glue.py", "--model_name_or_path", "none", "--train_file", str(tmp_path / "train.csv"),
               "--do_train", "--output_dir", str(out), expect_ok=False)  # fmt: skip
    assert proc.returncode != 0 and "lacks the column(s) ['sentence']" in proc.stderr and "train.csv" in proc.stderr
    assert not out.exists()  # nothing half-written
    proc = run("run_glue.py", "--model_name_or_path", "none", "--task_name", "sst3", "--output_dir", str(out),
               expect_ok=False)  # fmt: skip
    assert "Unknown task 'sst3'" in proc.stderr and "sst2" in proc.stderr


def test_run_clm_local_text(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model_dir = tmp_path / "model"
    tok = _tokenizer_dir(model_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2)).save_pretrained(
        model_dir
    )
    rng = np.random.default_rng(1)
    for name in ("train", "valid"):
        (tmp_path / f"{name}.txt").write_text("\n".join(" ".join(rng.choice(WORDS, 12)) for _ in range(40)))
    out = tmp_path / "out"
    run("run_clm.py", "--model_name_or_path", str(model_dir), "--train_file", str(tmp_path / "train.txt"),
        "--validation_file", str(tmp_path / "valid.txt"), "--block_size", "16", "--do_train", "--do_eval",
        "--output_dir", str(out))  # fmt: skip
    m = _metrics(out)
    assert {"eval_loss", "perplexity"} <= set(m) and m["perplexity"] > 1


def _wav(path: Path, freq: float, seconds=0.4, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    data = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(data.tobytes())


def _speech_data(tmp_path: Path, n=12):
    """``n`` clips, the first at 8 kHz and the second at 22.05 kHz (resampled by the recipe), the others at 16 kHz."""
    (tmp_path / "clips").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        _wav(tmp_path / "clips" / f"{i}.wav", 200 + 50 * i, sr={0: 8000, 1: 22050}.get(i, 16000))
        rows.append(f"clips/{i}.wav,{'a b' if i % 2 else 'c d'}")
    (tmp_path / "train.csv").write_text("audio,text\n" + "\n".join(rows))
    (tmp_path / "dev.csv").write_text("audio,text\n" + "\n".join(rows[:4]))


def _wav2vec2_dir(path: Path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    config = Wav2Vec2Config(
        vocab_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, do_stable_layer_norm=True, feat_extract_norm="layer",
    )  # fmt: skip
    Wav2Vec2ForCTC(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(path)


def test_run_speech_recognition_ctc_local_audio(tmp_path):
    """The checkpoint's CTC head (8 symbols) does not fit the vocabulary built from the data: refused by
    transformers unless --ignore_mismatched_sizes says to replace it, as in the HF examples."""
    _wav2vec2_dir(tmp_path / "model")
    _speech_data(tmp_path)
    out = tmp_path / "out"
    args = ["--model_name_or_path", str(tmp_path / "model"), "--train_file", str(tmp_path / "train.csv"),
            "--validation_file", str(tmp_path / "dev.csv"), "--do_train", "--do_eval",
            "--output_dir", str(out)]  # fmt: skip
    refused = run("run_speech_recognition_ctc.py", *args, expect_ok=False)
    assert refused.returncode != 0 and "ignore_mismatched_sizes" in refused.stderr and not out.exists()
    run("run_speech_recognition_ctc.py", *args, "--ignore_mismatched_sizes")
    assert json.loads((out / "vocab.json").read_text())["<pad>"] == 0  # the built tokenizer, saved with the model
    m = _metrics(out)
    assert {"eval_loss", "eval_wer"} <= set(m) and m["eval_wer"] >= 0


def test_run_speech_recognition_ctc_audiofolder(tmp_path):
    """A folder of WAVs with its metadata.csv, read by the `audiofolder` builder and decoded with soundfile."""
    _wav2vec2_dir(tmp_path / "model")
    _speech_data(tmp_path, n=6)
    rows = [f"{i}.wav,{'a b' if i % 2 else 'c d'}" for i in range(6)]
    (tmp_path / "clips" / "metadata.csv").write_text("file_name,text\n" + "\n".join(rows))
    out = tmp_path / "out"
    run("run_speech_recognition_ctc.py", "--model_name_or_path", str(tmp_path / "model"),
        "--train_file", str(tmp_path / "clips"), "--validation_file", str(tmp_path / "clips"),
        "--do_train", "--do_eval", "--output_dir", str(out), "--ignore_mismatched_sizes")  # fmt: skip
    assert _metrics(out)["eval_wer"] >= 0


_FAKE_TORCHCODEC = """
import io, json, os
from types import SimpleNamespace

import soundfile as sf
import torch
from scipy.signal import resample_poly


class AudioDecoder:
    # torchcodec's decoder at the boundary datasets uses (``datasets.features._torchcodec`` subclasses it): the
    # file read with soundfile, resampled to ``sample_rate``; every decode is logged
    def __init__(self, source, *, stream_index=None, sample_rate=None, num_channels=None):
        data, rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32",
                             always_2d=True)
        self._name = os.path.basename(getattr(source, "name", source)) if not isinstance(source, bytes) else "bytes"
        self._data, self._rate, self._out = data.T, rate, sample_rate or rate
        self.metadata = SimpleNamespace(duration_seconds_from_header=data.shape[0] / rate, sample_rate=rate)

    def get_all_samples(self):
        data = self._data if self._out == self._rate else resample_poly(self._data, self._out, self._rate, axis=1)
        with open(os.environ["FAKE_TORCHCODEC_LOG"], "a") as f:
            f.write(json.dumps({"file": self._name, "rate": self._out, "samples": data.shape[1]}) + "\\n")
        return SimpleNamespace(data=torch.as_tensor(data), sample_rate=self._out)

    def get_samples_played_in_range(self, start, stop=None):
        return SimpleNamespace(data=torch.zeros(1, 0), sample_rate=self._out)


class VideoDecoder:  # datasets imports it beside AudioDecoder
    pass
"""


def _fake_torchcodec(root: Path, broken: bool = False) -> Path:
    """A ``torchcodec`` package on ``root``: the decoder above, or (``broken``) one whose import fails as the CUDA
    wheels of PyPI do beside a CPU torch (``libnvrtc.so.13: cannot open shared object file``)."""
    pkg = root / "torchcodec"
    pkg.mkdir(parents=True)
    if broken:
        (pkg / "__init__.py").write_text("raise OSError('libnvrtc.so.13: cannot open shared object file')\n")
        return root
    (pkg / "__init__.py").write_text("from . import decoders  # noqa: F401\n")
    (pkg / "decoders.py").write_text(_FAKE_TORCHCODEC)
    return root


def test_speech_decodes_through_datasets_audio_where_torchcodec_loads(tmp_path):
    """With torchcodec present the clips go through ``datasets.Audio(sampling_rate=16000)`` (torchcodec stands in
    at the decoder: its wheels do not load beside a CPU torch), every one decoded at 16 kHz as the Trainer reads
    it, the 8 kHz and 22.05 kHz clips included; with a torchcodec that does not load, soundfile reads them."""
    _wav2vec2_dir(tmp_path / "model")
    _speech_data(tmp_path, n=8)
    args = ["--model_name_or_path", str(tmp_path / "model"), "--train_file", str(tmp_path / "train.csv"),
            "--validation_file", str(tmp_path / "dev.csv"), "--do_train", "--do_eval", "--ignore_mismatched_sizes",
            "--log_level", "info"]  # fmt: skip
    log = tmp_path / "decodes.jsonl"
    env = {"PYTHONPATH": os.pathsep.join([str(_fake_torchcodec(tmp_path / "ok")), os.environ.get("PYTHONPATH", "")]),
           "FAKE_TORCHCODEC_LOG": str(log)}  # fmt: skip
    proc = run("run_speech_recognition_ctc.py", *args, "--output_dir", str(tmp_path / "out"), env_extra=env)
    assert "Decoding audio with torchcodec" in proc.stdout
    decodes = [json.loads(line) for line in log.read_text().splitlines()]
    assert {d["rate"] for d in decodes} == {16000}
    by_file = {d["file"]: d["samples"] for d in decodes}
    assert {"0.wav", "1.wav", "2.wav"} <= set(by_file) and by_file["0.wav"] == by_file["1.wav"] == by_file["2.wav"]
    assert _metrics(tmp_path / "out")["eval_wer"] >= 0

    env["PYTHONPATH"] = str(_fake_torchcodec(tmp_path / "broken", broken=True))
    proc = run("run_speech_recognition_ctc.py", *args, "--output_dir", str(tmp_path / "out2"), env_extra=env)
    assert "Decoding audio with soundfile" in proc.stdout and _metrics(tmp_path / "out2")["eval_wer"] >= 0
    refused = run("run_speech_recognition_ctc.py", *args, "--output_dir", str(tmp_path / "out3"),
                  "--audio_decoder", "torchcodec", env_extra=env, expect_ok=False)  # fmt: skip
    assert refused.returncode != 0 and "--audio_decoder soundfile" in refused.stderr


def test_speech_audio_at_another_rate_is_resampled_to_16_khz(tmp_path):
    """A clip at 8 kHz decodes to 16 kHz: twice the samples, the same tone (before, it was refused)."""
    import importlib.util

    sys.path.insert(0, str(RECIPES))
    spec = importlib.util.spec_from_file_location("ctc_recipe", RECIPES / "run_speech_recognition_ctc.py")
    recipe = sys.modules["ctc_recipe"] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
    try:
        spec.loader.exec_module(recipe)
    finally:
        sys.path.remove(str(RECIPES))
        del sys.modules["ctc_recipe"]
    _wav(tmp_path / "a.wav", 440.0, seconds=0.5, sr=8000)
    audio = {"path": str(tmp_path / "a.wav"), "bytes": None}
    data = recipe.decode_audio(audio)
    assert data.dtype == np.float32 and len(data) == 8000 and recipe.audio_seconds(audio) == pytest.approx(0.5)
    spectrum = np.abs(np.fft.rfft(data))
    assert np.fft.rfftfreq(len(data), 1 / 16000)[spectrum.argmax()] == pytest.approx(440.0, abs=3.0)


def test_undecodable_audio_is_named(tmp_path):
    _speech_data(tmp_path, n=3)
    (tmp_path / "clips" / "1.wav").write_bytes(b"RIFF....garbage")
    out = tmp_path / "out"
    proc = run("run_speech_recognition_ctc.py", "--model_name_or_path", "none", "--train_file",
               str(tmp_path / "train.csv"), "--do_train", "--output_dir", str(out), expect_ok=False)  # fmt: skip
    assert proc.returncode != 0 and "Cannot decode audio file" in proc.stderr and "1.wav" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_run_image_classification_local_folder(tmp_path, arch):
    """The images go through the model's image processor (its size and statistics), which is saved with the model;
    a model folder without one is refused, naming it, before anything is written."""
    from PIL import Image
    from transformers import (
        AutoImageProcessor,
        ConvNextImageProcessor,
        ResNetConfig,
        ResNetForImageClassification,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    model_dir = tmp_path / "model"
    if arch == "vit":
        ViTForImageClassification(
            ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, num_labels=6)
        ).save_pretrained(model_dir)  # fmt: skip
        processor = ViTImageProcessor(size={"height": 16, "width": 16})
    else:
        ResNetForImageClassification(
            ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=6)
        ).save_pretrained(model_dir)
        processor = ConvNextImageProcessor(size={"shortest_edge": 24})  # ImageNet statistics, as ResNet-50's
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 3)):
        for c in range(6):  # six classes: top-5 accuracy is meaningful
            d = tmp_path / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                arr = (rng.random((20, 20, 3)) * 60 + c * 30).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    data = ["--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val"), "--do_train"]
    data.append("--do_eval")
    refused = run("run_image_classification.py", "--model_name_or_path", str(model_dir), *data, "--output_dir",
                  str(tmp_path / "refused"), expect_ok=False)  # fmt: skip
    assert refused.returncode != 0 and "No image processor in" in refused.stderr and str(model_dir) in refused.stderr
    assert not (tmp_path / "refused").exists()
    processor.save_pretrained(model_dir)
    out = tmp_path / "out"
    run("run_image_classification.py", "--model_name_or_path", str(model_dir), *data, "--output_dir", str(out))
    assert {"eval_loss", "eval_accuracy", "eval_top5_accuracy"} <= set(_metrics(out))
    saved = AutoImageProcessor.from_pretrained(out)
    assert type(saved) is type(processor) and saved.image_mean == processor.image_mean


@pytest.mark.parametrize("model_type", ["patchtst", "patchtsmixer"])
def test_run_time_series_local_csv(tmp_path, model_type):
    from metalr_hf.metatrain.forecasters import m4_like_series

    series = m4_like_series(10, 60, np.random.default_rng(0))
    rows = [f"s{i},{v:.4f}" for i, s in enumerate(series) for v in s]
    (tmp_path / "series.csv").write_text("series_id,value\n" + "\n".join(rows))
    out = tmp_path / "out"
    data = ["--train_file", str(tmp_path / "series.csv"), "--prediction_length", "6"]
    run("run_time_series.py", *data, "--model_type", model_type, "--context_length", "24", "--hidden_size", "16",
        "--patch_length", "4", "--do_train", "--do_eval", "--output_dir", str(out))  # fmt: skip
    m = _metrics(out)
    assert {"eval_mae", "eval_rmse"} <= set(m) and m["eval_rmse"] >= m["eval_mae"] > 0
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out).model_type == model_type  # a transformers model, saved as one
    # the saved model, evaluated again from its folder; a context length other than its own is refused, naming it
    run("run_time_series.py", *data, "--model_name_or_path", str(out), "--context_length", "24", "--do_eval",
        "--output_dir", str(tmp_path / "again"))  # fmt: skip
    assert _metrics(tmp_path / "again")["eval_mae"] == pytest.approx(m["eval_mae"], rel=1e-5)
    refused = run("run_time_series.py", *data, "--model_name_or_path", str(out), "--context_length", "12",
                  "--do_eval", "--output_dir", str(tmp_path / "refused"), expect_ok=False)  # fmt: skip
    assert refused.returncode != 0 and "context_length=24" in refused.stderr
