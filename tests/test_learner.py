"""MetaLearner: cores, zero-initialised output, strict safetensors round trips, clear errors."""

import json

import pytest
import torch
from conftest import perturbed_learner

from metalr_hf import MetaLearner
from metalr_hf.features import FEATURE_NAMES, SCHEMA_VERSION
from metalr_hf.hub import MetaLearnerNotFoundError

CONFIGS = [
    {"core": "rnn"},
    {"core": "gru", "hidden_size": 16, "num_layers": 2},
    {"core": "lstm", "hidden_size": 24},
    {"core": "transformer", "hidden_size": 16, "window": 4, "num_heads": 2},
    {"core": "gru", "disabled_features": ["loss", "grad_snr"], "max_delta": 1.0},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["core"])
def test_fresh_learner_is_exactly_the_prior(config):
    learner = MetaLearner(**config)
    state = learner.init_state(3)
    for _ in range(5):
        delta, state = learner(torch.randn(3, len(FEATURE_NAMES)), state)
        assert torch.equal(delta, torch.zeros(3))
    assert state.shape == (3, learner.state_size)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["core"])
def test_save_load_round_trip_is_bit_exact(tmp_path, config):
    learner = perturbed_learner(seed=5, **config)
    learner.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = MetaLearner.from_pretrained(tmp_path)
    assert loaded.config == learner.config
    for (k, a), (_, b) in zip(sorted(learner.state_dict().items()), sorted(loaded.state_dict().items())):
        assert torch.equal(a, b), k
    x, s = torch.randn(2, len(FEATURE_NAMES)), learner.init_state(2)
    assert torch.equal(learner(x, s)[0], loaded(x, s)[0])
    assert loaded.fingerprint() == learner.fingerprint()
    assert loaded.source["name_or_path"] == str(tmp_path)


def test_bounded_output_and_mask():
    learner = perturbed_learner(seed=0, scale=5.0, max_delta=0.7, disabled_features=["loss"])
    delta, _ = learner(torch.randn(64, len(FEATURE_NAMES)) * 100, learner.init_state(64))
    assert delta.abs().max() <= 0.7 and delta.abs().max() > 0.1
    # a masked feature has no effect at all
    x = torch.randn(4, len(FEATURE_NAMES))
    y = x.clone()
    y[:, FEATURE_NAMES.index("log_loss_rel")] += 10.0
    s = learner.init_state(4)
    assert torch.equal(learner(x, s)[0], learner(y, s)[0])


def test_other_schema_version_is_refused(tmp_path):
    perturbed_learner().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"schema version {SCHEMA_VERSION + 1}"):
        MetaLearner.from_pretrained(tmp_path)


def test_corrupted_weights_are_refused(tmp_path):
    perturbed_learner().save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:40] + b"garbage" + data[60:200])
    with pytest.raises(ValueError, match="damaged or not a safetensors file"):
        MetaLearner.from_pretrained(tmp_path)


def test_unknown_config_key_and_missing_files(tmp_path):
    perturbed_learner().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hiden_size": 3}))
    with pytest.raises(ValueError, match="hiden_size"):
        MetaLearner.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(MetaLearnerNotFoundError, match="model.safetensors"):
        MetaLearner.from_pretrained(tmp_path)


def test_pickle_weights_are_never_read(tmp_path):
    learner = perturbed_learner()
    learner.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(learner.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(MetaLearnerNotFoundError, match="lacks"):
        MetaLearner.from_pretrained(tmp_path)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="core must be one of .* got 'cnn'"):
        MetaLearner(core="cnn")
    with pytest.raises(ValueError, match="hidden_size"):
        MetaLearner(hidden_size=0)
    with pytest.raises(ValueError, match="Unknown feature or feature group 'los'"):
        MetaLearner(disabled_features=["los"])


def test_bundled_default_loads_offline():
    learner = MetaLearner.from_pretrained(None)
    assert learner.source["name_or_path"] == "metalr-default-v3"
    assert learner.config["schema_version"] == SCHEMA_VERSION


def test_earlier_bundled_learner_loads_by_name_and_differs():
    """The first shipped learner stays loadable by name (old checkpoints record its fingerprint)."""
    from metalr_hf.hub import DEFAULT_LEARNER, bundled_learners

    assert {"metalr-default-v1", "metalr-default-v2", DEFAULT_LEARNER} <= set(bundled_learners())
    old = MetaLearner.from_pretrained("metalr-default-v1")
    assert old.source["name_or_path"] == "metalr-default-v1"
    assert old.fingerprint() != MetaLearner.from_pretrained(None).fingerprint()


def test_scratch_learner_loads_by_name_and_can_pass_the_default_bound():
    """The opt-in from-scratch learner is bundled, loads by name and, on a from-scratch toy at a base LR far too
    small, raises the LR beyond what the default learner's bound (×7.4) allows; its card warns off fine-tuning."""
    import math

    from metalr_hf import MetaLRScheduler
    from metalr_hf.hub import bundled_learner_dir

    learner = MetaLearner.from_pretrained("metalr-scratch-v1")
    assert learner.source["name_or_path"] == "metalr-scratch-v1" and learner.max_delta == 5.0
    assert "Never for fine-tuning" in (bundled_learner_dir("metalr-scratch-v1") / "README.md").read_text()

    def max_scale(name):
        torch.manual_seed(0)
        x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
        model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)
        sched = MetaLRScheduler(opt, num_training_steps=100, meta_learner=name)
        scales = []
        for _ in range(60):
            idx = torch.randint(0, 256, (32,))
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            sched.observe(loss.detach())
            opt.step()
            sched.step()
            scales.append(sched.last_scale)
        return max(scales)

    assert max_scale(None) <= math.exp(2.0) + 1e-6 < 1.5 * math.exp(2.0) < max_scale("metalr-scratch-v1")


def test_a_learner_reads_the_features_it_was_trained_on():
    """Features are only appended: a learner trained before ``pretrained`` existed ignores that column (the
    bundled default keeps its fingerprint); ``with_features`` extends a learner with zero input weights, so it
    decides exactly as before until training moves them; a feature list that is not a prefix is refused."""
    from metalr_hf.features import FeatureExtractor
    from metalr_hf.metatrain.population import with_features

    old = MetaLearner.from_pretrained("metalr-default-v3")
    assert old.config["feature_names"] == list(FEATURE_NAMES[:-1]) and FEATURE_NAMES[-1] == "pretrained"
    x = torch.randn(5, len(FEATURE_NAMES))
    flipped = x.clone()
    flipped[:, -1] = 1.0 - flipped[:, -1]
    s = old.init_state(5)
    torch.testing.assert_close(old(x, s)[0], old(flipped, s)[0])
    new = with_features(old, FEATURE_NAMES)
    assert new.num_features == len(FEATURE_NAMES) and new.max_delta == old.max_delta
    torch.testing.assert_close(new(x, s)[0], old(x, s)[0])
    with torch.no_grad():
        new.input.weight[:, -1] = 1.0  # once trained, the new column matters
    assert not torch.allclose(new(x, s)[0], new(flipped, s)[0])
    with pytest.raises(ValueError, match="prefix"):
        MetaLearner(feature_names=["progress", "loss_noise"])
    # the feature itself travels with the state; a state without it, or with fewer features, is refused by name
    ext = FeatureExtractor(100, batch_size=2, pretrained=torch.tensor([0.0, 1.0]))
    state = ext.state_dict()
    fresh = FeatureExtractor(100, batch_size=2)
    fresh.load_state_dict(state)
    assert fresh.pretrained.tolist() == [0.0, 1.0]
    with pytest.raises(KeyError, match="pretrained"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "pretrained"})
    with pytest.raises(ValueError, match="last_features"):
        fresh.load_state_dict({**state, "last_features": state["last_features"][:, :-1]})


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_delta", float("inf")),
        ("max_delta", float("nan")),
        ("max_delta", 1e6),
        ("hidden_size", 10**9),
        ("num_layers", 10**6),
        ("hidden_size", None),
        ("hidden_size", "32"),
        ("num_layers", [1]),
        ("core", None),
        ("window", True),
        ("disabled_features", "loss"),
    ],
)
def test_absurd_learner_config_is_refused_naming_field_and_file(tmp_path, field, value):
    """A config.json with a non-finite bound or an absurd size is refused before anything is allocated, with a
    message that names the field and the file (not an infinite LR, a MemoryError or a bare AttributeError)."""
    MetaLearner().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config[field] = value
    (tmp_path / "config.json").write_text(json.dumps(config))  # json writes Infinity / NaN for those floats
    with pytest.raises(ValueError, match=rf"{field}.*") as err:
        MetaLearner.from_pretrained(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)


def test_transformer_with_zero_heads_is_refused():
    with pytest.raises(ValueError, match="num_heads must be an integer in"):
        MetaLearner(core="transformer", num_heads=0)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"[1, 2, 3]", b"null"])
def test_unreadable_config_names_the_file(tmp_path, content):
    MetaLearner().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match="config") as err:
        MetaLearner.from_pretrained(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)


def test_non_finite_weights_are_refused_at_load_naming_the_file(tmp_path):
    """safetensors checks only the header: NaN inside the tensor data would load silently and make every LR NaN."""
    from safetensors.torch import load_file, save_file

    perturbed_learner().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["head.bias"][0] = float("nan")
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="non-finite values .*head.bias") as err:
        MetaLearner.from_pretrained(tmp_path)
    assert str(tmp_path / "model.safetensors") in str(err.value)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["core"] + str(c.get("num_layers", "")))
def test_one_run_step_is_the_forward_pass(config):
    """The scheduler's one-run step (NumPy, preallocated) gives the module's δ and state to float32 rounding, step
    after step, never writes into the state handed in, and follows the learner's weights; cores it does not cover
    (LSTM, transformer) and learners off the CPU fall back to the module."""
    learner = perturbed_learner(seed=4, **config)
    step = learner.one_run_step()
    if config["core"] in ("lstm", "transformer"):
        assert step is None
        return
    gen = torch.Generator().manual_seed(0)
    state_ref = state = learner.init_state(1)
    with torch.no_grad():
        for _ in range(6):
            feats = (2 * torch.randn(1, len(FEATURE_NAMES), generator=gen)).tolist()[0]
            handed = state.clone()
            delta_ref, state_ref = learner(torch.tensor([feats]), state_ref)
            previous, (delta, state) = state, step(feats, state)
            assert torch.equal(previous, handed)  # the state handed in is untouched
            assert delta == pytest.approx(float(delta_ref[0]), abs=2e-6)
            torch.testing.assert_close(state, state_ref, atol=2e-6, rtol=1e-5)
            assert step.state_finite
            state_ref = state.clone()  # both go on from the same state
        assert abs(delta) > 1e-3  # the learner is active: the check has teeth
        assert step.fresh()
        learner.head.bias.add_(0.5)  # weights changed in place: read as they are
        assert step(feats, state)[0] == pytest.approx(float(learner(torch.tensor([feats]), state)[0][0]), abs=2e-6)
        learner.double()  # weights replaced: this step no longer applies
    assert not step.fresh() and learner.one_run_step() is None
