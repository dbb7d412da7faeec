"""What a running campaign prints: one line per phase change, progress lines inside a phase, and a
per-concept table at the end. Pure.

    [  1m05s] toy 2/3 square  attempt 1 esd-x  erase  120/150 steps (80%)  loss 0.0123 lr 0.0005 grad 0.41 ...
    [  1m12s] toy 2/3 square  attempt 1 esd-x  validate  erase took 31s on host node 1a2b3c4d  ETA 1m10s to 4m30s

Times are passed in (seconds) or read through an injected clock (ProgressLines), so every line
is a function of its inputs. The ETA is orchestrator/eta.py's range: from the running phase's
progress rate and the measured phases of earlier attempts (this driver's and, after a resume, those
in the attempt directories), low if every attempt from now passes, high if every retry is used.
Inside a phase a line is printed each time another tenth of it is done, at most every
`min_interval_s` and at least every `max_interval_s` while records arrive.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator.campaign import CommitAttempt, RunAttempt, concept_states
from erasecore.contracts import GateReport
from erasecore.phase_progress import ProgressRecord
from orchestrator.eta import Eta, InFlight, duration, estimate
from orchestrator.gate import GateDecision
from orchestrator.live import measured_phases, phase_times, record_metrics
from orchestrator.loop import Callbacks, PhaseOutput, RunOutcome
from orchestrator.manifest import MANIFEST, History, Manifest
from orchestrator.rebound import committed_accuracy, rebounds
from orchestrator.spec import CampaignSpec

DONE = ("committed", "skipped", "covered")


def metrics(report: GateReport) -> str:
    """The gate's headline numbers of one report."""
    return (f"forgetting {report.forgetting.value:.2f} retain {report.retain.value:.2f} "
            f"leakage {report.leakage.value:.2f} drift {report.drift.value:.2f}")


def phase_line(campaign: str, step: int, total: int, concept: str, attempt: int, method: str,
               phase: str, detail: str, elapsed: float, eta: Eta | str) -> str:
    """One progress line: where the campaign is, what just happened, how long it has run and will run."""
    eta_text = eta.text() if isinstance(eta, Eta) else eta
    head = f"[{duration(elapsed):>7}] {campaign} {step}/{total} {concept}  attempt {attempt} {method}  {phase}"
    return f"{head}  {detail}  ETA {eta_text}" if detail else f"{head}  ETA {eta_text}"


def progress_detail(record: ProgressRecord, phase_left: float | None) -> str:
    """A progress record as a line's detail: how far, its numbers, what is left of the phase."""
    if record.fraction is not None:
        stage = "" if record.stage == "train" else f"{record.stage} "
        head = f"{stage}{record.done}/{record.of} {record.unit} ({record.fraction:.0%})"
    else:
        head = record.stage
    numbers = record_metrics(record)
    left = f"phase left {duration(phase_left)}" if phase_left is not None else ""
    return "  ".join(p for p in (head, numbers, left) if p)


def event_line(campaign: str, elapsed: float, text: str) -> str:
    """A campaign-level line (skip, halt, finish)."""
    return f"[{duration(elapsed):>7}] {campaign}  {text}"


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
    """The loop's progress as lines: one per phase change, some inside a phase, the per-concept table at the end."""

    def __init__(self, spec: CampaignSpec, manifest: Manifest, echo: Callable[[str], None],
                 now: Callable[[], float] = time.monotonic, min_interval_s: float = 5.0,
                 max_interval_s: float = 60.0):
        self.spec, self.manifest, self.echo, self.now = spec, manifest, echo, now
        self.min_interval_s, self.max_interval_s = min_interval_s, max_interval_s
        self.started = now()
        self.measured = measured_phases(manifest.root, manifest.history)   # a resumed campaign's earlier phases
        self.inflight: InFlight | None = None
        self._phase_started = 0.0
        self._shown = (-1, 0.0)    # (tenths of the phase shown last, when)

    def attempt_started(self, a: RunAttempt, request) -> None:
        self.inflight = InFlight(a.step, a.attempt, a.method, None)

    def phase_started(self, a: RunAttempt, phase: str, before: PhaseOutput | None) -> None:
        if before is not None and not before.error:   # the phase just done is a measurement from now on
            self.measured += phase_times(a, [before])
        self.inflight = InFlight(a.step, a.attempt, a.method, phase)
        self._phase_started = self.now()
        self._shown = (-1, self._phase_started)
        if before is None:
            detail = "redo of an interrupted attempt" if a.redo else _hparams(a.hparams)
        elif before.resumed:
            detail = f"{before.phase} ended before the restart (delta {before.value.sha256[:12]})"
        else:
            detail = f"{before.phase} took {where(before)}"
        self._line(a, phase, detail)

    def phase_progress(self, a: RunAttempt, phase: str, records: Sequence[ProgressRecord]) -> None:
        if self.inflight is None:
            return
        now = self.now()
        runs = [i for i, r in enumerate(records) if r.stage == "start"]
        kept = self.inflight.records if not runs else ()          # a re-run of the phase starts over
        new = tuple(records[runs[-1]:]) if runs else tuple(records)
        self.inflight = InFlight(a.step, a.attempt, a.method, phase, now - self._phase_started, kept + new)
        last = next((r for r in reversed(records) if r.fraction is not None), None)
        if last is None:
            return
        tenth, shown_at = int(last.fraction * 10), self._shown[1]
        due = (tenth > self._shown[0] and now - shown_at >= self.min_interval_s) or now - shown_at >= self.max_interval_s
        if due:
            self._shown = (tenth, now)
            eta = self._eta(now)
            self._line(a, phase, progress_detail(last, eta.phase_left), eta)

    def attempt_finished(self, a: RunAttempt, phases: Sequence[PhaseOutput], decision: GateDecision,
                         report: GateReport | None, candidate) -> None:
        known = {(p.step, p.attempt, p.phase) for p in self.measured}
        self.measured += [p for p in phase_times(a, phases) if (p.step, p.attempt, p.phase) not in known]
        self.inflight = None   # the journal has its result now: the ETA counts what comes after it
        failed = next((p for p in phases if p.error), None)
        if failed is not None:
            self._line(a, f"{failed.phase} failed", failed.error + (f" (log {failed.log})" if failed.log else ""))
        else:
            self._line(a, "gate", f"{metrics(report)} -> {verdict(decision)}")
            for alarm in rebounds(committed_accuracy(self.manifest.history), report.cumulative, a.step,
                                  self.spec.alarms.rebound):
                self._line(a, "alarm", alarm.text())

    def committed(self, c: CommitAttempt, record, path: Path) -> None:
        self._line(c, "committed", f"{path} sha256 {record.delta.sha256[:12]}")

    def event(self, text: str) -> None:
        self.echo(event_line(self.spec.name, self.now() - self.started, text))

    def ended(self, outcome: RunOutcome, manifest: Manifest) -> None:
        self.echo(summary_table(self.spec, manifest.history, manifest.root))

    def _eta(self, now: float) -> Eta:
        inflight = self.inflight
        if inflight is not None and inflight.phase is not None:
            inflight = InFlight(inflight.step, inflight.attempt, inflight.method, inflight.phase,
                                now - self._phase_started, inflight.records)
        return estimate(self.spec, self.manifest.history, self.measured, inflight)

    def _line(self, a: RunAttempt | CommitAttempt, phase: str, detail: str, eta: Eta | None = None) -> None:
        now = self.now()
        history = self.manifest.history
        method = next(r.method for r in history.attempts_for(a.step) if r.attempt == a.attempt)
        self.echo(phase_line(self.spec.name, a.step, len(self.spec.concepts), a.concept, a.attempt, method,
                             phase, detail, now - self.started, eta or self._eta(now)))


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
