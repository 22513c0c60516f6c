"""The house rules: the installable core never imports the lab, meta-training never imports the benchmark, and
the core runs without the lab's dependencies."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "metalr_hf"
CORE = sorted(p for p in PACKAGE.glob("*.py") if p.name != "cli.py")  # cli.py: the composition root
METATRAIN = sorted((PACKAGE / "metatrain").glob("*.py"))
# what the core may import besides the standard library (transformers brings packaging and numpy itself)
CORE_DEPENDENCIES = {"torch", "transformers", "huggingface_hub", "safetensors", "numpy", "packaging", "metalr_hf"}
LAB_ONLY = ["datasets", "sklearn", "jinja2", "matplotlib", "schedulefree", "prodigyopt", "pyarrow", "evaluate"]


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative ones resolved against the package)."""
    found = set()
    package = ["metalr_hf", *path.parent.relative_to(PACKAGE).parts]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
                if not node.module:
                    found |= {".".join(base + [alias.name]) for alias in node.names}
            else:
                found.add(node.module)
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_never_imports_the_lab(path):
    imports = _imports(path)
    lab = sorted(m for m in imports if m.startswith(("metalr_hf.metatrain", "metalr_hf.bench")))
    assert not lab, f"{path.name} imports the lab: {lab}"
    third_party = {m.split(".")[0] for m in imports} - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= CORE_DEPENDENCIES, f"{path.name} imports {sorted(third_party - CORE_DEPENDENCIES)}"


@pytest.mark.parametrize("path", METATRAIN, ids=lambda p: p.name)
def test_meta_training_never_imports_the_benchmark(path):
    bench = sorted(m for m in _imports(path) if m.startswith("metalr_hf.bench"))
    assert not bench, f"metatrain/{path.name} imports the benchmark: {bench}"


# The LR rule (prior × exp(δ) × back-off × guard) stands apart from its interfaces: what it may import.
RULE_IMPORTS = {
    "controller.py": {"eval_hold", "features", "learner", "options", "schedules", "signals"},
    "eval_hold.py": {"options"},  # the evaluations' part of the rule: a mixin of the controller's
    "ops.py": set(),
    "signals.py": set(),
    "learner.py": {"features", "learner_files", "hub", "cards"},  # the network, its batched and one-run steps
    "learner_files.py": {"features", "_files", "cards", "__version__"},
    "param_groups.py": {"layouts", "scheduler_checks", "scheduler"},  # the scheduler for its type only
    "features.py": {"ops", "signals"},
    "layouts.py": set(),  # where tensors live (wrappers, shards): read by the reader, which reads no scheduler
    "buckets.py": {"layouts"},
    "reader.py": {"buckets", "layouts"},
    "cards.py": {"_files", "learner", "learner_files", "hub"},  # the card reads its learner; Hub code never renders
    "scheduler_checks.py": {"options"},
    "scheduler_state.py": {"features", "hub", "scheduler_checks"},  # checkpoints: no reader, no Trainer
    "pretrained_weights.py": {"_log"},
}


@pytest.mark.parametrize("name", sorted(RULE_IMPORTS))
def test_the_rule_stands_apart_from_its_interfaces(name):
    """The controller reads no scheduler, Trainer, Hub or optimizer code; the input checks and the pretrained-weights
    heuristic stand alone (the scheduler and the Trainer import them, never the other way)."""
    own = {m.split(".", 1)[1] for m in _imports(PACKAGE / name) if m.startswith("metalr_hf.")}
    assert own <= RULE_IMPORTS[name], f"{name} imports {sorted(own - RULE_IMPORTS[name])}"


def test_the_core_works_without_the_lab_dependencies(tmp_path):
    """With the lab's packages unimportable: the scheduler steps, a learner saves (card included) and loads."""
    code = f"""
import sys
for name in {LAB_ONLY!r}:
    sys.modules[name] = None  # import fails, as when not installed
import torch
import metalr_hf
from metalr_hf import MetaLearner, MetaLRScheduler
model = torch.nn.Linear(4, 1)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
sched = MetaLRScheduler(opt, num_training_steps=5)
for _ in range(5):
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward(); sched.observe(loss.detach()); opt.step(); sched.step(); opt.zero_grad()
MetaLearner().save_pretrained({str(tmp_path)!r})
MetaLearner.from_pretrained({str(tmp_path)!r})
assert not any(m.startswith(("metalr_hf.metatrain", "metalr_hf.bench")) for m in sys.modules)
print("ok")
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
    assert "## Held-out results" in (tmp_path / "README.md").read_text()


def test_experiment_presets_register_and_continue_known_stages():
    """The unshipped experiments live outside the package; their presets still load, do not shadow a shipped
    preset, and every stage they continue exists."""
    import importlib.util

    from metalr_hf.metatrain.presets import PRESETS, register

    path = PACKAGE.parent / "lab" / "experiments" / "presets.py"
    spec = importlib.util.spec_from_file_location("experiment_presets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not set(module.EXPERIMENTS) & set(PRESETS)  # shipped presets only in the package
    known = set(PRESETS) | set(module.EXPERIMENTS)
    assert all(p.init_from in known for p in module.EXPERIMENTS.values() if p.init_from)
    with pytest.raises(ValueError, match="exist already"):
        register({"default": PRESETS["default"]})


MAX_LINES = 400  # "no module over ~400 lines" (issue 32)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_grows_past_the_size_a_reader_takes_in(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines: split it by idea"
