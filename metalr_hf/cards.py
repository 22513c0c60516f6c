"""The learner's model card: its context file (``card.json``: training notes, result tables, ``eval_results``) and
the card rendered from it and the learner (``huggingface_hub.ModelCard``), the same whichever way it is saved."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CARD_CONTEXT_FILE", "learner_card", "read_card_context"]

CARD_CONTEXT_FILE = "card.json"  # optional, next to a learner: training notes and the tables for its card


_RESERVED_CARD_KEYS = {"name", "repo_id", "revision", "num_parameters", "num_features", "card_data"}


def read_card_context(folder) -> dict:
    """``card.json`` beside a learner (its training notes, results table and ``eval_results``), or ``{}``."""
    from ._files import read_json
    from .learner_files import MAX_CONFIG_BYTES

    path = Path(folder) / CARD_CONTEXT_FILE
    if not path.is_file():
        return {}
    context = read_json(path, "card context", max_bytes=MAX_CONFIG_BYTES * 16)
    if not isinstance(context, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object of card texts, got {type(context).__name__}")
    from .learner import MetaLearner

    reserved = sorted(set(context) & (MetaLearner.config_keys() | _RESERVED_CARD_KEYS))
    if reserved:
        raise ValueError(
            f"{str(path)!r} holds {reserved}, which the card takes from the learner itself; remove them (it may "
            "hold texts such as 'training', 'declared_table' and 'results_table', and 'eval_results')"
        )
    return context


_DEFAULT_LIMITATIONS = (
    "Meta-trained on small simulated MLP tasks; its behaviour on large models is measured only where the tables "
    "above say so. Use cosine when in doubt, and report where it loses."
)
_LEARNER_CARD = """
# {name}: a meta-learned learning-rate scheduler for 🤗 Trainer

A tiny recurrent meta-learner ({core} core, hidden size {hidden_size}, {num_parameters} parameters) for
[metalr-hf](https://github.com/metalr-hf/metalr-hf). At every optimizer step it reads {num_features} scale-free
features of the running job and outputs a bounded correction δ ∈ [-{max_delta}, {max_delta}] to a prior
schedule: `lr = base_lr · prior(t) · exp(δ_t)`. A learner that outputs 0 is exactly the prior (by default
warmup-stable-decay on every run; `prior="auto"`: cosine from scratch, warmup-stable-decay when fine-tuning).

## How to use

```bash
pip install metalr-hf
metalr-hf run train.py --lr_scheduler_type meta --lr_scheduler_kwargs '{kwargs}'
```

```python
from metalr_hf import MetaLRScheduler

scheduler = MetaLRScheduler(optimizer, num_training_steps=1000, meta_learner="{repo_id}")
loss.backward()
scheduler.observe(loss.detach())
optimizer.step()
scheduler.step()
```

## Features (schema version {schema_version})

{features}.{disabled}

## Training

{training}
{declared_table}
## Held-out results

{results_table}

## Ablations

{ablation_table}

## Limitations

{limitations}

## Citation

```bibtex
@software{{metalr_hf,
  title = {{metalr-hf: a meta-learned learning-rate scheduler for Hugging Face Trainer}},
  year = {{2026}},
  url = {{https://github.com/metalr-hf/metalr-hf}}
}}
```
"""


def learner_card(learner, repo_id: str | None = None, revision: str | None = None, folder: Path | None = None):
    """The model card of a learner (a ``huggingface_hub.ModelCard``): the same whether it is written by
    ``save_pretrained``, ``push_to_hub`` or ``metalr-hf push``. Tables and training notes come from the learner's
    card context (``card.json``, read at load; or from ``folder``); ``eval_results`` in it become the card's
    model-index."""
    import json

    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    context = dict(getattr(learner, "card_context", {}) or {})
    if folder is not None:
        context.update(read_card_context(folder))
    eval_results = [EvalResult(**r) for r in context.pop("eval_results", [])] or None
    name = repo_id or learner.source.get("name_or_path") or "metalr-hf learner"
    short = str(name).rstrip("/").split("/")[-1]
    card_data = ModelCardData(
        library_name="metalr-hf",
        license="apache-2.0",
        tags=["metalr-hf", "meta-lr", "learning-rate-scheduler", "pytorch_model_hub_mixin"],
        model_name=short if eval_results else None,
        eval_results=eval_results,
    )
    bundled = learner.source.get("name_or_path") in _bundled()  # loads offline by its name
    repo = repo_id or (learner.source["name_or_path"] if bundled else "<org>/<learner>")
    config = learner.config
    kwargs = {"meta_learner": repo, **({"revision": revision} if revision else {})}
    body = _LEARNER_CARD.format(
        name=short,
        repo_id=repo,
        kwargs=json.dumps(kwargs),
        num_parameters=learner.num_parameters(),
        num_features=len(config["feature_names"]),
        core=config["core"],
        hidden_size=config["hidden_size"],
        max_delta=config["max_delta"],
        schema_version=config["schema_version"],
        features=", ".join(f"`{f}`" for f in config["feature_names"]),
        disabled=f"\nDisabled in this learner: {', '.join(config['disabled_features'])}."
        if config["disabled_features"]
        else "",
        training=context.get("training") or "Not recorded.",
        declared_table=f"\n## Against the best tuned stock schedule\n\n{context['declared_table']}\n"
        if context.get("declared_table")
        else "",
        results_table=context.get("results_table") or "No held-out evaluation was recorded for this learner.",
        ablation_table=context.get("ablation_table") or "No ablation table was recorded for this learner.",
        limitations=context.get("limitations") or _DEFAULT_LIMITATIONS,
    )
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


def _bundled() -> list[str]:
    from .hub import bundled_learners

    return bundled_learners()
