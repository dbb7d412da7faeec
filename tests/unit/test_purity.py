"""The orchestrator's pure core imports neither torch, ray nor diffusers (it runs on a CPU-only head)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PURE = ["orchestrator.errors", "orchestrator.spec", "orchestrator.gate", "orchestrator.policy",
        "orchestrator.manifest", "orchestrator.campaign", "orchestrator.memory_plan"]
HEAVY = ["torch", "ray", "diffusers", "transformers", "accelerate", "deepspeed", "wandb"]


def imported_after(modules: list[str], watch: list[str]) -> list[str]:
    """Which of `watch` a fresh interpreter has loaded after importing `modules`."""
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            f"print(','.join(m for m in {watch!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().split(",") if m]


def test_pure_modules_do_not_import_heavy_packages():
    assert imported_after(PURE, HEAVY) == []


def test_the_probe_sees_imports():
    assert imported_after(PURE, ["omegaconf", "hashlib"]) == ["omegaconf", "hashlib"]
