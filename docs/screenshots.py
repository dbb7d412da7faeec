"""Make the README's pictures from a real campaign directory (a developer tool, not part of the package).

    python docs/screenshots.py live RUNS_DIR docs/live-view.png    # waits for a fine-tune mid-way, then draws the view
    python docs/screenshots.py curve RUNS_DIR docs/wandb-loss.png  # the loss curve read back from the offline W&B run

`live` renders the watch view with rich (Console(record=True).save_svg) and turns the SVG into a PNG
with headless Chromium. `curve` reads the ESD-x attempt's offline run (its .wandb file, through
tests/fixtures/wandb_records.py) and plots train/loss and train/grad_norm against train/step with
matplotlib: what the W&B UI shows once the run is synced, drawn here from the same logged points.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"


def live(root: Path, out: Path, timeout_s: float = 3600) -> None:
    from rich.console import Console

    from orchestrator.live import snapshot
    from orchestrator.outputs.live_view import render
    from orchestrator.spec import load_spec

    spec = load_spec(str(root / "spec.yaml"), [f"storage_path={root}"])
    deadline = time.monotonic() + timeout_s
    while True:
        snap = snapshot(spec, root)
        row = next((r for r in snap.rows if r.state == "running"), None)
        if row is not None and row.phase == "erase" and row.fraction is not None and 0.3 <= row.fraction <= 0.8:
            break
        if time.monotonic() > deadline or snap.status != "running":
            raise SystemExit("no fine-tune was caught mid-way")
        time.sleep(1.0)
    with open("/dev/null", "w") as null:
        console = Console(record=True, width=150, force_terminal=True, color_system="truecolor", file=null)
        console.print(render(snap))
    with tempfile.TemporaryDirectory() as tmp:
        svg = Path(tmp) / "view.svg"
        console.save_svg(str(svg), title=f"erase watch {root}")
        page = Path(tmp) / "view.html"
        page.write_text(f"<html><body style='margin:0;background:#fff'><img src='{svg.name}' style='width:1200px'>"
                        "</body></html>")
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={tmp}/profile", "--window-size=1200,400", f"--screenshot={out.resolve()}",
                        page.as_uri()], check=True, capture_output=True, timeout=120)
    _trim(out)
    print(f"live view: {out}")


def _trim(png: Path) -> None:
    """Crop the white margin Chromium leaves under the picture."""
    from PIL import Image, ImageChops

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, (255, 255, 255))).getbbox()
        if box:
            rgb.crop((0, 0, rgb.width, min(rgb.height, box[3] + 8))).save(png, optimize=True)


def curve(root: Path, out: Path) -> None:
    from matplotlib.figure import Figure

    from orchestrator.manifest import Manifest
    from orchestrator.outputs.tracking import run_id
    from tests.fixtures.wandb_records import history, run_file

    manifest = Manifest.open(root)
    attempt = next(a for a in manifest.history.attempts if a.method == "esd-x")
    (run_dir,) = (root / "wandb" / "wandb").glob(f"offline-run-*-{run_id(manifest.campaign, attempt.step, attempt.attempt, 'erase')}")
    points = [row for row in history(run_file(run_dir)) if "train/loss" in row]
    fig = Figure(figsize=(6.4, 3.0), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    ax.plot([p["train/step"] for p in points], [p["train/loss"] for p in points], color="#3949ab", lw=1.5)
    ax.set_xlabel("train/step")
    ax.set_ylabel("train/loss", color="#3949ab")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    right.plot([p["train/step"] for p in points], [p["train/grad_norm"] for p in points], color="#ef6c00", lw=1,
               alpha=0.8)
    right.set_ylabel("train/grad_norm", color="#ef6c00")
    ax.set_title(f"W&B offline run {run_dir.name[len('offline-run-'):]}: {len(points)} points "
                 f"(step {attempt.step} {attempt.concept}, attempt {attempt.attempt}, {attempt.method})", fontsize=8)
    fig.savefig(out)
    print(f"curve: {out} ({len(points)} points)")


if __name__ == "__main__":
    what, root, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    {"live": live, "curve": curve}[what](root, out)
