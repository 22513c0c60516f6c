"""What a learner folder must hold to load: its ``config.json`` fields and their bounds (checked before any tensor is
built: a config from a Hub repo cannot make a run allocate gigabytes), and the strict loading of ``config.json`` +
``model.safetensors`` that :meth:`MetaLearner.from_pretrained <metalr_hf.learner.MetaLearner.from_pretrained>` ends
in."""

from __future__ import annotations

import numbers
from pathlib import Path

import torch

from .features import FEATURE_NAMES, SCHEMA_VERSION, feature_mask

__all__ = ["CORES", "MAX_CONFIG_BYTES", "MAX_PARAMETERS", "count_parameters", "load_files", "package_version",
           "read_config", "validate_config"]  # fmt: skip

CORES = ("rnn", "gru", "lstm", "transformer")


def read_config(files) -> dict:
    """The learner's ``config.json`` as a dict (without the version stamp), or a ``ValueError`` naming the file."""
    from ._files import loads_bounded

    try:
        size = Path(files.config).stat().st_size
        if size > MAX_CONFIG_BYTES:  # refused before reading: a Hub repo may hold anything
            raise ValueError(f"{size} bytes; a learner config holds a few hundred, at most {MAX_CONFIG_BYTES}")
        config = loads_bounded(Path(files.config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"Cannot read the learner config {files.config}: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"The learner config {files.config} must hold a JSON object, got {config!r:.80}")
    config.pop("metalr_hf_version", None)
    return config


# The bounds a learner config must respect: a tiny recurrent network, a correction of at most e^±10. Each field
# alone, and their product: the parameter count (checked before any tensor is built, so that a config from a Hub
# repo cannot make a user's run allocate gigabytes; the shipped learners have under 10,000).
_INT_BOUNDS = {"hidden_size": (1, 4096), "num_layers": (1, 64), "window": (1, 4096), "num_heads": (1, 64)}
_MAX_DELTA_BOUND = 10.0
MAX_PARAMETERS = 1_000_000  # 4 MB of float32 weights
MAX_CONFIG_BYTES = 64 * 1024


def count_parameters(core: str, hidden_size: int, num_layers: int, window: int, num_features: int) -> int:
    """The parameter count of the learner a config describes, from the config alone (equal to
    ``MetaLearner(**config).num_parameters()``, tested)."""
    H, L = hidden_size, num_layers
    total = num_features * H + H + H + 1  # the input layer and the head
    if core == "transformer":  # positions; per layer: attention (in and out), feed-forward 2H, two LayerNorms
        per_layer = (3 * H * H + 3 * H) + (H * H + H) + (2 * H * H + 2 * H) + (2 * H * H + H) + 4 * H
        return total + window * H + L * per_layer
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[core]
    return total + L * gates * (2 * H * H + 2 * H)


def validate_config(
    core, hidden_size, num_layers, window, num_heads, max_delta, disabled_features, schema_version, feature_names
) -> None:
    """Every field of a learner config, checked before anything is built: ``ValueError`` naming the field."""
    if schema_version != SCHEMA_VERSION:
        raise ValueError(
            f"This meta-learner was built for feature schema version {schema_version!r}, but metalr-hf "
            f"{package_version()} reads schema version {SCHEMA_VERSION}. Use a learner trained for schema "
            f"{SCHEMA_VERSION} (the bundled default is one), or install the metalr-hf release that matches it."
        )
    if not isinstance(core, str) or core not in CORES:
        raise ValueError(f"core must be one of {list(CORES)}, got {core!r}")
    values = {"hidden_size": hidden_size, "num_layers": num_layers, "window": window, "num_heads": num_heads}
    for name, value in values.items():
        low, high = _INT_BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if isinstance(max_delta, bool) or not isinstance(max_delta, numbers.Real) or not 0 < max_delta <= _MAX_DELTA_BOUND:
        raise ValueError(f"max_delta must be a number in (0, {_MAX_DELTA_BOUND}], got {max_delta!r}")
    if core == "transformer" and hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
    num_features = len(feature_names) if isinstance(feature_names, (list, tuple)) else len(FEATURE_NAMES)
    count = count_parameters(core, hidden_size, num_layers, window, num_features)
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"this config describes a learner of {count:,} parameters (core {core!r}, hidden_size {hidden_size}, "
            f"num_layers {num_layers}); a meta-learner may have at most {MAX_PARAMETERS:,}"
        )
    for name, value in (("disabled_features", disabled_features), ("feature_names", feature_names)):
        if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)):
            raise ValueError(f"{name} must be a list of strings, got {value!r}")
    if feature_names is not None:
        names = list(feature_names)
        if not names or names != list(FEATURE_NAMES[: len(names)]):
            raise ValueError(
                f"The learner's feature_names {names} are not a prefix of this schema's {list(FEATURE_NAMES)}."
            )
    feature_mask(list(disabled_features or []))  # unknown names: ValueError listing the valid ones


def package_version() -> str:
    from . import __version__

    return __version__


def load_files(cls, files, **overrides):
    """A ``cls`` (``MetaLearner``) from resolved files (``hub.LearnerFiles``), strictly: unknown config keys, another
    feature schema, out-of-range values, weights that are damaged, not float32, not finite or not matching the
    config are each refused with an error naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_config(files)
    known = cls.config_keys()
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"Unknown keys {unknown} in {files.config}; a MetaLearner config takes {sorted(known)}")
    config.setdefault("schema_version", None)
    if config["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"{files.name_or_path} was trained for feature schema version {config['schema_version']}, "
            f"but metalr-hf {package_version()} reads schema version {SCHEMA_VERSION}. Use a learner for schema "
            f"{SCHEMA_VERSION}, or the metalr-hf release that matches the learner."
        )
    try:
        model = cls(**{**config, **overrides})
    except ValueError as e:
        raise ValueError(f"Invalid learner config {files.config}: {e}") from None
    try:
        weights = load_file(str(files.weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(
            f"The learner weights {files.weights} are damaged or not a safetensors file ({e}). "
            "Delete the file and download or save the learner again."
        ) from None
    odd = sorted(f"{k} ({t.dtype})" for k, t in weights.items() if t.dtype != torch.float32)
    if odd:  # load_state_dict would cast them silently: an int32 weight is not a learner's
        raise ValueError(
            f"The learner weights {files.weights} must be float32 (a learner is saved in float32); {odd} are "
            "not. Save the learner again with MetaLearner.save_pretrained."
        )
    bad = sorted(k for k, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all())
    if bad:  # safetensors checks the header only: damage inside the tensor data loads silently
        raise ValueError(
            f"The learner weights {files.weights} hold non-finite values (NaN or inf) in {bad}: the file is "
            "damaged. Delete it and download or save the learner again."
        )
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ValueError(f"The weights in {files.weights} do not match the config in {files.config}: {e}") from None
    model.eval()
    model.source = {"name_or_path": files.name_or_path, "revision": files.revision}
    from .cards import read_card_context

    model.card_context = read_card_context(Path(files.config).parent)
    model._hub_mixin_config = dict(model.config)
    return model
