"""The HTML report from a synthetic journal: sections, Wilson bounds, inlined plots and grids, escaping, audit."""
from __future__ import annotations

import base64
import hashlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from erasecore.contracts import DeltaRef, Estimate, GateReport
from orchestrator.gate import GateDecision, error_decision
from orchestrator.manifest import Manifest
from orchestrator.outputs.report import GRID, PNG_MAGIC, render_report, write_report
from orchestrator.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
ACCEPT = GateDecision("commit", ("forgetting 0.97 >= 0.90",))
REJECT = GateDecision("reject", ("forgetting 0.40 < 0.90",), ("forgetting",))
HOSTILE = "<script>alert('x')</script>"


def est(v: float, lo: float, hi: float, n: int = 96) -> Estimate:
    return Estimate(v, lo, hi, n)


def report(concept: str, forgetting: Estimate, cumulative: dict[str, Estimate] | None = None) -> GateReport:
    return GateReport(concept=concept, forgetting=forgetting, target_acc=est(0.03, 0.01, 0.07), base_target_acc=0.9,
                      evasion={"paraphrase": est(0.1, 0.05, 0.2, 24)}, retain=est(0.98, 0.95, 0.99),
                      retain_by_distance={"near": est(0.96, 0.9, 0.99, 48), "far": est(0.99, 0.96, 1.0, 48)},
                      leakage=est(0.02, 0.0, 0.06), kl=0.04, kl_base_noise=0.02, cumulative=cumulative or {},
                      images_generated=400, early_stopped=False, seconds=3.0)


def png(width: int = 6, height: int = 4) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def attempt(m: Manifest, step: int, concept: str, n: int, decision: GateDecision, rep: GateReport | None,
            grid: bool = False, hparams: dict | None = None) -> DeltaRef | None:
    m.record_start(step, concept, n, "uce", hparams or {"erase_scale": float(n)}, host=f"worker-{n}")
    directory = m.attempt_path(step, concept, n)
    directory.mkdir(parents=True, exist_ok=True)
    if grid:
        (directory / GRID).write_bytes(png())
    ref = None
    if rep is not None:
        payload = f"delta {step}.{n}".encode()
        (directory / "delta.safetensors").write_bytes(payload)
        ref = DeltaRef(str(directory / "delta.safetensors"), hashlib.sha256(payload).hexdigest())
    m.record_result(step, n, decision, rep, ref)
    if decision.committed:
        m.commit(step, n)
    return ref


@pytest.fixture
def campaign(tmp_path) -> Path:
    """star: rejected then committed (with a grid); square: committed; round: failed, skipped."""
    root = tmp_path / "toy"
    m = Manifest.create(root, load_spec(None, ["name=toy", "concepts=[star,square,round]", f"storage_path={root}"]))
    attempt(m, 1, "star", 1, REJECT, report("star", est(0.4, 0.3, 0.5)), hparams={"note": HOSTILE})
    attempt(m, 1, "star", 2, ACCEPT, report("star", est(0.97, 0.93, 0.99)), grid=True)
    attempt(m, 2, "square", 1, ACCEPT, report("square", est(0.95, 0.9, 0.98), {"star": est(0.05, 0.01, 0.12, 48)}))
    attempt(m, 3, "round", 1, error_decision("erase: worker lost"), None)
    m.skip(3, "round", "attempts exhausted")
    return root


def images(text: str) -> list[bytes]:
    sources = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert all(s.startswith("data:image/png;base64,") for s in sources), "every image is inlined"
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def test_report_has_every_section_and_the_wilson_bounds(campaign):
    out = write_report(campaign)
    assert out == campaign / "report.html"
    text = out.read_text()
    for title in ("Summary", "Concepts", "Plots", "Timeline", "Before / after grids and training curves", "Audit log",
                  "Resolved spec"):
        assert f"<h2>{title}</h2>" in text
    assert "0.97 [0.93, 0.99] n=96" in text            # star's committed attempt, not the rejected one
    assert "0.95 [0.90, 0.98] n=96" in text and "0.96 [0.90, 0.99] n=48" in text   # square; near retain
    assert "3: 2 committed, 1 skipped, 0 pending" in text
    assert "erase: worker lost" in text and "attempts exhausted" in text


def test_plots_and_the_one_grid_are_inlined_pngs(campaign):
    pictures = images(render_report(campaign))
    assert len(pictures) == 4                           # forgetting/retain, by distance, drift + 1 grid
    assert all(p.startswith(PNG_MAGIC) for p in pictures)
    assert png() in pictures                            # the grid is inlined byte for byte


def test_the_page_is_self_contained_and_escapes_the_journal(campaign):
    text = render_report(campaign)
    assert "<script" not in text and "<link" not in text and not re.search(r'(src|href)="(https?:|//|file:)', text)
    assert "&lt;script&gt;alert(" in text


def test_audit_log_names_hashes_hosts_and_the_reader(campaign):
    import getpass

    m = Manifest.open(campaign)
    text = render_report(campaign)
    audit = text[text.index("<h2>Audit log</h2>"):]
    for commit in m.history.commits:
        assert commit.delta.sha256 in audit
    assert m.spec_hash in audit and "worker-2" in audit and getpass.getuser() in audit
    assert audit.index("campaign created") < audit.index("step 1 attempt 1 started") < audit.index("step 1 committed")


def test_a_fresh_campaign_reports_without_plots(tmp_path):
    root = tmp_path / "fresh"
    Manifest.create(root, load_spec(None, ["name=fresh", "concepts=[star]", f"storage_path={root}"]))
    out = write_report(root, tmp_path / "elsewhere" / "r.html")
    text = out.read_text()
    assert images(text) == [] and "No attempt" in text and "Before / after grids" not in text


def test_importing_report_does_not_import_matplotlib_or_torch():
    code = "import sys, orchestrator.outputs.report; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_timeline_has_a_bar_per_phase_with_hover_text_and_the_reasons_in_a_collapsible_row(campaign):
    import json as _json

    from erasecore.phase_progress import ProgressWriter

    directory = campaign / "steps" / "1-star" / "attempt-2"
    m = Manifest.open(campaign)
    start = datetime_of(m.history.attempts_for(1)[1].started_at)
    ticks = iter([start, start + 2, start + 12, start + 13, start + 14, start + 16])
    erase = ProgressWriter(directory, "erase", clock=lambda: next(ticks))
    validate = ProgressWriter(directory, "validate", clock=lambda: next(ticks))
    erase.write("start")
    erase.write("train", step=5, total=10, loss=0.5, lr=1e-3, grad_norm=0.3)
    erase.write("end", ok=True)
    validate.write("start")
    validate.write("candidate", images=8, images_total=8, images_per_s=4.0)
    validate.write("end", ok=True)
    (directory / "placement.json").write_text(_json.dumps({"erase": {"seconds": 12.5, "error": "",
                                                                     "placement": {"host": "gpu-7"}}}))
    text = render_report(campaign)
    timeline = text[text.index("<h2>Timeline</h2>"):text.index("<h2>Before / after")]
    assert timeline.count('<span class="erase"') == 1 and timeline.count('<span class="validate"') == 1
    assert 'title="erase 12s on gpu-7"' in timeline and 'title="validate 3s"' in timeline
    assert timeline.count("<details>") == 4                                  # every judged attempt
    assert "<summary>1 failed of 1 checks: forgetting 0.40 &lt; 0.90</summary>" in timeline
    assert "erase: worker lost" in timeline and "<th>reasons</th>" not in timeline   # no narrow reasons column


def test_an_attempts_training_curves_sit_next_to_its_grid(campaign):
    from erasecore.phase_progress import ProgressWriter

    progress = ProgressWriter(campaign / "steps" / "1-star" / "attempt-2", "erase")
    for step in range(1, 11):
        progress.write("train", step=step, total=10, loss=1.0 / step, lr=1e-3, grad_norm=0.1 * step)
    text = render_report(campaign)
    section = text[text.index("<h2>Before / after grids and training curves</h2>"):text.index("<h2>Audit log</h2>")]
    (row,) = [part for part in section.split("<div class=attempt>")[1:] if "training curves" in part]
    assert "step 1 attempt 2: star" in row and "training curves (10 logged steps of 10)" in row
    assert len(images(row)) == 2 and all(p.startswith(PNG_MAGIC) for p in images(row))   # grid + curves


def datetime_of(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
