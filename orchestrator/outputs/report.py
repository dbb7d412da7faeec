"""A campaign's report: one self-contained HTML file built from its manifest (and grids on disk).

    write_report("runs/toy")        # -> runs/toy/report.html

Sections: summary, per-concept metrics with their Wilson intervals, the judges that measured them (each
identity: weights' sha256, classes, thresholds, library versions), plots (Forgetting and
Retain per step, retain by distance, cumulative drift; where measured, parameter drift per layer group and
the capability curve), the rebound alarms (orchestrator/rebound.py), the timeline (one row per attempt with a
bar per phase on a shared time axis, hovering a bar shows its phase, duration and host; the gate's
reasons in a collapsible row under it), per attempt its before/after grid (`grid.png` in the
attempt directory) next to its training curves (loss, gradient norm and learning rate per logged
step, from the attempt's progress.jsonl), per attempt its cross-attention maps (`attention.png`, or why
there are none, from `attention.json`), the audit log and the resolved spec.
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

from erasecore import judge_check
from erasecore.atomic import atomic_write_text
from erasecore.codec import to_json
from erasecore.contracts import Estimate, GateReport, JudgeIdentity
from erasecore.phase_progress import ProgressRecord, current_run, read_records
from orchestrator.manifest import (
    AttemptRecord,
    CommitRecord,
    History,
    Manifest,
    attempt_dir,
)
from orchestrator.outputs import report_plots as plots
from orchestrator.outputs.report_candidates import candidates_section
from orchestrator.outputs.report_sweep import sweep_section
from orchestrator.rebound import campaign_rebounds

REPORT = "report.html"
GRID = "grid.png"
ATTENTION_PNG, ATTENTION_JSON = "attention.png", "attention.json"   # jobs/validation/attention_maps.py writes them
REBOUND_DEFAULT = 0.15   # spec alarms.rebound's default, for journals whose spec predates it
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
    atomic_write_text(out, text)   # a reader never sees half a report
    return out


def render_report(storage_path: str | Path) -> str:
    """The report as one HTML string."""
    manifest = Manifest.open(storage_path)
    spec = yaml.safe_load(manifest.spec_yaml)
    steps = step_views(spec["concepts"], manifest.history)
    body = [_summary(manifest, spec, steps), _metrics_table(steps), _judges(steps),
            _judge_check(spec, manifest.history),
            candidates_section(manifest.history), sweep_section(manifest.history), _plots(spec, steps),
            _rebound_alarms(spec, manifest.history), _timeline(manifest.root, manifest.history),
            _grids(manifest.root, manifest.history), _attention(manifest.root, manifest.history),
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
    counts = {k: sum(1 for s in steps if s.outcome == k) for k in ("committed", "skipped", "covered", "pending")}
    status = f"stopped: {manifest.stop_reason}" if manifest.status == "stopped" else manifest.status
    rows = [("status", status), ("base model", spec.get("model", "")), ("method", spec.get("method", "")),
            ("concepts", (f"{len(steps)}: {counts['committed']} committed, {counts['skipped']} skipped, "
                          + (f"{counts['covered']} covered by a group step, " if counts["covered"] else "")
                          + f"{counts['pending']} pending")),
            ("attempts", str(len(manifest.history.attempts))), ("spec hash", manifest.spec_hash),
            ("created", manifest.created_at), ("updated", manifest.updated_at),
            ("storage path", str(manifest.root.resolve()))]
    return _section("Summary", _table(("", ""), rows, header=False))


def _metrics_table(steps: list[StepView]) -> str:
    head = ("step", "concept", "outcome", "attempts", "method", "forgetting", "retain", "near", "far",
            "leakage", "drift", "target acc (base)", "decision")
    # The attacks' columns only where the optimized attack was measured (it is off unless a campaign sets it).
    attacked = any(s.report and s.report.attack_optimized for s in steps)
    if attacked:
        head = head[:-1] + ("attack", "attack (optimized)") + head[-1:]
    rows = []
    for s in steps:
        r = s.report
        near = r.retain_by_distance.get("near") if r else None
        far = r.retain_by_distance.get("far") if r else None
        decision = s.shown.decision.reasons[0] if s.shown and s.shown.decision and s.shown.decision.reasons else s.reason
        attacks = (_est(r.attack if r else None), _est(r.attack_optimized if r else None)) if attacked else ()
        rows.append((str(s.step), s.concept, s.outcome, str(len(s.attempts)), s.shown.method if s.shown else "",
                     _est(r.forgetting if r else None), _est(r.retain if r else None), _est(near), _est(far),
                     _est(r.leakage if r else None), _est(r.drift if r and r.drift.n else None),
                     f"{r.target_acc.value:.2f} ({r.base_target_acc:.2f})" if r else "—", *attacks, decision))
    note = ("<p class=note>Each proportion: point estimate [Wilson interval] n = images. Shown for the committed "
            "attempt, else the latest measured one."
            + (" Attack: the concept regenerated through the candidate's own K/V (closed form); attack (optimized): "
               "by a soft prompt optimised against its denoising loss (measured, never gated)." if attacked else "")
            + "</p>")
    return _section("Concepts", note + _table(head, rows))


def _judges(steps: list[StepView]) -> str:
    """Who measured each concept's shown gate: one row per distinct judge identity, with the steps it judged."""
    judged: dict[str, tuple[JudgeIdentity, list[str]]] = {}
    unnamed = [s.label for s in steps if s.report is not None and not s.report.judges]
    for s in steps:
        for j in s.report.judges if s.report is not None else ():
            judged.setdefault(to_json(j), (j, []))[1].append(s.label)
    head = ("judge", "steps", "weights (sha256)", "source", "classes", "thresholds", "rule", "libraries")
    rows = [(j.name, ", ".join(labels), _pairs(j.weights) or "none loaded", j.source,
             f"{len(j.classes)}: {', '.join(j.classes)}", _pairs(j.thresholds) or "none", j.rule, _pairs(j.libraries))
            for j, labels in judged.values()]
    if unnamed:
        why = "a journal written before gates named their judge"
        rows.append(("not recorded", ", ".join(unnamed), "", "", "", "", why, ""))
    note = ("<p class=note>The judge of each concept's shown gate. Gates judged by different identities (another "
            "weight file, threshold or library version) are not comparable number for number.</p>")
    return _section("Judges", note + _table(head, rows) + _calibration(judged.values())) if rows else ""


def _calibration(judged) -> str:
    """A calibrated judge's table: per concept, its threshold and how it did on the half it was not fitted on."""
    head = ("judge", "concept", "threshold", "false-positive target", "fitted on", "hit rate (check half)",
            "false positives (check half)")
    rows = [(j.name, concept, f"{r['threshold']:.4f}", f"{r['false_positive_target']:.2f}",
             f"{r['fit_images']:.0f} images", f"{r['check_hit']:.2f} of {r['check_own']:.0f}",
             f"{r['check_false_positive']:.2f} of {r['check_other']:.0f}")
            for j, _ in judged for concept, r in sorted(j.calibration.items())]
    if not rows:
        return ""
    note = ("<p class=note>Calibration: each threshold fitted on one half of the base model's images (even noise "
            "seeds, or even prompts at one seed) to the false-positive target, and checked on the other half.</p>")
    return note + _table(head, rows)


def _judge_check(spec: dict, history: History) -> str:
    """The judge self-check the campaign ran before its first erase: per concept, what the judge saw on the base
    model's own images and whether it may gate that concept (under the spec's allow_weak_judge)."""
    if not history.judge_checks:
        return ""
    record = history.judge_checks[-1]
    check = judge_check.reverdict(record.check, bool(spec.get("validation", {}).get("allow_weak_judge", False)))
    head = ("concept", "hit rate (own prompts)", "false positives (other prompts)", "verdict")
    rows = [(c.rates.concept, _est(c.rates.hit), _est(c.rates.false_positive),
             c.verdict + (f": {c.reason}" if c.reason else "")) for c in check.concepts]
    j = check.judge
    note = (f"<p class=note>Judge {_e(j.name)} ({_e(_pairs(j.weights) or 'no weight files')}) on {_e(check.model)}'s "
            f"images, {check.seeds} per prompt, checked {_e(record.at)}. A concept is refused when the base model "
            f"barely draws it (hit rate's lower bound under {judge_check.MIN_HIT}) or the judge sees it about as often "
            f"on other concepts' prompts; validation.allow_weak_judge runs it flagged.</p>")
    return _section("Judge self-check", note + _table(head, rows))


def _pairs(mapping: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in mapping.items())


def _plots(spec: dict, steps: list[StepView]) -> str:
    gate = spec.get("gate", {})
    measured = [s for s in steps if s.report is not None]
    figures: list[tuple[str, bytes | None]] = []
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
                                    gate.get("max_cumulative_acc", 0.2), [r.drift for r in reports],
                                    gate.get("max_drift", 0.25))),
        ]
        figures += _campaign_views(labels, reports)
    parts = [f"<figure>{_img(png, caption)}<figcaption>{_e(caption)}</figcaption></figure>"
             for caption, png in figures if png is not None]
    return _section("Plots", "\n".join(parts) or "<p class=note>No attempt has been measured yet.</p>")


def _campaign_views(labels: list[str], reports: list[GateReport]) -> list[tuple[str, bytes | None]]:
    """Drift per layer group and the capability curve, for the gates that measured them."""
    figures: list[tuple[str, bytes | None]] = []
    groups = list(dict.fromkeys(g for r in reports for g in r.param_drift))
    if groups:
        relative = {g: [r.param_drift[g].relative if g in r.param_drift else None for r in reports] for g in groups}
        figures.append(("Parameter drift: norm of the summed committed deltas and the candidate per layer group, "
                        "relative to the base weights", plots.parameter_drift(labels, relative)))
    measured = [r.capability for r in reports]
    if any(c is not None for c in measured):
        bench = next(c.bench for c in measured if c is not None)
        entries = list(dict.fromkeys(e for c in measured if c is not None for e in c.drawn))
        per_entry = {e: [c.drawn[e] / c.base[e] if c is not None and c.base.get(e) else None for c in measured]
                     for e in entries}
        figures.append((f"Capability across the campaign (bench {bench}; the score leaves out entries erased "
                        "so far)", plots.capability(labels, [c.score if c else None for c in measured], per_entry)))
    return figures


def _rebound_alarms(spec: dict, history: History) -> str:
    """Earlier concepts drawn again: the alarm of orchestrator/rebound.py over every measured attempt."""
    threshold = float((spec.get("alarms") or {}).get("rebound", REBOUND_DEFAULT))
    alarms = campaign_rebounds(history, threshold)
    note = (f"<p class=note>An earlier erased concept whose accuracy on a later gate is more than {threshold:.2f} "
            "above its accuracy on the gate that committed it (alarms.rebound).</p>")
    if not alarms:
        return _section("Rebound alarms", note + "<p>None.</p>")
    rows = [(str(a.step), a.concept, f"{a.at_commit:.2f}", f"{a.now:.2f}", f"+{a.climb:.2f}") for a in alarms]
    return _section("Rebound alarms", note + _table(("step", "concept", "at commit", "now", "climb"), rows))


def _attention(root: Path, history: History) -> str:
    """Per attempt, the cross-attention maps of its concept's token and an attribute token, base vs erased."""
    parts = []
    for a in sorted(history.attempts, key=lambda a: (a.step, a.attempt)):
        directory = root / attempt_dir(a.step, a.concept, a.attempt)
        try:
            meta = json.loads((directory / ATTENTION_JSON).read_text())
        except (OSError, ValueError):
            continue   # no maps drawn for this attempt (older journals, a failed phase)
        if not isinstance(meta, dict):
            continue   # not what the validator writes: advice only, never a reason to fail the report
        head = f"step {a.step} attempt {a.attempt}: {a.concept}"
        path = directory / ATTENTION_PNG
        data = path.read_bytes() if path.is_file() and path.stat().st_size <= MAX_GRID_BYTES else b""
        if meta.get("skipped") or not data.startswith(PNG_MAGIC):
            why = meta.get("skipped") or "attention.png missing or not a PNG"
            parts.append(f"<p class=note>{_e(head)}: no attention maps ({_e(why)})</p>")
            continue
        tokens = ", ".join(f'"{t}"' for t in meta.get("tokens", []))
        caption = f"{head} — \"{meta.get('prompt', '')}\" seed {meta.get('seed', 0)}: attention of {tokens}"
        parts.append(f"<figure class=grid>{_img(data, caption)}<figcaption>{_e(caption)}</figcaption></figure>")
    if not parts:
        return ""
    note = ("<p class=note>Where the image attends to each token (red: most), on one fixed prompt and seed, "
            "in the base model and in the erased one. An attribute's attention moving to the other object "
            "is the side effect to look for.</p>")
    return _section("Cross-attention maps", note + "\n".join(parts))


@dataclass(frozen=True)
class PhaseSpan:
    """One phase of an attempt on the timeline: seconds since the campaign's first attempt began."""

    phase: str           # erase | validate
    start: float
    seconds: float
    note: str            # where it ran, or why it failed


def phase_spans(root: Path, a: AttemptRecord, t0: datetime) -> list[PhaseSpan]:
    """The attempt's phases: from its progress records (start to end, as the worker saw them), else laid
    end to end from the attempt's start with the seconds placement.json measured; [] when neither exists."""
    directory = root / attempt_dir(a.step, a.concept, a.attempt)
    placement = _placement(directory)
    spans = []
    for phase in ("erase", "validate"):
        records = current_run(read_records(directory, phase))
        info = placement.get(phase) if isinstance(placement.get(phase), dict) else {}
        note = _where(info)
        if len(records) >= 2:
            begin = datetime.fromtimestamp(records[0].t, timezone.utc)
            spans.append(PhaseSpan(phase, (begin - t0).total_seconds(), records[-1].t - records[0].t, note))
        elif isinstance(info.get("seconds"), (int, float)):
            begin = spans[-1].start + spans[-1].seconds if spans else (_time(a.started_at) - t0).total_seconds()
            spans.append(PhaseSpan(phase, begin, float(info["seconds"]), note))
    return spans


def _placement(directory: Path) -> dict:
    try:
        data = json.loads((directory / "placement.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _where(info: dict) -> str:
    if info.get("error"):
        return f"failed: {info['error']}"
    placement = info.get("placement") or {}
    return f"on {placement.get('host', '?')}" if placement else ""


def _timeline(root: Path, history: History) -> str:
    """One row per attempt: a bar per phase on a shared time axis (hover: phase, duration, host), the verdict,
    and the gate's reasons in a collapsible row underneath."""
    attempts = sorted(history.attempts, key=lambda a: (a.started_at, a.step, a.attempt))
    if not attempts:
        return _section("Timeline", "<p class=note>No attempt yet.</p>")
    t0 = _time(attempts[0].started_at)
    rows = []
    for a in attempts:
        end = _time(a.finished_at) if a.finished_at else _time(a.started_at)
        spans = phase_spans(root, a, t0)
        rows.append((a, (_time(a.started_at) - t0).total_seconds(), (end - _time(a.started_at)).total_seconds(),
                     spans))
    total = max([start + seconds for _, start, seconds, _ in rows] +
                [s.start + s.seconds for *_, spans in rows for s in spans] + [1.0])
    head = "".join(f"<th>{h}</th>" for h in ("step.attempt", "concept", "method", "hparams",
                                              f"time (0 to {_e(_clock(total))})", "duration", "verdict"))
    out = [f"<table class=timeline><tr>{head}</tr>"]
    for a, start, seconds, spans in rows:
        verdict = a.decision.verdict if a.decision else "running"
        reasons = list(a.decision.reasons) if a.decision else []
        failed = len(a.decision.failed) if a.decision else 0
        label = (f"started {a.started_at}, finished {a.finished_at or '-'}, host {a.host or '-'}, "
                 f"restarts {a.restarts}")
        out.append(f"<tr><td title=\"{_e(label)}\">{a.step}.{a.attempt}</td><td>{_e(a.concept)}</td>"
                   f"<td>{_e(a.method)}</td><td class=hp>{_e(json.dumps(a.hparams, sort_keys=True))}</td>"
                   f"<td>{_track(a, start, seconds, spans, total, verdict)}</td><td>{_e(_duration(a))}</td>"
                   f"<td class=\"v {_e(verdict)}\" title=\"{_e('; '.join(reasons))}\">{_e(verdict)}</td></tr>")
        if reasons:
            first = reasons[0] if len(reasons[0]) <= 90 else reasons[0][:87] + "..."
            summary = (f"{failed} failed of {len(reasons)} checks: {first}" if failed
                       else f"{len(reasons)} checks passed")
            items = "".join(f"<li class={'fail' if i < failed else 'pass'}>{_e(r)}</li>" for i, r in enumerate(reasons))
            extra = f"<p class=note>{_e(label)}</p>"
            out.append(f"<tr class=reasons><td></td><td colspan=6><details><summary>{_e(summary)}</summary>"
                       f"<ul>{items}</ul>{extra}</details></td></tr>")
    out.append("</table>")
    legend = ("<p class=note>Bars: <span class=\"key erase\"></span> erase, <span class=\"key validate\"></span> "
              "validate, <span class=\"key other\"></span> the attempt outside its phases (scheduling, gate, "
              "journal); hover a bar for its duration and host. A row's reasons open under it.</p>")
    return _section("Timeline", legend + "\n".join(out))


def _track(a: AttemptRecord, start: float, seconds: float, spans: list[PhaseSpan], total: float,
           verdict: str) -> str:
    def bar(kind: str, left: float, width: float, title: str) -> str:
        pct_left, pct_width = 100 * left / total, max(0.4, 100 * width / total)   # a sliver for instant phases
        return (f"<span class=\"{kind}\" style=\"left:{pct_left:.2f}%;width:{pct_width:.2f}%\" "
                f"title=\"{_e(title)}\"></span>")
    parts = [bar(f"other {verdict}", start, seconds, f"attempt {a.step}.{a.attempt}: {_clock(seconds)} ({verdict})")]
    for s in spans:
        parts.append(bar(s.phase, s.start, s.seconds, f"{s.phase} {_clock(s.seconds)} {s.note}".strip()))
    return f"<div class=track>{''.join(parts)}</div>"


def _clock(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _grids(root: Path, history: History) -> str:
    """Per attempt, its before/after grid next to its training curves (either may be missing)."""
    parts = []
    for a in sorted(history.attempts, key=lambda a: (a.step, a.attempt)):
        directory = root / attempt_dir(a.step, a.concept, a.attempt)
        path = directory / GRID
        train = [r for r in current_run(read_records(directory, "erase")) if r.stage == "train" and r.loss is not None]
        if not path.is_file() and not train:
            continue   # grids are optional: a validator that draws none leaves nothing here
        verdict = a.decision.verdict if a.decision else "running"
        caption = f"step {a.step} attempt {a.attempt}: {a.concept} ({a.method}, {verdict}) — base vs erased"
        cells = []
        if path.is_file():
            data = path.read_bytes() if path.stat().st_size <= MAX_GRID_BYTES else b""
            if data.startswith(PNG_MAGIC):
                cells.append(f"<figure class=grid>{_img(data, caption)}<figcaption>{_e(caption)}</figcaption></figure>")
            else:
                cells.append(f"<p class=note>{_e(caption)}: {_e(str(path))} (too large or not a PNG; not inlined)</p>")
        if train:
            curve = (f"step {a.step} attempt {a.attempt}: training curves ({len(train)} logged steps of "
                     f"{train[-1].total})")
            cells.append(f"<figure class=curve>{_img(_curve_png(train), curve)}<figcaption>{_e(curve)}"
                         f"</figcaption></figure>")
        parts.append(f"<div class=attempt>{''.join(cells)}</div>")
    return _section("Before / after grids and training curves", "\n".join(parts)) if parts else ""


def _curve_png(train: list[ProgressRecord]) -> bytes:
    return plots.training_curves([r.step or 0 for r in train], [r.loss for r in train],
                                 [r.grad_norm for r in train], [r.lr for r in train])


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
        if a.confirmation:
            events.append((a.finished_at, a.host, f"step {a.step} attempt {a.attempt} confirmed on fresh seeds",
                           a.confirmation.verdict))
    events += [(c.committed_at, "", f"step {c.step} committed",
                f"{c.concept} attempt {c.attempt} delta {c.delta.sha256} ({c.delta.path}) spec {c.spec_hash}")
               for c in h.commits]
    events += [(o.at, "", f"step {o.step} {o.outcome}", f"{o.concept}: {o.reason}") for o in h.outcomes
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
img{max-width:100%;border:1px solid #eee}.grid img{image-rendering:pixelated;min-width:384px}.note{color:#666;font-size:12px}pre{background:#f6f6f6;padding:8px}
.attempt{display:flex;flex-wrap:wrap;align-items:flex-start;gap:8px;border-bottom:1px solid #eee}
.curve img{width:460px}
.timeline td{vertical-align:middle}.timeline .hp{max-width:220px;font-size:12px;color:#555;overflow-wrap:anywhere}
.track{position:relative;height:16px;width:480px;background:#f6f6f6}
.track span{position:absolute;top:2px;height:12px;border-radius:2px}
.track .other{top:6px;height:4px;background:#bdbdbd}.track .other.commit{background:#81c784}
.track .other.reject{background:#e57373}
.track .erase,.key.erase{background:#3949ab}.track .validate,.key.validate{background:#00897b}
.key{display:inline-block;width:14px;height:10px;vertical-align:middle}.key.other{background:#bdbdbd}
.v.commit{color:#2e7d32;font-weight:bold}.v.reject{color:#c62828;font-weight:bold}
tr.reasons td{background:#fff;border-top:none;padding-top:0}
details summary{cursor:pointer;color:#444;font-size:12px}details ul{margin:4px 0 4px 16px;padding:0;font-size:12px}
li.fail{color:#c62828}li.pass{color:#555}"""


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
