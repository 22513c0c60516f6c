"""Where learners come from: the bundled default, a local folder, or a Hub repo pinned by revision.

Only ``config.json`` and ``model.safetensors`` are ever read (never a pickle). Every failure is a
``MetaLearnerNotFoundError``/``ValueError`` that names the culprit and says what to do; a token never appears
in a message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .cards import CARD_CONTEXT_FILE

__all__ = [
    "DEFAULT_FINETUNE_LEARNER",
    "DEFAULT_LEARNER",
    "MetaLearnerNotFoundError",
    "LearnerFiles",
    "bundled_learner_dir",
    "resolve_learner_files",
]

DEFAULT_LEARNER = "metalr-default-v3"
# With `meta_learner` unset, runs that fine-tune pretrained weights get this learner (meta-trained on such runs)
DEFAULT_FINETUNE_LEARNER = "metalr-finetune-v1"
_FILES = ("config.json", "model.safetensors")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


class MetaLearnerNotFoundError(FileNotFoundError):
    """A meta-learner folder, Hub repo, revision or file could not be found."""


@dataclass(frozen=True)
class LearnerFiles:
    name_or_path: str
    config: Path
    weights: Path
    revision: str | None  # the commit sha for Hub learners, None for local folders


def bundled_learner_dir(name: str = DEFAULT_LEARNER) -> Path:
    return Path(__file__).parent / "pretrained" / name


def bundled_learners() -> list[str]:
    """The learners shipped inside the package (loadable by name; the default is :data:`DEFAULT_LEARNER`)."""
    root = Path(__file__).parent / "pretrained"
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def _revision_of(path: Path) -> str | None:
    """The commit sha of a file in the HF cache layout ``.../snapshots/<sha>/file``."""
    parts = Path(path).parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def _local(folder: Path, label: str) -> LearnerFiles:
    missing = [f for f in _FILES if not (folder / f).is_file()]
    if missing:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise MetaLearnerNotFoundError(
            f"The meta-learner folder {str(folder)!r} lacks {missing} (it holds {present}). A learner folder "
            "is written by `MetaLearner.save_pretrained(dir)` or `metalr-hf meta-train --output-dir dir`."
        )
    return LearnerFiles(label, folder / "config.json", folder / "model.safetensors", None)


def resolve_learner_files(
    name_or_path: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> LearnerFiles:
    """Find ``config.json`` and ``model.safetensors`` of a learner.

    Args:
        name_or_path: ``None`` (or ``"default"``) for the bundled learner; a local folder; a Hub repo id.
        revision: branch, tag or commit sha of a Hub repo (ignored for folders).
        cache_dir, token, local_files_only, force_download: as in ``huggingface_hub.hf_hub_download``.
            ``HF_HUB_OFFLINE=1`` reads the HF cache only.
    """
    if name_or_path is None or str(name_or_path) == "default":
        return _local(bundled_learner_dir(), DEFAULT_LEARNER)
    if str(name_or_path) in bundled_learners():  # an earlier shipped learner, e.g. to resume an old checkpoint
        if Path(name_or_path).expanduser().is_dir():
            import warnings

            warnings.warn(
                f"meta_learner {str(name_or_path)!r} names a learner bundled with metalr-hf and a local folder: the "
                f"bundled learner is loaded. Pass './{name_or_path}' (or an absolute path) for the folder.",
                UserWarning,
                stacklevel=3,
            )
        return _local(bundled_learner_dir(str(name_or_path)), str(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise MetaLearnerNotFoundError(f"meta_learner {str(name_or_path)!r} is a file; pass the folder holding it")
        return _local(path, str(path))
    name = str(name_or_path)
    if not _REPO_ID.match(name) or name.startswith((".", "/", "~")) or os.sep + os.sep in name:
        raise MetaLearnerNotFoundError(
            f"meta_learner {name!r} is neither an existing folder nor a Hub repo id ('org/name'). "
            "Pass a folder written by `save_pretrained`, a repo id, or leave it unset for the bundled default."
        )
    return _download(name, revision, cache_dir, token, local_files_only, force_download)


def _download(repo_id, revision, cache_dir, token, local_files_only, force_download) -> LearnerFiles:
    """The learner's files from the Hub (or the HF cache): one ``snapshot_download`` of just those files, so the
    revision is resolved once and every file comes from the same commit."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision {revision!r}" if revision else ""
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=[*_FILES, CARD_CONTEXT_FILE],  # the card context is optional: kept when present
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
                force_download=force_download,
            )
        )
    except GatedRepoError:
        raise MetaLearnerNotFoundError(
            f"The Hub repo {repo_id!r} is gated: accept its terms on the Hub and log in (`hf auth login`)."
        ) from None
    except RepositoryNotFoundError:
        raise MetaLearnerNotFoundError(
            f"meta_learner {repo_id!r} is not a local folder and no Hub repo of that name is visible. Check "
            "the name; for a private repo, log in (`hf auth login`) or pass `token`."
        ) from None
    except RevisionNotFoundError:
        raise MetaLearnerNotFoundError(
            f"The Hub repo {repo_id!r} has no revision {revision!r}; pass an existing branch, tag or commit sha."
        ) from None
    except LocalEntryNotFoundError:
        raise MetaLearnerNotFoundError(_not_cached(repo_id, at)) from None
    except HFValidationError as e:
        raise MetaLearnerNotFoundError(f"meta_learner {repo_id!r} is not a valid Hub repo id: {e}") from None
    paths = {filename: folder / filename for filename in _FILES}
    missing = [f for f, path in paths.items() if not path.is_file()]
    if missing:
        from huggingface_hub import constants

        if local_files_only or constants.HF_HUB_OFFLINE:  # a snapshot cached in part
            raise MetaLearnerNotFoundError(_not_cached(repo_id, at))
        raise MetaLearnerNotFoundError(
            f"The Hub repo {repo_id!r}{at} has no {missing[0]}; a metalr-hf learner repo holds {list(_FILES)}."
        )
    return LearnerFiles(repo_id, paths["config.json"], paths["model.safetensors"], _revision_of(paths["config.json"]))


def _not_cached(repo_id: str, at: str) -> str:
    return (
        f"meta_learner {repo_id!r}{at} is not in the local Hugging Face cache and the Hub cannot be reached "
        f"(offline, HF_HUB_OFFLINE=1 or local_files_only=True). Run `metalr-hf pull {repo_id}` while online, or pass "
        "a local folder."
    )


# -- publishing ------------------------------------------------------------------------------------------------
LEARNER_PATTERNS = ["config.json", "model.safetensors", CARD_CONTEXT_FILE, "README.md"]
RUNS_PATTERNS = ["runs.parquet", "collection.json", "README.md"]


def _api(api, token):
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _ensure_branch(api, repo_id: str, revision: str | None, create_pr: bool, repo_type: str, token) -> None:
    """A push to a branch that does not exist yet creates it from main, as ``hf upload --revision`` does (a pull
    request targets ``revision`` as it is)."""
    if revision and revision != "main" and not create_pr:
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True, token=token)


def push_learner(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload metalr-hf meta-learner",
    api=None,
):
    """Validate a learner folder, render its card and push config, weights and card, as ``hf upload`` does: to
    ``revision`` (a branch, created from main if missing), or as a pull request (``create_pr``). Returns the
    ``CommitInfo`` (``.oid``: the commit sha; ``.pr_url`` for a pull request)."""
    import shutil
    import tempfile

    from .learner import MetaLearner

    folder = Path(folder)
    learner = MetaLearner.from_pretrained(folder)  # refuses anything that would not load back
    api = _api(api, token)
    api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    _ensure_branch(api, repo_id, revision, create_pr, "model", token)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("config.json", "model.safetensors", CARD_CONTEXT_FILE):
            if (folder / name).is_file():
                shutil.copy2(folder / name, Path(tmp) / name)
        learner.generate_model_card(repo_id=repo_id).save(Path(tmp) / "README.md")
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            allow_patterns=LEARNER_PATTERNS,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
            token=token,
        )
    return info


def push_runs(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload metalr-hf run collection",
    api=None,
):
    """Push a run collection written by ``metalr-hf collect`` as a Hub dataset (``revision``, ``create_pr`` as in
    :func:`push_learner`); returns the ``CommitInfo``."""
    folder = Path(folder)
    if not (folder / "runs.parquet").is_file():
        raise MetaLearnerNotFoundError(f"{str(folder)!r} holds no runs.parquet: write one with `metalr-hf collect`")
    api = _api(api, token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
    _ensure_branch(api, repo_id, revision, create_pr, "dataset", token)
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(folder),
        allow_patterns=RUNS_PATTERNS,
        commit_message=commit_message,
        revision=revision,
        create_pr=create_pr,
        token=token,
    )
    return info


def pull_learner(repo_id: str, *, revision: str | None = None, cache_dir=None, token=None) -> LearnerFiles:
    """Download a learner into the HF cache (for offline use later) and check that it loads."""
    from .learner import MetaLearner

    files = resolve_learner_files(repo_id, revision=revision, cache_dir=cache_dir, token=token)
    MetaLearner._from_files(files)
    return files
