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
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the three packages and their contracts, to break on purpose."""
    for name in ("orchestrator", "jobs", "launch"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("jobs/step.py", "from orchestrator.spec import load_spec", "launch -> orchestrator -> jobs"),
    ("orchestrator/core/catalog.py", "import torch", "the core is plain Python"),
    ("orchestrator/gate.py", "import jobs.step", "pure parts"),
    ("jobs/training/finetune.py", "import ray", "worker code never imports Ray"),
    ("jobs/methods/ablation.py", "from jobs.methods import esd", "never from each other"),
])
def test_a_deliberate_back_import_breaks_its_contract(tree, module, line, contract):
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}\n")
    result = lint(tree)
    assert result.returncode != 0, result.stdout
    broken = [text for text in result.stdout.splitlines() if "BROKEN" in text]
    assert any(contract in text for text in broken) or contract in result.stdout.split("Broken contracts")[-1], \
        result.stdout
