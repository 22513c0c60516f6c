"""The meta-learner: a tiny recurrent network from features to a bounded log-scale LR correction.

For each run, at each optimizer step,

    x_t = mask ⊙ features_t                          (features.py, [F])
    e_t = tanh(W_in x_t + b_in)                      ([H])
    h_t = core(e_t, h_{t-1})                         (rnn | gru | lstm | transformer over the last W inputs)
    δ_t = δ_max · tanh(w_out · h_t + b_out)          (w_out = 0, b_out = 0 at init: δ ≡ 0, exactly the prior)

and the scheduler sets ``lr = base_lr · prior(t) · exp(δ_t)``. The recurrent state is one flat tensor per run so
that it saves into a scheduler ``state_dict`` and batches over a population unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .features import FEATURE_NAMES, SCHEMA_VERSION, feature_mask

if TYPE_CHECKING:
    from .one_run import OneRunStep

__all__ = ["CORES", "MetaLearner"]

CORES = ("rnn", "gru", "lstm", "transformer")


class MetaLearner(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="metalr-hf",
    tags=["metalr-hf", "meta-lr", "learning-rate-scheduler"],
    license="apache-2.0",
    repo_url="https://github.com/metalr-hf/metalr-hf",
):
    """Recurrent meta-learner mapping scale-free training features to a bounded log-LR correction ``δ``.

    Args:
        core (`str`, *optional*, defaults to `"gru"`):
            Recurrent core: one of `"rnn"`, `"gru"`, `"lstm"`, `"transformer"` (attention over the last
            `window` inputs).
        hidden_size (`int`, *optional*, defaults to 32):
            Width ``H`` of the core. The learner is a few thousand parameters at the default.
        num_layers (`int`, *optional*, defaults to 1):
            Stacked cells (rnn/gru/lstm) or encoder layers (transformer).
        window (`int`, *optional*, defaults to 16):
            Attention window of the transformer core, in steps.
        num_heads (`int`, *optional*, defaults to 2):
            Attention heads of the transformer core.
        max_delta (`float`, *optional*, defaults to 2.0):
            Bound ``δ_max``: the learner can scale the prior by ``exp(±δ_max)`` at most.
        disabled_features (`list[str]`, *optional*, defaults to `[]`):
            Features or feature groups (see `features.FEATURE_GROUPS`) masked to zero, for ablations.
        schema_version (`int`, *optional*, defaults to `features.SCHEMA_VERSION`):
            Version of the feature schema this learner reads; any other version is refused.
        feature_names (`list[str]`, *optional*):
            The features the learner reads: a prefix of `features.FEATURE_NAMES` (features are only appended, so
            a learner trained before one existed reads the ones it knew); defaults to all of them.

    Example:

    ```python
    >>> learner = MetaLearner(core="lstm", hidden_size=64)
    >>> state = learner.init_state(batch_size=4)
    >>> delta, state = learner(torch.zeros(4, len(FEATURE_NAMES)), state)
    >>> delta.abs().max().item()  # a fresh learner is exactly the prior schedule
    0.0
    ```
    """

    def __init__(
        self,
        core: str = "gru",
        hidden_size: int = 32,
        num_layers: int = 1,
        window: int = 16,
        num_heads: int = 2,
        max_delta: float = 2.0,
        disabled_features: list[str] | None = None,
        schema_version: int = SCHEMA_VERSION,
        feature_names: list[str] | None = None,
    ):
        super().__init__()
        _validate_config(
            core=core, hidden_size=hidden_size, num_layers=num_layers, window=window, num_heads=num_heads,
            max_delta=max_delta, disabled_features=disabled_features, schema_version=schema_version,
            feature_names=feature_names,
        )  # fmt: skip
        names = list(FEATURE_NAMES) if feature_names is None else list(feature_names)
        self.config = {
            "core": core,
            "hidden_size": int(hidden_size),
            "num_layers": int(num_layers),
            "window": int(window),
            "num_heads": int(num_heads),
            "max_delta": float(max_delta),
            "disabled_features": list(disabled_features or []),
            "schema_version": SCHEMA_VERSION,
            "feature_names": names,
        }
        self.core, self.hidden_size, self.num_layers = core, int(hidden_size), int(num_layers)
        self.window, self.max_delta = int(window), float(max_delta)
        num_features = self.num_features = len(names)
        self.register_buffer("mask", feature_mask(self.config["disabled_features"])[:num_features], persistent=False)
        self._unmasked = bool(self.mask.all())  # no feature disabled: the mask is skipped
        H = self.hidden_size
        self.input = nn.Linear(num_features, H)
        if core == "transformer":
            self.pos = nn.Parameter(torch.zeros(self.window, H))
            layer = nn.TransformerEncoderLayer(H, num_heads, 2 * H, dropout=0.0, batch_first=True)
            self.cells = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        else:
            cell = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}[core]
            self.cells = nn.ModuleList([cell(H, H) for _ in range(self.num_layers)])
        self.head = nn.Linear(H, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.source: dict = {"name_or_path": None, "revision": None}
        self.card_context: dict = {}  # card.json: training notes, results table, eval_results (see cards.learner_card)

    @classmethod
    def config_keys(cls) -> set[str]:
        """The fields of a learner's ``config.json``: its constructor's arguments."""
        return set(inspect.signature(cls.__init__).parameters) - {"self"}

    # -- recurrent state ----------------------------------------------------------------------------------
    @property
    def state_size(self) -> int:
        H = self.hidden_size
        if self.core == "transformer":
            return self.window * H + 1  # the window of embedded inputs, then the number of valid entries
        return self.num_layers * H * (2 if self.core == "lstm" else 1)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def init_state(self, batch_size: int = 1) -> torch.Tensor:
        return torch.zeros(batch_size, self.state_size, device=self.head.weight.device)

    def forward(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for ``B`` runs: ``features [B, F]``, ``state [B, S]`` → ``(δ [B], new state [B, S])``. It reads
        the first ``num_features`` columns (the features it was trained on)."""
        if features.shape[-1] != self.num_features:
            features = features[..., : self.num_features]
        if features.dtype != self.head.weight.dtype:
            features = features.to(self.head.weight.dtype)
        x = torch.tanh(self.input(features if self._unmasked else features * self.mask))
        B, H = x.shape[0], self.hidden_size
        if self.core == "transformer":
            W = self.window
            buf = state[:, :-1].reshape(B, W, H)
            count = state[:, -1:]
            buf = torch.cat([buf[:, 1:], x[:, None]], dim=1)
            count = (count + 1).clamp(max=W)
            pad = torch.arange(W, device=x.device)[None, :] < (W - count)  # oldest slots not yet filled
            out = self.cells(buf + self.pos, src_key_padding_mask=pad)
            h = out[:, -1]
            new_state = torch.cat([buf.reshape(B, W * H), count], dim=1)
        else:
            chunks, new_chunks = state.chunk(self.num_layers, dim=1), []
            h = x
            for cell, chunk in zip(self.cells, chunks):
                if self.core == "lstm":
                    h_prev, c_prev = chunk.chunk(2, dim=1)
                    h, c = cell(h, (h_prev, c_prev))
                    new_chunks.append(torch.cat([h, c], dim=1))
                else:
                    h = cell(h, chunk)
                    new_chunks.append(h)
            new_state = new_chunks[0] if len(new_chunks) == 1 else torch.cat(new_chunks, dim=1)
        delta = self.max_delta * torch.tanh(self.head(h).squeeze(-1))
        return delta, new_state

    def one_run_step(self) -> OneRunStep | None:
        """:meth:`forward` for one run on the CPU (what the scheduler calls each step), or ``None`` where there is
        none (a transformer or LSTM core, a learner on an accelerator or not in float32)."""
        weight = self.head.weight
        if self.core not in ("gru", "rnn") or weight.device.type != "cpu" or weight.dtype != torch.float32:
            return None
        from .one_run import OneRunStep

        return OneRunStep(self)

    # -- identity ------------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of the config and weights: checkpoints record it and refuse to mix learners."""
        h = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
        return h.hexdigest()[:16]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def generate_model_card(self, *args, **kwargs):
        """The card written by ``save_pretrained``, ``push_to_hub`` and ``metalr-hf push`` alike (see
        :func:`cards.learner_card`)."""
        from .cards import learner_card

        return learner_card(self, repo_id=kwargs.get("repo_id"))

    # -- persistence (safetensors only, strict) --------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_model

        save_directory = Path(save_directory)
        save_model(self, str(save_directory / "model.safetensors"), metadata={"format": "pt"})
        config = dict(self.config, metalr_hf_version=_version())
        (save_directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if self.card_context:
            from .cards import CARD_CONTEXT_FILE

            text = json.dumps(self.card_context, indent=2, ensure_ascii=False) + "\n"
            (save_directory / CARD_CONTEXT_FILE).write_text(text, encoding="utf-8")

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        **kwargs,
    ) -> MetaLearner:
        """Load a learner from a local folder, a Hub repo id (pinned by ``revision``) or, for ``None``, the
        default learner bundled in the package. Only ``config.json`` + ``model.safetensors`` (and the optional
        ``card.json``) are read; loading is strict and refuses another feature schema, unknown or out-of-range
        config values and damaged weights.

        The files are found first (the bundled learners by name, friendly errors for a missing folder, repo or
        revision); the ``PyTorchModelHubMixin`` machinery then loads them through :meth:`_from_pretrained`."""
        from .hub import resolve_learner_files

        files = resolve_learner_files(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        _read_config(files)  # a clear error naming the file before the mixin reads it
        return super().from_pretrained(files.config.parent, local_files_only=True, _files=files, _overrides=kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id, _files=None, _overrides=None, **config_from_mixin) -> MetaLearner:
        """The mixin's loading hook: strict loading of the resolved files (the config values the mixin read are not
        used: every field is validated here, from the file)."""
        from .hub import resolve_learner_files

        files = _files if _files is not None else resolve_learner_files(model_id)
        return cls._from_files(files, **(_overrides or {}))

    @classmethod
    def _from_files(cls, files, **overrides) -> MetaLearner:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        config = _read_config(files)
        known = cls.config_keys()
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"Unknown keys {unknown} in {files.config}; a MetaLearner config takes {sorted(known)}")
        config.setdefault("schema_version", None)
        if config["schema_version"] != SCHEMA_VERSION:
            raise ValueError(
                f"{files.name_or_path} was trained for feature schema version {config['schema_version']}, "
                f"but metalr-hf {_version()} reads schema version {SCHEMA_VERSION}. Use a learner for schema "
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
            raise ValueError(
                f"The weights in {files.weights} do not match the config in {files.config}: {e}"
            ) from None
        model.eval()
        model.source = {"name_or_path": files.name_or_path, "revision": files.revision}
        from .cards import read_card_context

        model.card_context = read_card_context(Path(files.config).parent)
        model._hub_mixin_config = dict(model.config)
        return model


def _read_config(files) -> dict:
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


def _validate_config(
    core, hidden_size, num_layers, window, num_heads, max_delta, disabled_features, schema_version, feature_names
) -> None:
    """Every field of a learner config, checked before anything is built: ``ValueError`` naming the field."""
    if schema_version != SCHEMA_VERSION:
        raise ValueError(
            f"This meta-learner was built for feature schema version {schema_version!r}, but metalr-hf "
            f"{_version()} reads schema version {SCHEMA_VERSION}. Use a learner trained for schema "
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


def _version() -> str:
    from . import __version__

    return __version__
