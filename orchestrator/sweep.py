"""The final sweep: after the last step, the committed model measured on every committed concept. Pure.

Each gate re-checks earlier concepts only within its cumulative budget (erasecore/cumulative.py),
so a concept that came back after its window may be seen only here. A rebound (a committed concept
drawn above gate.max_cumulative_acc) reopens nothing: it is journaled and reported, and with
validation.final_sweep=halt the campaign ends halted instead of finished.

The sweep runs as a validation phase (the executor's validate) of a request with sweep=True: the
worker measures base + every committed delta on the sweep suite (the judge's provider's: jobs/toyworld/suite.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from erasecore.contracts import DeltaRef, GateReport, StepRequest
from orchestrator.preflight import Settled, with_settled_validation
from orchestrator.spec import GateThresholds

NAME = "(sweep)"         # the sweep's concept in logs and task names (a suite's target of the same name)
DIRECTORY = "sweeps"     # under storage_path, beside steps/: `erase gc` never collects it


@dataclass(frozen=True)
class Sweep:
    """Measure the committed model on every committed concept; step is one past the last concept."""

    step: int
    erased_before: tuple[str, ...]   # the committed concepts, in step order
    parents: tuple[DeltaRef, ...]    # their deltas, paths relative to storage_path
    concept: str = NAME
    attempt: int = 1


def rebounds(report: GateReport, gate: GateThresholds) -> tuple[str, ...]:
    """Committed concepts the sweep saw drawn again above max_cumulative_acc (the gate's cumulative rule)."""
    return tuple(c for c, e in report.cumulative.items() if e.n == 0 or e.value > gate.max_cumulative_acc)


def sweep_request(s: Sweep, settled: Settled) -> tuple[StepRequest, DeltaRef]:
    """The worker's instructions and 'candidate': every committed delta but the last as parents, then the
    last (the validation phase stacks parents, then the candidate); every path absolute."""
    spec = settled.spec
    root = Path(os.path.abspath(spec.storage_path))
    deltas = tuple(DeltaRef(str(root / p.path), p.sha256) for p in s.parents)
    request = StepRequest(
        campaign=spec.name, step=s.step, attempt=s.attempt, concept=NAME, method="sweep", hparams={},
        model=spec.model, parents=deltas[:-1], out_dir=str(root / DIRECTORY / f"after-{len(s.erased_before)}"),
        erased_before=s.erased_before, preserve=tuple(spec.preserve), validation=with_settled_validation(settled),
        cache_dir=str(root / "cache"), seed=spec.seed, parallel=settled.parallel,
        concepts_from=settled.concept_set.source if settled.concept_set else "", allow_thin=spec.allow_thin,
        sweep=True)
    return request, deltas[-1]


def summary(concepts: tuple[str, ...], report: GateReport | None, bad: tuple[str, ...], error: str) -> str:
    """One line for the event log and the report."""
    if report is None:
        return f"final sweep failed: {error}"
    if not bad:
        return f"final sweep: all {len(concepts)} committed concepts stay gone ({report.images_generated} images)"
    values = ", ".join(f"{c} {report.cumulative[c].value:.2f}" for c in bad)
    return f"final sweep: {len(bad)} of {len(concepts)} committed concepts rebound: {values}"
