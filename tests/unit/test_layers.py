"""The layers of the house are import-linter contracts (pyproject.toml): kept by the tree, broken by a back-import."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], check=False, cwd=root, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the four packages and their contracts, to break on purpose."""
    for name in ("erasecore", "orchestrator", "jobs", "launch"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def assert_broken(result: subprocess.CompletedProcess, contract: str) -> None:
    assert result.returncode != 0, result.stdout
    broken = [text for text in result.stdout.splitlines() if "BROKEN" in text]
    assert any(contract in text for text in broken) or contract in result.stdout.split("Broken contracts")[-1], \
        result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("jobs/step.py", "from orchestrator.spec import load_spec", "launch -> orchestrator -> jobs"),
    ("erasecore/catalog.py", "import torch", "the core is plain Python"),
    ("erasecore/catalog.py", "from orchestrator import rebound", "the core is plain Python"),
    ("orchestrator/gate.py", "import jobs.step", "imported only by the orchestrator's adapters"),
    ("orchestrator/pipeline.py", "import torch", "torch and the model libraries only in jobs/"),
    ("orchestrator/rebound.py", "from diffusers import DiffusionPipeline", "torch and the model libraries only"),
    ("orchestrator/planning/memory_plan.py", "import ray", "Ray only in orchestrator.ray"),
    ("orchestrator/progress.py", "import rich", "pure parts of the orchestrator"),
    ("orchestrator/pipeline.py", "from orchestrator.ray import tasks", "adapters are imported only by"),
    ("launch/cli.py", "from jobs.step import run_step", "imported only by the orchestrator's adapters"),
    ("jobs/training/finetune.py", "import ray", "worker code never imports Ray"),
    ("jobs/methods/ablation.py", "from jobs.methods import esd", "never from each other"),
    ("jobs/validation/validator.py", "from jobs.toyworld import world", "never imports the toy world"),
])
def test_a_deliberate_back_import_breaks_its_contract(tree, module, line, contract):
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}\n")
    assert_broken(lint(tree), contract)


@pytest.mark.parametrize("module, line, contract", [
    ("orchestrator/some_new_module.py", "import ray", "Ray only in orchestrator.ray"),
    ("orchestrator/some_new_module.py", "import torch", "torch and the model libraries only in jobs/"),
    ("orchestrator/some_new_package/deep.py", "from jobs.step import run_step", "imported only by the orchestrator's"),
    ("erasecore/some_new_module.py", "from orchestrator import pipeline", "the core is plain Python"),
])
def test_a_new_module_is_held_to_its_package_contracts_without_an_edit(tree, module, line, contract):
    """The contracts are patterns: a module nobody listed is pure the day it is written."""
    path = tree / module
    if not path.parent.exists():
        path.parent.mkdir()
        (path.parent / "__init__.py").write_text("")
    path.write_text(f"{line}\n")
    assert_broken(lint(tree), contract)


def test_a_new_module_that_imports_nothing_forbidden_keeps_every_contract(tree):
    (tree / "orchestrator" / "some_new_module.py").write_text("from orchestrator.manifest import History\n")
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
