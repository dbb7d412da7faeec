"""The live view of `erase status RUNS_DIR --watch` / `erase watch RUNS_DIR`: a rich table, redrawn in place.

    watch(spec, root)                 # until the campaign is no longer running (or Ctrl-C)
    console.print(render(snapshot(spec, root)))

One row per concept: state, attempts and method, the running phase with a progress bar of its
current stage (optimizer steps of a fine-tune, images of a validation), what that phase still
needs, and its last numbers (loss, lr, gradient norm, rate, peak memory), or for a judged concept
the gate's numbers. Under the table: the campaign's ETA range (orchestrator/eta.py) and how long
ago the driver last wrote. Everything comes from files on storage_path (orchestrator/live.py), so
this works for a local campaign and for a job on a cluster whose storage_path is mounted here.
"""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.eta import duration
from orchestrator.live import Row, Snapshot, snapshot
from orchestrator.spec import CampaignSpec

STATE_STYLES = {"committed": "bold green", "running": "bold cyan", "accepted": "green", "rejected": "yellow",
                "skipped": "red", "covered": "green", "pending": "dim"}
STATUS_STYLES = {"running": "cyan", "finished": "green", "halted": "red", "cancelled": "yellow", "stopped": "red"}


def render(snap: Snapshot) -> Group:
    """The snapshot as a renderable: a title line, the concept table, the ETA and driver lines."""
    title = Text.assemble(("campaign ", "bold"), (snap.campaign, "bold"), "  ",
                          (snap.status_text(), STATUS_STYLES.get(snap.status, "") if snap.driver is not False
                           else "yellow"), ("  " + snap.root, "dim"))
    running = any(r.state == "running" for r in snap.rows)   # the phase columns only while something runs
    columns = [("step", "right"), ("concept", "left"), ("state", "left"), ("attempt", "left")]
    columns += [("phase", "left"), ("progress", "left"), ("", "left"), ("left", "right")] if running else []
    table = Table(expand=False, pad_edge=False, box=None, header_style="bold", padding=(0, 1))
    for name, justify in [*columns, ("last", "left")]:
        table.add_column(name, justify=justify, no_wrap=name != "last")
    for row in snap.rows:
        table.add_row(*_cells(row, running))
    return Group(title, table, _footer(snap))


def _cells(row: Row, running: bool) -> list:
    state = Text(row.state, style=STATE_STYLES.get(row.state, ""))
    attempt = f"{row.attempts} {row.method}".strip() if row.attempts else "-"
    head = [str(row.step), row.concept, state, attempt]
    if row.state != "running":
        return head + (["", "", "", ""] if running else []) + [Text(row.metrics, style="dim")]
    bar = ProgressBar(total=1.0, completed=row.fraction or 0.0, width=24) if row.fraction is not None else Text("")
    return head + [Text(row.phase or "-", style="cyan"), bar, row.progress,
                   duration(row.left) if row.left is not None else "?", row.metrics]


def _footer(snap: Snapshot) -> Text:
    text = Text()
    if snap.eta is not None:
        text.append("ETA ", style="bold")
        text.append(snap.eta.text(), style="bold")
        text.append("  (if every attempt from now on passes to if every retry is used; +: at least)", style="dim")
    if snap.status == "running" and snap.driver is not False:   # no driver: the title line says so
        if snap.updated_ago is None:
            text.append("\nthe driver has not written live.json yet", style="yellow")
        elif snap.stale:
            text.append(f"\nthe driver has been silent for {duration(snap.updated_ago)}: is it still running? "
                        "(erase resume continues it)", style="yellow")
        else:
            text.append(f"\ndriver updated {duration(snap.updated_ago)} ago", style="dim")
    return text


def watch(spec: CampaignSpec, root: str | Path, console: Console | None = None, interval: float = 1.0,
          clock=time.time, sleep=time.sleep) -> str:
    """Redraw the view every `interval` seconds until the campaign is no longer running (or no driver runs
    it); its final status."""
    console = console or Console()
    snap = snapshot(spec, root, clock())
    with Live(render(snap), console=console, auto_refresh=False, transient=False) as live:
        while snap.status == "running" and snap.driver is not False:
            sleep(interval)
            snap = snapshot(spec, root, clock())
            live.update(render(snap), refresh=True)
    return snap.status


def render_text(snap: Snapshot, width: int = 140) -> str:
    """The view as plain text (tests, logs)."""
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=_Null())
    console.print(render(snap))
    return console.export_text()


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
