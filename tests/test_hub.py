"""Hub round trip with only the transport faked: push → HF cache layout → load by repo id + revision offline."""

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import perturbed_learner
from huggingface_hub import constants

from metalr_hf import MetaLearner, MetaLRScheduler
from metalr_hf.cli import main
from metalr_hf.features import FEATURE_NAMES
from metalr_hf.hub import MetaLearnerNotFoundError, push_learner


class FakeHubApi:
    """Stands in for HfApi at the network boundary: a commit writes the uploaded files into the real HF cache
    layout (``models--org--name/snapshots/<sha>/`` and ``refs/<branch>``), as a download would have."""

    instances = []

    def __init__(self, token=None, cache=None, fail_with=None):
        self.token, self.cache, self.fail_with = token, Path(cache or constants.HF_HUB_CACHE), fail_with
        self.commits, self.branches = [], {"main"}
        FakeHubApi.instances.append(self)

    def create_repo(self, repo_id, repo_type=None, private=None, exist_ok=False, token=None):
        if self.fail_with:
            raise self.fail_with

    def create_branch(self, repo_id, branch, repo_type=None, exist_ok=False, token=None):
        self.branches.add(branch)

    def upload_folder(self, repo_id, folder_path, allow_patterns=None, repo_type=None, revision=None, create_pr=False,
                      commit_message=None, **kw):  # fmt: skip
        if revision and revision not in self.branches and not create_pr:
            raise ValueError(f"Invalid rev id: {revision}")  # what the Hub answers for a missing branch
        prefix = {"dataset": "datasets"}.get(repo_type, "models")
        repo = self.cache / f"{prefix}--{repo_id.replace('/', '--')}"
        files = sorted(p for p in Path(folder_path).iterdir() if p.name in (allow_patterns or [p.name]))
        h = hashlib.sha1(str(len(self.commits)).encode())
        for p in files:
            h.update(p.read_bytes())
        sha = h.hexdigest()
        snap = repo / "snapshots" / sha
        snap.mkdir(parents=True, exist_ok=True)  # the same files again: the same snapshot
        for p in files:
            shutil.copy2(p, snap / p.name)
        ref = repo / "refs" / ("pr/1" if create_pr else revision or "main")
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(sha)
        self.commits.append((repo_id, sha, [p.name for p in files]))
        self.messages = [*getattr(self, "messages", []), commit_message]
        pr_url = f"https://huggingface.co/{repo_id}/discussions/1" if create_pr else None
        return SimpleNamespace(oid=sha, pr_url=pr_url)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import transformers.utils.hub  # noqa: F401  (imported before HfApi is faked: it annotates with the real class)

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.HfApi", lambda token=None: FakeHubApi(token=token, cache=cache))
    assert constants.HF_HUB_OFFLINE  # every load below is from the cache only
    return cache


def test_push_pull_round_trip_bit_exact(tmp_path, hub_cache, capsys):
    learner = perturbed_learner(seed=31, core="lstm", hidden_size=16)
    learner.save_pretrained(tmp_path / "learner")
    assert main(["push", str(tmp_path / "learner"), "--repo-id", "org/meta-v1"]) == 0
    out = capsys.readouterr().out
    sha1 = FakeHubApi.instances[-1].commits[-1][1]
    assert sha1 in out and '"revision"' in out
    # a second version on main
    perturbed_learner(seed=32, core="lstm", hidden_size=16).save_pretrained(tmp_path / "v2")
    sha2 = push_learner(tmp_path / "v2", "org/meta-v1", api=FakeHubApi(cache=hub_cache)).oid

    pinned = MetaLearner.from_pretrained("org/meta-v1", revision=sha1)
    latest = MetaLearner.from_pretrained("org/meta-v1")
    assert pinned.source == {"name_or_path": "org/meta-v1", "revision": sha1}
    assert latest.source["revision"] == sha2
    for k, v in learner.state_dict().items():
        assert torch.equal(v, pinned.state_dict()[k])
    x, s = torch.randn(3, len(FEATURE_NAMES)), learner.init_state(3)
    assert torch.equal(learner(x, s)[0], pinned(x, s)[0])
    assert not torch.equal(latest(x, s)[0], pinned(x, s)[0])

    # through the scheduler, as lr_scheduler_kwargs would pass it
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    sched = MetaLRScheduler(opt, num_training_steps=5, meta_learner="org/meta-v1", revision=sha1)
    assert sched.learner.fingerprint() == learner.fingerprint()
    state = sched.state_dict()
    assert state["learner_source"] == {"name_or_path": "org/meta-v1", "revision": sha1}

    # the pushed card holds the usage line with the repo id
    card = (hub_cache / "models--org--meta-v1" / "snapshots" / sha1 / "README.md").read_text()
    assert '"meta_learner": "org/meta-v1"' in card and "library_name: metalr-hf" in card
    assert main(["show", "org/meta-v1", "--revision", sha1]) == 0
    assert sha1 in capsys.readouterr().out


def test_unknown_revision_and_repo_offline(hub_cache):
    perturbed_learner().save_pretrained(hub_cache.parent / "l")
    push_learner(hub_cache.parent / "l", "org/x", api=FakeHubApi(cache=hub_cache))
    with pytest.raises(MetaLearnerNotFoundError, match="revision 'nope'.*metalr-hf pull"):
        MetaLearner.from_pretrained("org/x", revision="nope")
    with pytest.raises(MetaLearnerNotFoundError, match="'org/missing'"):
        MetaLearner.from_pretrained("org/missing")


def test_a_snapshot_cached_in_part_is_named_not_half_loaded(hub_cache):
    """One ``snapshot_download`` resolves the revision once; offline, a snapshot whose weights are not cached is
    reported as not in the cache (with the command that fetches it), not loaded from a config alone."""
    perturbed_learner().save_pretrained(hub_cache.parent / "l")
    sha = push_learner(hub_cache.parent / "l", "org/part", api=FakeHubApi(cache=hub_cache)).oid
    assert MetaLearner.from_pretrained("org/part").source["revision"] == sha
    (hub_cache / "models--org--part" / "snapshots" / sha / "model.safetensors").unlink()
    with pytest.raises(MetaLearnerNotFoundError, match="'org/part' is not in the local Hugging Face cache.*pull"):
        MetaLearner.from_pretrained("org/part")


def test_corrupted_and_wrong_schema_from_cache(hub_cache):
    perturbed_learner().save_pretrained(hub_cache.parent / "l")
    sha = push_learner(hub_cache.parent / "l", "org/bad", api=FakeHubApi(cache=hub_cache)).oid
    snap = hub_cache / "models--org--bad" / "snapshots" / sha
    (snap / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="damaged"):
        MetaLearner.from_pretrained("org/bad")
    (snap / "config.json").write_text(
        (snap / "config.json").read_text().replace('"schema_version": 1', '"schema_version": 99')
    )
    with pytest.raises(ValueError, match="schema version 99"):
        MetaLearner.from_pretrained("org/bad")


def test_push_refuses_a_broken_folder(tmp_path, hub_cache, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["push", str(tmp_path / "empty"), "--repo-id", "org/x"]) == 2
    assert "lacks" in capsys.readouterr().err
    assert not list(hub_cache.glob("models--*"))  # nothing was half-pushed


def test_token_never_in_errors_or_logs(tmp_path, monkeypatch, caplog, capsys):
    from huggingface_hub.errors import HfHubHTTPError

    token = "hf_SECRETtoken123"
    err = HfHubHTTPError.__new__(HfHubHTTPError)  # built without an HTTP response: none is ever made here
    Exception.__init__(err, "401 Client Error: Unauthorized for url: https://huggingface.co/api/repos/create")
    monkeypatch.setattr("huggingface_hub.HfApi", lambda token=None: FakeHubApi(token=token, fail_with=err))
    perturbed_learner().save_pretrained(tmp_path / "l")
    with caplog.at_level(logging.DEBUG):
        assert main(["push", str(tmp_path / "l"), "--repo-id", "org/x", "--token", token]) == 2
    captured = capsys.readouterr()
    assert "401" in captured.err
    assert token not in captured.err + captured.out + caplog.text


def test_push_runs_as_dataset(tmp_path, hub_cache):
    from metalr_hf.bench.runner import run_one
    from metalr_hf.metatrain.collect import collect

    collect("smoke", tmp_path / "runs", progress=False, trainer_runner=run_one)
    assert main(["push-runs", str(tmp_path / "runs"), "--repo-id", "org/runs"]) == 0
    snap = next((hub_cache / "datasets--org--runs" / "snapshots").iterdir())
    assert sorted(p.name for p in snap.iterdir()) == ["README.md", "collection.json", "runs.parquet"]
    assert "metalr-hf" in (snap / "README.md").read_text()
    # the card's dataset_info and configs (as Dataset.push_to_hub writes them): load_dataset reads the repo as is
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(snap / "README.md").data
    assert card.configs[0]["data_files"][0]["path"] == "runs.parquet"
    n = card.dataset_info["splits"][0]["num_examples"]
    loaded = load_dataset(str(snap), split="train")
    assert len(loaded) == n > 0 and {f["name"] for f in card.dataset_info["features"]} == set(loaded.column_names)


@pytest.mark.skipif(
    not (os.environ.get("HF_TOKEN") and os.environ.get("METALR_HF_TEST_REPO")),
    reason="opt-in: set HF_TOKEN and METALR_HF_TEST_REPO (and HF_HUB_OFFLINE=0) to test against the real Hub",
)
def test_real_hub_round_trip(tmp_path):
    repo = os.environ["METALR_HF_TEST_REPO"]
    learner = perturbed_learner(seed=40)
    learner.save_pretrained(tmp_path)
    sha = push_learner(tmp_path, repo, token=os.environ["HF_TOKEN"], private=True).oid
    loaded = MetaLearner.from_pretrained(repo, revision=sha, token=os.environ["HF_TOKEN"])
    assert loaded.fingerprint() == learner.fingerprint()


def test_pushed_card_carries_the_meta_training_tables(tmp_path, hub_cache):
    """A learner folder written by meta-training (card.json beside it) is pushed with its tables in the card."""
    from metalr_hf.cards import CARD_CONTEXT_FILE

    folder = tmp_path / "learner"
    perturbed_learner().save_pretrained(folder)
    results = "| family | meta | cosine |\n|---|---|---|\n| wine | 0.044 | 0.220 |"
    ablation = "| variant | meta ≤ cosine |\n|---|---|\n| no loss features | 40% |"
    declared = "| suite | (a) right LR |\n|---|---|\n| quick | 1.03 |"
    context = {"training": "ES, 3 iterations", "results_table": results, "ablation_table": ablation}
    (folder / CARD_CONTEXT_FILE).write_text(json.dumps({**context, "declared_table": declared}))
    sha = push_learner(folder, "org/carded", api=FakeHubApi(cache=hub_cache)).oid
    card = (hub_cache / "models--org--carded" / "snapshots" / sha / "README.md").read_text()
    assert results in card and ablation in card and "ES, 3 iterations" in card
    assert "## Limitations" in card and "@software{metalr_hf" in card
    assert f"## Against the best tuned stock schedule\n\n{declared}\n" in card
    assert card.index(declared) < card.index("## Held-out results")
    (folder / CARD_CONTEXT_FILE).write_text(json.dumps(context))  # a card without it has no such section
    sha = push_learner(folder, "org/carded", api=FakeHubApi(cache=hub_cache)).oid
    card = (hub_cache / "models--org--carded" / "snapshots" / sha / "README.md").read_text()
    assert results in card and "## Against the best tuned stock schedule" not in card


@pytest.mark.parametrize("name", ["metalr-default-v3", "metalr-finetune-v1"])
def test_the_default_pairs_cards_carry_the_declared_table(name):
    """The learners a user gets by default say how they stand against the best tuned stock schedule, targets and
    all, in the card rendered from their own files."""
    from metalr_hf.hub import bundled_learner_dir

    card = (bundled_learner_dir(name) / "README.md").read_text()
    assert card == str(MetaLearner.from_pretrained(name).generate_model_card())
    section = card.split("## Against the best tuned stock schedule")[1].split("\n## ")[0]
    assert "| target | ≤ 1.02 on every task | ≤ +5 % / ≤ +50 % | ≥ 80 % | ≥ 60 % on every task |" in section


@pytest.mark.parametrize("name", ["metalr-default-v1", "metalr-default-v2", "metalr-default-v3", "metalr-scratch-v1"])
def test_bundled_learner_card_is_rendered_from_its_own_files(name):
    """A shipped card is what its learner renders from its config and card.json (lab/scripts/build_pretrained.py):
    no hand-edited numbers, and its held-out table and limitations are there."""
    from metalr_hf.hub import bundled_learner_dir

    folder = bundled_learner_dir(name)
    learner = MetaLearner.from_pretrained(name)
    assert (folder / "README.md").read_text() == str(learner.generate_model_card())
    card = (folder / "README.md").read_text()
    assert "## Held-out results" in card and "No held-out evaluation was recorded" not in card
    assert "## Limitations" in card and "@software{metalr_hf" in card


def test_one_card_whichever_way_the_learner_is_saved(tmp_path, hub_cache):
    """save_pretrained of a loaded learner, push_to_hub through the mixin and `metalr-hf push` write the same card:
    the tables of card.json, and its eval_results as the card's model-index."""
    from huggingface_hub import ModelCard

    from metalr_hf.cards import CARD_CONTEXT_FILE

    folder = tmp_path / "learner"
    perturbed_learner(seed=3).save_pretrained(folder)
    context = {
        "training": "ES, 3 iterations",
        "results_table": "| family | meta | cosine |\n|---|---|---|\n| wine | 0.044 | 0.220 |",
        "eval_results": [
            {"task_type": "learning-rate-scheduling", "dataset_type": "zoo", "dataset_name": "held-out families",
             "metric_type": "win_rate", "metric_name": "meta <= cosine", "metric_value": 0.87}
        ],
    }  # fmt: skip
    (folder / CARD_CONTEXT_FILE).write_text(json.dumps(context))
    loaded = MetaLearner.from_pretrained(folder)
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / CARD_CONTEXT_FILE).read_text()) == context
    saved = ModelCard.load(tmp_path / "again" / "README.md")
    sha = push_learner(folder, "org/one-card", api=FakeHubApi(cache=hub_cache)).oid
    pushed = ModelCard.load(hub_cache / "models--org--one-card" / "snapshots" / sha / "README.md")
    for card in (saved, pushed):
        assert context["results_table"] in card.text and "ES, 3 iterations" in card.text
        (result,) = card.data.eval_results
        assert result.metric_value == 0.87 and result.dataset_name == "held-out families"

    def sections(card):
        return [line for line in card.text.splitlines() if line.startswith("## ")]

    assert sections(saved) == sections(pushed) and "## Held-out results" in sections(saved)


def test_push_to_a_new_branch_as_a_pr_and_with_a_message(tmp_path, hub_cache, capsys):
    """As ``hf upload``: ``--revision`` creates a missing branch from main, ``--create-pr`` opens a pull request,
    ``--commit-message`` is the commit's."""
    MetaLearner().save_pretrained(tmp_path / "l")
    args = ["push", str(tmp_path / "l"), "--repo-id", "org/b", "--revision", "v2", "--commit-message", "second try"]
    assert main(args) == 0
    api = FakeHubApi.instances[-1]
    assert "v2" in api.branches and api.messages[-1] == "second try"
    sha = (hub_cache / "models--org--b" / "refs" / "v2").read_text()
    assert f"(v2) at commit {sha}" in capsys.readouterr().out
    pushed = MetaLearner.from_pretrained("org/b", revision="v2").fingerprint()
    assert pushed == MetaLearner.from_pretrained(tmp_path / "l").fingerprint()
    assert main(["push", str(tmp_path / "l"), "--repo-id", "org/b", "--create-pr"]) == 0, capsys.readouterr().err
    assert "pull request https://huggingface.co/org/b/discussions/" in capsys.readouterr().out
    assert (hub_cache / "models--org--b" / "refs" / "pr" / "1").is_file()
