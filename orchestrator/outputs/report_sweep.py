"""The report's final-sweep section: each committed concept's accuracy after the whole campaign.

A rebound (drawn again above gate.max_cumulative_acc) is marked; it reopened nothing (orchestrator/sweep.py).
"""
from __future__ import annotations

import html

from orchestrator.manifest import History
from orchestrator.sweep import summary


def sweep_section(history: History) -> str:
    """'' when the campaign ran no final sweep; else its summary line and one row per committed concept."""
    if not history.sweeps:
        return ""
    w = history.sweeps[-1]
    line = f"<p>{html.escape(summary(w.concepts, w.report, w.rebounds, w.error))} ({html.escape(w.at)})</p>"
    if w.report is None:
        return f"<section id=final-sweep><h2>Final sweep</h2>\n{line}\n</section>"
    rows = []
    for c in w.concepts:
        e = w.report.cumulative.get(c)
        est = f"{e.value:.2f} [{e.lower:.2f}, {e.upper:.2f}] n={e.n}" if e is not None else "—"
        rows.append(f"<tr><td>{html.escape(c)}</td><td>{est}</td><td>{'rebound' if c in w.rebounds else 'gone'}"
                    f"</td></tr>")
    table = ("<table><tr><th>concept</th><th>still drawn</th><th>verdict</th></tr>\n" + "\n".join(rows)
             + "</table>")
    return f"<section id=final-sweep><h2>Final sweep</h2>\n{line}\n{table}\n</section>"
