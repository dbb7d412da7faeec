"""A campaign's report: one self-contained HTML file built from its manifest (and grids on disk).

    write_report("runs/toy")        # -> runs/toy/report.html

Sections: summary, per-concept metrics with their Wilson intervals, plots (Forgetting and
Retain per step, retain by distance, cumulative drift, the attempt timeline), before/after
grids found as `grid.png` in attempt directories, the audit log and the resolved spec.
Images are inlined as base64 PNG and the page has no script and no external reference, so it
can be mailed or archived as one file and opened offline. Every manifest string is escaped.
"""
from __future__ import annotations

import base64
import getpass
import html
import json
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from orchestrator.core.contracts import Estimate, GateReport
from orchestrator.outputs import report_plots as plots
from orchestrator.manifest import AttemptRecord, CommitRecord, History, Manifest, attempt_dir

REPORT = "report.html"
GRID = "grid.png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_GRID_BYTES = 8 * 2**20   # a larger file is linked by path, not inlined


@dataclass(frozen=True)
class StepView:
    """One concept of the campaign as the report shows it."""

    step: int
    concept: str
    outcome: str                       # committed | skipped | pending
    reason: str
    attempts: tuple[AttemptRecord, ...]
    shown: AttemptRecord | None        # the committed attempt, else the last one with a report
    commit: CommitRecord | None

    @property
    def report(self) -> GateReport | None:
        return self.shown.report if self.shown else None

    @property
    def label(self) -> str:
        return f"{self.step}: {self.concept}"


def write_report(storage_path: str | Path, out_html: Path | None = None) -> Path:
    """Write the campaign's HTML report (default <storage_path>/report.html); return its path."""
    out = Path(out_html) if out_html is not None else Path(storage_path) / REPORT
    text = render_report(storage_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)   # a reader never sees half a report
    return out


def render_report(storage_path: str | Path) -> str:
    """The report as one HTML string."""
    manifest = Manifest.open(storage_path)
    spec = yaml.safe_load(manifest.spec_yaml)
    steps = step_views(spec["concepts"], manifest.history)
    body = [_summary(manifest, spec, steps), _metrics_table(steps), _plots(spec, steps, manifest.history),
            _timeline_table(manifest.history), _grids(manifest.root, manifest.history),
            _audit(manifest), _spec_section(manifest.spec_yaml)]
    return _page(f"Campaign {manifest.campaign}", "\n".join(body))


def step_views(concepts: list[str], history: History) -> list[StepView]:
    """Every concept of the spec in order, with its attempts and outcome."""
    views = []
    for step, concept in enumerate(concepts, 1):
        attempts = history.attempts_for(step)
        commit, outcome = history.commit_for(step), history.outcome_for(step)
        shown = next((a for a in attempts if commit and a.attempt == commit.attempt), None) \
            or next((a for a in reversed(attempts) if a.report is not None), None)
        views.append(StepView(step, concept, outcome.outcome if outcome else "pending",
                              outcome.reason if outcome else "", attempts, shown, commit))
    return views


# ---- sections ----------------------------------------------------------------------------------

def _summary(manifest: Manifest, spec: dict, steps: list[StepView]) -> str:
    counts = {k: sum(1 for s in steps if s.outcome == k) for k in ("committed", "skipped", "pending")}
    rows = [("status", manifest.status), ("base model", spec.get("model", "")), ("method", spec.get("method", "")),
            ("concepts", (f"{len(steps)}: {counts['committed']} committed, {counts['skipped']} skipped, "
                          f"{counts['pending']} pending")),
            ("attempts", str(len(manifest.history.attempts))), ("spec hash", manifest.spec_hash),
            ("created", manifest.created_at), ("updated", manifest.updated_at),
            ("storage path", str(manifest.root.resolve()))]
    return _section("Summary", _table(("", ""), rows, header=False))


def _metrics_table(steps: list[StepView]) -> str:
    head = ("step", "concept", "outcome", "attempts", "method", "forgetting", "retain", "near", "far",
            "leakage", "KL (noise)", "target acc (base)", "decision")
    rows = []
    for s in steps:
        r = s.report
        near = r.retain_by_distance.get("near") if r else None
        far = r.retain_by_distance.get("far") if r else None
        decision = s.shown.decision.reasons[0] if s.shown and s.shown.decision and s.shown.decision.reasons else s.reason
        rows.append((str(s.step), s.concept, s.outcome, str(len(s.attempts)), s.shown.method if s.shown else "",
                     _est(r.forgetting if r else None), _est(r.retain if r else None), _est(near), _est(far),
                     _est(r.leakage if r else None), f"{r.kl:.3f} ({r.kl_base_noise:.3f})" if r else "—",
                     f"{r.target_acc.value:.2f} ({r.base_target_acc:.2f})" if r else "—", decision))
    note = ("<p class=note>Each proportion: point estimate [Wilson interval] n = images. Shown for the committed "
            "attempt, else the latest measured one.</p>")
    return _section("Concepts", note + _table(head, rows))


def _plots(spec: dict, steps: list[StepView], history: History) -> str:
    gate = spec.get("gate", {})
    measured = [s for s in steps if s.report is not None]
    figures = [("Attempts over time (green: committed, red: rejected, grey: running)",
                plots.timeline(_bars(history)) if history.attempts else None)]
    if measured:
        labels = [s.label for s in measured]
        reports = [s.report for s in measured]
        distances = sorted({d for r in reports for d in r.retain_by_distance})
        earlier = sorted({c for r in reports for c in r.cumulative})
        figures += [
            ("Forgetting and Retain per step",
             plots.forgetting_retain(labels, [r.forgetting for r in reports], [r.retain for r in reports],
                                     gate.get("min_forgetting", 0.9), gate.get("min_retain", 0.95))),
            ("Retain by distance to the erased concept",
             plots.retain_by_distance(labels, {d: [r.retain_by_distance.get(d) for r in reports] for d in distances},
                                      gate.get("min_retain", 0.95)) if distances else None),
            ("Cumulative drift",
             plots.cumulative_drift(labels, {c: [r.cumulative.get(c) for r in reports] for c in earlier},
                                    gate.get("max_cumulative_acc", 0.2), [r.kl for r in reports],
                                    [r.kl_base_noise for r in reports], gate.get("max_kl", 0.3))),
        ]
    parts = [f"<figure>{_img(png, caption)}<figcaption>{_e(caption)}</figcaption></figure>"
             for caption, png in figures if png is not None]
    return _section("Plots", "\n".join(parts) or "<p class=note>No attempt has been measured yet.</p>")


def _bars(history: History) -> list[plots.Bar]:
    attempts = sorted(history.attempts, key=lambda a: (a.started_at, a.step, a.attempt))
    t0 = _time(attempts[0].started_at)
    bars = []
    for a in attempts:
        start = _time(a.started_at)
        end = _time(a.finished_at) if a.finished_at else start
        verdict = a.decision.verdict if a.decision else "running"
        bars.append(plots.Bar(f"{a.step}.{a.attempt} {a.concept}", (start - t0).total_seconds(),
                              (end - start).total_seconds(), verdict))
    return bars


def _timeline_table(history: History) -> str:
    head = ("step.attempt", "concept", "method", "hparams", "started", "finished", "duration", "host", "restarts",
            "verdict", "reasons")
    rows = []
    for a in sorted(history.attempts, key=lambda a: (a.started_at, a.step, a.attempt)):
        reasons = "; ".join(a.decision.reasons) if a.decision else ""
        rows.append((f"{a.step}.{a.attempt}", a.concept, a.method, json.dumps(a.hparams, sort_keys=True),
                     a.started_at, a.finished_at or "—", _duration(a), a.host or "—", str(a.restarts),
                     a.decision.verdict if a.decision else "running", reasons))
    return _section("Timeline", _table(head, rows) if rows else "<p class=note>No attempt yet.</p>")


def _grids(root: Path, history: History) -> str:
    parts = []
    for a in sorted(history.attempts, key=lambda a: (a.step, a.attempt)):
        path = root / attempt_dir(a.step, a.concept, a.attempt) / GRID
        if not path.is_file():
            continue   # grids are optional: a validator that draws none leaves nothing here
        caption = f"step {a.step} attempt {a.attempt}: {a.concept} ({a.method}, " \
                  f"{a.decision.verdict if a.decision else 'running'}) — base vs erased"
        data = path.read_bytes() if path.stat().st_size <= MAX_GRID_BYTES else b""
        if data.startswith(PNG_MAGIC):
            parts.append(f"<figure class=grid>{_img(data, caption)}<figcaption>{_e(caption)}</figcaption></figure>")
        else:
            parts.append(f"<p class=note>{_e(caption)}: {_e(str(path))} (too large or not a PNG; not inlined)</p>")
    return _section("Before / after grids", "\n".join(parts)) if parts else ""


def _audit(manifest: Manifest) -> str:
    """Who did what, when: every journal event in time order, with the hashes that identify it."""
    h = manifest.history
    events: list[tuple[str, str, str, str]] = [(manifest.created_at, "", "campaign created",
                                                f"spec {manifest.spec_hash}")]
    events += [("", "", "spec changed (allowed)", f"earlier spec {old}") for old in manifest.earlier_spec_hashes]
    for a in h.attempts:
        redo = f", restarted {a.restarts}x" if a.restarts else ""
        events.append((a.started_at, a.host, f"step {a.step} attempt {a.attempt} started",
                       f"{a.concept} {a.method} {json.dumps(a.hparams, sort_keys=True)}{redo}"))
        if a.finished_at:
            cand = f" candidate {a.candidate.sha256}" if a.candidate else ""
            events.append((a.finished_at, a.host, f"step {a.step} attempt {a.attempt} judged",
                           f"{a.decision.verdict if a.decision else '?'}{cand}"))
    events += [(c.committed_at, "", f"step {c.step} committed",
                f"{c.concept} attempt {c.attempt} delta {c.delta.sha256} ({c.delta.path}) spec {c.spec_hash}")
               for c in h.commits]
    events += [(o.at, "", f"step {o.step} skipped", f"{o.concept}: {o.reason}") for o in h.outcomes
               if o.outcome != "committed"]
    events.sort(key=lambda e: e[0])
    who = f"{_user()}@{socket.gethostname()}"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    note = (f"<p class=note>Report generated {now} by {_e(who)}. Hosts are those the runner recorded per "
            "attempt; hashes are sha256 (spec: of the result-changing fields; delta: of the file).</p>")
    return _section("Audit log", note + _table(("when", "host", "event", "detail"), events))


def _spec_section(spec_yaml: str) -> str:
    return _section("Resolved spec", f"<details><summary>spec.yaml</summary><pre>{_e(spec_yaml)}</pre></details>")


# ---- HTML pieces -------------------------------------------------------------------------------

CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
figure{display:inline-block;margin:8px 16px 8px 0}figcaption{color:#555;font-size:12px}
img{max-width:100%;border:1px solid #eee}.grid img{image-rendering:pixelated;min-width:384px}.note{color:#666;font-size:12px}pre{background:#f6f6f6;padding:8px}"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head>\n<body><h1>{_e(title)}</h1>\n{body}\n</body></html>\n")


def _section(title: str, content: str) -> str:
    anchor = title.lower().replace(" ", "-").replace("/", "")
    return f"<section id={anchor}><h2>{_e(title)}</h2>\n{content}\n</section>"


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]], header: bool = True) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        cells = [f"<th>{_e(row[0])}</th>" if not header else f"<td>{_e(row[0])}</td>"]
        out.append("<tr>" + "".join(cells + [f"<td>{_e(c)}</td>" for c in row[1:]]) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _est(e: Estimate | None) -> str:
    return f"{e.value:.2f} [{e.lower:.2f}, {e.upper:.2f}] n={e.n}" if e is not None else "—"


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _duration(a: AttemptRecord) -> str:
    if not a.finished_at:
        return "—"
    seconds = int((_time(a.finished_at) - _time(a.started_at)).total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 \
        else f"{seconds // 60}m{seconds % 60:02d}s"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):   # no passwd entry (containers with an arbitrary uid)
        return "unknown"
