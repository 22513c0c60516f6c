"""The meta-learner: a tiny recurrent network from features to a bounded log-scale LR correction.

For each run, at each optimizer step,

    x_t = mask ⊙ features_t                          (features.py, [F])
    e_t = tanh(W_in x_t + b_in)                      ([H])
    h_t = core(e_t, h_{t-1})                         (rnn | gru | lstm | transformer over the last W inputs)
    δ_t = δ_max · tanh(w_out · h_t + b_out)          (w_out = 0, b_out = 0 at init: δ ≡ 0, exactly the prior)

and the scheduler sets ``lr = base_lr · prior(t) · exp(δ_t)``. The recurrent state is one flat tensor per run so
that it saves into a scheduler ``state_dict`` and batches over a population unchanged.

:meth:`MetaLearner.forward` computes this for ``B`` runs (meta-training); :class:`OneRunStep`, below it, is the same
arithmetic for one run (the scheduler's case) in preallocated NumPy buffers, a fifth of the time and no allocation;
``tests/test_learner.py::test_one_run_step_is_the_forward_pass`` keeps the two equal. What a learner folder must hold
to load is in :mod:`metalr_hf.learner_files`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .features import FEATURE_NAMES, SCHEMA_VERSION, feature_mask
from .learner_files import CORES, load_files, package_version, read_config, validate_config

__all__ = ["CORES", "MetaLearner", "OneRunStep", "load_learner"]


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
        validate_config(
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
        config = dict(self.config, metalr_hf_version=package_version())
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
        read_config(files)  # a clear error naming the file before the mixin reads it
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
        return load_files(cls, files, **overrides)


# -- one run: forward's arithmetic for B = 1 ---------------------------------------------------------------
class OneRunStep:
    """One run's step of a GRU or RNN learner in NumPy, preallocated: the arithmetic of :meth:`MetaLearner.forward`
    (that of ``nn.GRUCell`` / ``nn.RNNCell``; equal to float32 rounding), about a fifth of its time, no allocation.
    ``step(features, state)`` takes the features as floats and the ``[1, S]`` state, and returns ``(δ, new state)``;
    the new state is one of two buffers used in turn, so the state handed in stays intact (``state_finite`` says
    whether all of it is finite).

    Each layer is one matrix-vector product: the cell's weights are packed once into one matrix over ``[x, h, 1]``
    (the gates r and z from both inputs and both biases, the candidate's two parts apart), the input layer's over
    ``[features, 1]`` with the feature mask folded in. The packing is redone when the learner's weights change in
    place (their version counters move); weights moved or replaced make the step stale (:meth:`fresh`)."""

    def __init__(self, learner: MetaLearner):
        self.np = np
        self.learner = learner
        self._params = list(learner.parameters())
        self._ptr = self._weights_ptr()
        H, F = learner.hidden_size, learner.num_features
        self.gru = learner.core == "gru"
        self.fx = np.zeros(F + 1, np.float32)  # the features, then a 1 (the input layer's bias)
        self.fx[F] = 1.0
        self.xh = [np.zeros(2 * H + 1, np.float32) for _ in learner.cells]  # each layer's [x, h, 1]
        for xh in self.xh:
            xh[2 * H] = 1.0
        self.gates = np.empty((4 if self.gru else 1) * H, np.float32)
        self.n = np.empty(H, np.float32)
        self.out = [torch.empty(1, learner.state_size), torch.empty(1, learner.state_size)]
        self.out_np = [t.numpy()[0] for t in self.out]
        self.ones = np.ones(learner.state_size, np.float32)  # the sum of the state as a dot product (3× faster)
        self.H, self.F, self.max_delta, self.turn = H, F, learner.max_delta, 0
        self._pack()

    def _versions(self) -> tuple:
        return tuple([p._version for p in self._params])

    def _pack(self) -> None:
        """The packed matrices from the learner's current weights (see the class docstring)."""
        np, learner, H = self.np, self.learner, self.H
        view = lambda t: t.detach().numpy()  # noqa: E731
        w_in = view(learner.input.weight)
        if not learner._unmasked:
            w_in = w_in * view(learner.mask).astype(np.float32)[None, :]  # W·(f ⊙ mask) = (W ⊙ mask)·f
        self.w_in = np.concatenate([w_in, view(learner.input.bias)[:, None]], axis=1)
        self.cells = []
        for cell in learner.cells:
            w_ih, w_hh, b_ih, b_hh = (view(t) for t in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh))
            if self.gru:  # rows: r and z (halved: σ(a) = (1 + tanh(a/2)) / 2), the candidate's input and hidden parts
                w = np.zeros((4 * H, 2 * H + 1), np.float32)
                w[: 2 * H, :H], w[: 2 * H, H : 2 * H] = 0.5 * w_ih[: 2 * H], 0.5 * w_hh[: 2 * H]
                w[: 2 * H, 2 * H] = 0.5 * (b_ih[: 2 * H] + b_hh[: 2 * H])
                w[2 * H : 3 * H, :H], w[2 * H : 3 * H, 2 * H] = w_ih[2 * H :], b_ih[2 * H :]
                w[3 * H :, H : 2 * H], w[3 * H :, 2 * H] = w_hh[2 * H :], b_hh[2 * H :]
            else:
                w = np.concatenate([w_ih, w_hh, (b_ih + b_hh)[:, None]], axis=1)
            self.cells.append(w)
        self.head_w, self.head_b = view(learner.head.weight)[0], view(learner.head.bias)
        self._packed = self._versions()

    def _weights_ptr(self) -> tuple:
        return tuple(map(torch.Tensor.data_ptr, self._params))

    def fresh(self) -> bool:
        """Whether the learner still holds the weights this step reads (not moved, cast or replaced)."""
        return self._weights_ptr() == self._ptr

    def __call__(self, features: list[float], state: torch.Tensor) -> tuple[float, torch.Tensor]:
        np, H, F = self.np, self.H, self.F
        if self._versions() != self._packed:  # weights changed in place
            self._pack()
        fx, n, gates = self.fx, self.n, self.gates
        fx[:F] = features if len(features) == F else features[:F]
        if self.out[self.turn] is state:  # never write into the state handed in (the usual case: our last output)
            h_all = self.out_np[self.turn]
            self.turn ^= 1
        else:
            h_all = state.detach().numpy()[0]
        new = self.out_np[self.turn]
        xh = self.xh[0]
        np.dot(self.w_in, fx, out=xh[:H])
        np.tanh(xh[:H], out=xh[:H])
        for layer, w in enumerate(self.cells):
            h, out = h_all[layer * H : (layer + 1) * H], new[layer * H : (layer + 1) * H]
            xh[H : 2 * H] = h
            np.dot(w, xh, out=gates)
            if self.gru:  # r, z = σ(·); n = tanh(gi_n + r·gh_n); h' = n + z·(h - n)
                rz = gates[: 2 * H]
                np.tanh(rz, out=rz)
                rz += 1.0
                rz *= 0.5
                gh_n = gates[3 * H :]
                gh_n *= rz[:H]
                np.add(gates[2 * H : 3 * H], gh_n, out=n)
                np.tanh(n, out=n)
                np.subtract(h, n, out=out)
                out *= rz[H:]
                out += n
            else:  # h' = tanh(W_ih x + W_hh h + b)
                np.tanh(gates, out=out)
            if layer + 1 < len(self.cells):
                xh = self.xh[layer + 1]
                xh[:H] = out
            else:
                x = out
        delta = self.max_delta * math.tanh(float(self.head_w.dot(x)) + float(self.head_b[0]))
        self.state_finite = math.isfinite(float(new.dot(self.ones)))  # a NaN or inf anywhere shows in the sum
        return delta, self.out[self.turn]


def load_learner(meta_learner=None, **hub_kwargs) -> MetaLearner:
    """A ``MetaLearner`` from an instance, a folder, a Hub repo id, or ``None`` (the bundled default)."""
    if isinstance(meta_learner, MetaLearner):
        return meta_learner
    if (
        meta_learner is not None
        and not isinstance(meta_learner, (str, bytes))
        and not hasattr(meta_learner, "__fspath__")
    ):
        raise TypeError(
            f"meta_learner must be a MetaLearner, a folder, a Hub repo id or None, got {type(meta_learner).__name__}"
        )
    return MetaLearner.from_pretrained(meta_learner, **{k: v for k, v in hub_kwargs.items() if v is not None})
