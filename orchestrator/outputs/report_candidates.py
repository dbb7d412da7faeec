"""The report's candidates section: every attempt of each step that tried more than one (a search or the
retry ladder), its gate's numbers side by side, its confirmation on fresh seeds, which one was chosen and why.
"""
from __future__ import annotations

import html
import json

from erasecore.contracts import Estimate
from orchestrator.manifest import DISCARDED, AttemptRecord, History


def candidates_section(history: History) -> str:
    """'' when every step took one attempt; else one row per attempt of the steps that took several."""
    rows = []
    for step in sorted({a.step for a in history.attempts}):
        tried = history.attempts_for(step)
        if len(tried) > 1:
            commit = history.commit_for(step)
            rows += [_row(a, commit is not None and commit.attempt == a.attempt) for a in tried]
    if not rows:
        return ""
    head = ("step", "concept", "attempt", "setting", "forgetting", "retain", "leakage", "drift", "gate",
            "confirmation (fresh seeds)", "chosen", "why")
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>\n" + "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>"
    note = ("<p class=note>Every attempt of the steps that tried several, in order: the gate's point estimates, "
            "and for a candidate chosen after a rejection its confirmation on fresh seeds (it commits only if "
            "that passes too).</p>")
    return f"<section id=candidates><h2>Candidates</h2>\n{note}\n{table}\n</section>"


def _row(a: AttemptRecord, chosen: bool) -> tuple[str, ...]:
    r = a.report
    gate = a.decision.verdict if a.decision else ("discarded" if a.status == DISCARDED else "running")
    confirm = a.confirmation.verdict if a.confirmation else "—"
    why = _why(a)
    return (str(a.step), a.concept, str(a.attempt), f"{a.method} {json.dumps(a.hparams, sort_keys=True)}",
            _point(r.forgetting if r else None), _point(r.retain if r else None),
            _point(r.leakage if r else None), _point(r.drift if r and r.drift.n else None),
            gate, confirm, "yes" if chosen else "", why)


def _why(a: AttemptRecord) -> str:
    if a.status == DISCARDED:
        return a.discarded
    decision = a.confirmation if a.confirmation and not a.confirmation.committed else a.decision
    if decision is None:
        return ""
    prefix = "confirmation: " if decision is a.confirmation else ""
    return prefix + "; ".join(decision.reasons[:2])


def _point(e: Estimate | None) -> str:
    return f"{e.value:.2f}" if e is not None and e.n else "—"
