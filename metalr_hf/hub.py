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

__all__ = [
    "DEFAULT_LEARNER",
    "MetaLearnerNotFoundError",
    "LearnerFiles",
    "bundled_learner_dir",
    "resolve_learner_files",
]

DEFAULT_LEARNER = "metalr-default-v1"
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
    if name_or_path is None or str(name_or_path) in ("default", DEFAULT_LEARNER):
        return _local(bundled_learner_dir(), DEFAULT_LEARNER)
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
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision {revision!r}" if revision else ""
    paths = {}
    for filename in _FILES:
        try:
            paths[filename] = Path(
                hf_hub_download(
                    repo_id,
                    filename,
                    revision=revision,
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
        except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: first
            raise MetaLearnerNotFoundError(
                f"meta_learner {repo_id!r}{at} is not in the local Hugging Face cache and the Hub cannot be "
                "reached (offline, HF_HUB_OFFLINE=1 or local_files_only=True). Run `metalr-hf pull "
                f"{repo_id}` while online, or pass a local folder."
            ) from None
        except EntryNotFoundError:
            raise MetaLearnerNotFoundError(
                f"The Hub repo {repo_id!r}{at} has no {filename}; a metalr-hf learner repo holds {list(_FILES)}."
            ) from None
        except HFValidationError as e:
            raise MetaLearnerNotFoundError(f"meta_learner {repo_id!r} is not a valid Hub repo id: {e}") from None
    return LearnerFiles(repo_id, paths["config.json"], paths["model.safetensors"], _revision_of(paths["config.json"]))
