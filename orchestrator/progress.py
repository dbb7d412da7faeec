"""What a running campaign prints: one line per phase change, and a per-concept table at the end. Pure.

    [  1m05s] toy 2/3 square  attempt 1 uce  validate done  forgetting 0.97 retain 0.99 leakage 0.00  ETA 1m10s

Times are passed in (seconds) or read through an injected clock (ProgressLines), so every line
is a function of its inputs.
The ETA is the mean time of the attempts finished so far times the concepts still to do,
less the time the current attempt has already run.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.campaign import CommitAttempt, RunAttempt, concept_states
from orchestrator.core.contracts import GateReport
from orchestrator.gate import GateDecision
from orchestrator.loop import Callbacks, PhaseOutput, RunOutcome
from orchestrator.manifest import MANIFEST, History, Manifest
from orchestrator.spec import CampaignSpec

DONE = ("committed", "skipped")


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 1h02m; '?' when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def metrics(report: GateReport) -> str:
    """The gate's headline numbers of one report."""
    return (f"forgetting {report.forgetting.value:.2f} retain {report.retain.value:.2f} "
            f"leakage {report.leakage.value:.2f} kl {report.kl:.3f}")


@dataclass
class Clock:
    """Attempt durations of this driver run, for the ETA. Feed it times; it reads none."""

    started: float
    attempt_seconds: list[float] = field(default_factory=list)

    def attempt_done(self, seconds: float) -> None:
        self.attempt_seconds.append(seconds)

    def eta(self, now: float, concepts_left: int, current_started: float | None) -> float | None:
        """Seconds until the campaign ends, or None before any attempt has finished."""
        if not self.attempt_seconds:
            return None
        mean = sum(self.attempt_seconds) / len(self.attempt_seconds)
        spent = now - current_started if current_started is not None else 0.0
        return max(0.0, mean * concepts_left - spent)


def phase_line(campaign: str, step: int, total: int, concept: str, attempt: int, method: str,
               phase: str, detail: str, elapsed: float, eta: float | None) -> str:
    """One progress line: where the campaign is, what just happened, how long it has run and will run."""
    head = f"[{duration(elapsed):>7}] {campaign} {step}/{total} {concept}  attempt {attempt} {method}  {phase}"
    return f"{head}  {detail}  ETA {duration(eta)}" if detail else f"{head}  ETA {duration(eta)}"


def event_line(campaign: str, elapsed: float, text: str) -> str:
    """A campaign-level line (skip, halt, finish)."""
    return f"[{duration(elapsed):>7}] {campaign}  {text}"


def concepts_left(spec: CampaignSpec, history: History) -> int:
    """Concepts neither committed nor skipped."""
    return sum(1 for s in concept_states(spec, history) if s.state not in DONE)


def summary_table(spec: CampaignSpec, history: History, root: str | os.PathLike) -> str:
    """Per-concept table (method, attempts, Forgetting, Retain, leakage, decision) and where the model is."""
    rows = [("step", "concept", "method", "attempts", "forgetting", "retain", "leakage", "decision")]
    for state in concept_states(spec, history):
        attempts = history.attempts_for(state.step)
        shown = _shown_attempt(history, state.step, attempts)
        report = shown.report if shown else None
        rows.append((str(state.step), state.concept, shown.method if shown else "-", str(state.attempts),
                     _num(report.forgetting.value if report else None),
                     _num(report.retain.value if report else None),
                     _num(report.leakage.value if report else None), state.state))
    lines = _columns(rows)
    lines += ["", *_where(spec, history, Path(root))]
    return "\n".join(lines)


def _shown_attempt(history: History, step: int, attempts):
    """The committed attempt if any, else the latest one."""
    commit = history.commit_for(step)
    if commit is not None:
        return next((a for a in attempts if a.attempt == commit.attempt), None)
    return attempts[-1] if attempts else None


def _where(spec: CampaignSpec, history: History, root: Path) -> list[str]:
    commits = sorted(history.commits, key=lambda c: c.step)
    lines = [f"journal: {root / MANIFEST}  (status {history.status})"]
    if not commits:
        return lines + [f"no committed delta: the model is still the base model {spec.model!r}"]
    lines.append(f"committed model = {spec.model!r} + these deltas, applied in order:")
    lines += [f"  {c.step}. {c.concept:<12} {root / c.delta.path}  sha256 {c.delta.sha256[:16]}" for c in commits]
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


class ProgressLines(Callbacks):
    """The loop's progress as lines: one per phase change, and the per-concept table at the end."""

    def __init__(self, spec: CampaignSpec, manifest: Manifest, echo: Callable[[str], None],
                 now: Callable[[], float] = time.monotonic):
        self.spec, self.manifest, self.echo, self.now = spec, manifest, echo, now
        self.clock = Clock(started=now())
        self.current_started: float | None = None

    def attempt_started(self, a: RunAttempt, request) -> None:
        self.current_started = self.now()

    def phase_started(self, a: RunAttempt, phase: str, before: PhaseOutput | None) -> None:
        if before is None:
            detail = "redo of an interrupted attempt" if a.redo else _hparams(a.hparams)
        else:
            detail = f"{before.phase} took {where(before)}"
        self._line(a, phase, detail)

    def attempt_finished(self, a: RunAttempt, phases: Sequence[PhaseOutput], decision: GateDecision,
                         report: GateReport | None, candidate) -> None:
        failed = next((p for p in phases if p.error), None)
        if failed is not None:
            self._line(a, f"{failed.phase} failed", failed.error + (f" (log {failed.log})" if failed.log else ""))
        else:
            self._line(a, "gate", f"{metrics(report)} -> {verdict(decision)}")
        if self.current_started is not None:
            self.clock.attempt_done(self.now() - self.current_started)
        self.current_started = None

    def committed(self, c: CommitAttempt, record, path: Path) -> None:
        self._line(c, "committed", f"{path} sha256 {record.delta.sha256[:12]}")

    def event(self, text: str) -> None:
        self.echo(event_line(self.spec.name, self.now() - self.clock.started, text))

    def ended(self, outcome: RunOutcome, manifest: Manifest) -> None:
        self.echo(summary_table(self.spec, manifest.history, manifest.root))

    def _line(self, a: RunAttempt | CommitAttempt, phase: str, detail: str) -> None:
        now = self.now()
        history = self.manifest.history
        method = next(r.method for r in history.attempts_for(a.step) if r.attempt == a.attempt)
        eta = self.clock.eta(now, concepts_left(self.spec, history), self.current_started)
        self.echo(phase_line(self.spec.name, a.step, len(self.spec.concepts), a.concept, a.attempt, method,
                             phase, detail, now - self.clock.started, eta))


def where(p: PhaseOutput) -> str:
    """How long a phase took and where it ran."""
    if p.placement is None:
        return duration(p.seconds)
    gpus = f" gpus {','.join(p.placement.gpu_ids)}" if p.placement.gpu_ids else ""
    return f"{duration(p.seconds)} on {p.placement.host} node {p.placement.node_id[:8]}{gpus}"


def verdict(decision: GateDecision) -> str:
    if decision.committed:
        return f"accepted ({len(decision.reasons)} checks pass)"
    return "rejected: " + "; ".join(decision.reasons[:len(decision.failed)])


def _hparams(hparams: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(hparams.items())) or "default hparams"
