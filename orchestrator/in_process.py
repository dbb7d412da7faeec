"""Worker code that the `erase` command runs in its own process, without Ray: the launcher's one door to jobs/.

`erase step` (what a worker runs), `erase toyworld showcase|train`, the model inventory of `erase plan`, the judge
self-check of `erase judge-check` and the guarded pipeline of `erase guard` run jobs/ code on this machine. The launcher reaches it through these functions,
never by importing jobs/ itself (import-linter contract `jobs-behind-the-orchestrator`, pyproject.toml). Each one
imports its worker module when called, so importing this module costs nothing and torch is loaded only once a
command needs it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from erasecore.contracts import StepRequest
    from erasecore.inventory import ModelInventory
    from erasecore.judge_check import JudgeCheck
    from orchestrator.preflight import Settled


def run_step(request: StepRequest, log: Callable[[str], object] = print):
    """Both phases of one erasure step in this process (jobs.step.run_step): its StepResult."""
    from jobs.step import run_step as run

    return run(request, log)


def model_inventory(model: str, lora_targets: Sequence[str]) -> ModelInventory:
    """The parameter inventory of `model`, counted from its configs on the meta device (no weights)."""
    from jobs.models.inventory import inventory

    return inventory(model, tuple(lora_targets))


def toy_showcase(prompts: Sequence[str], out: Path | None = None) -> None:
    """Draw `prompts` (the toy world's default prompts if empty) with the embedded toy model."""
    from jobs.toyworld.showcase import DEFAULT_PROMPTS, showcase

    showcase(tuple(prompts) or DEFAULT_PROMPTS, out=out)


def toy_build(argv: list[str]) -> None:
    """Retrain the toy world from scratch (jobs.toyworld.build's command line)."""
    from jobs.toyworld import build

    build.main(argv)


def judge_check(settled: Settled, log: Callable[[str], object] = print) -> JudgeCheck:
    """The judge self-check of a settled campaign on its base model, in this process (jobs.validation.judge_check)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")   # advice printed at import: stderr is for the error line
    from jobs.models.loader import quiet_loading
    from jobs.validation.judge_check import check_judge
    from orchestrator.judge_check import requests

    quiet_loading()
    return check_judge(requests(settled), log=log)


def guard(bundle: Path, prompts: Sequence[str], out: Path, policy: str = "touched", on_detect: str = "block",
          negative: bool = False, log: Path | None = None, seed: int = 0,
          report: Callable[[object], object] = print) -> list:
    """Every prompt through the guarded pipeline of a serving bundle (jobs.serving.guarded.serve): its results."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from jobs.models.loader import quiet_loading
    from jobs.serving.guarded import serve

    quiet_loading()
    return serve(bundle, list(prompts), out, policy, on_detect, negative, log, seed, report)
