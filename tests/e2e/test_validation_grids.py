"""Before/after grids from a real gate on the toy model: the validator draws them, the report inlines them,
W&B tracking turns them into a table (one row per prompt).

One campaign step is run as the runner runs it, without Ray: spec -> next_action -> step_request ->
run_erase (UCE on star) -> run_validation -> decide -> manifest. A second validation of the same
candidate with every tensor zeroed must give base and erased cells that are the same pixels.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jobs.deltas import delta as deltas
from jobs.step import run_erase, run_validation
from jobs.toyworld.world import load_world
from jobs.validation import grid_draft, grids
from jobs.toyworld.suite import build_suite
from orchestrator.campaign import next_action, step_request
from orchestrator.preflight import preflight
from orchestrator.gate import decide
from orchestrator.manifest import Manifest
from orchestrator.outputs.report import render_report
from tests.fixtures.reports import timeless
from orchestrator.spec import load_spec
from orchestrator.outputs.tracking import ENV_DIRS, Tracker

pytestmark = pytest.mark.e2e

SMALL = ["validation.seeds=1", "validation.max_prompts_per_group=4", "validation.inference_steps=10",
         "validation.early_stop=false"]


@dataclasses.dataclass
class Gate:
    root: Path
    spec: object
    request: object
    candidate: object
    report: object
    decision: object
    lines: list[str]


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> Gate:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("grids") / "toy"
    spec = load_spec(None, ["name=toy", "concepts=[star]", f"storage_path={root}", "tracking.mode=offline", *SMALL])
    m = Manifest.create(root, spec)
    action = next_action(spec, m.history)
    request = step_request(action, preflight(spec))
    m.record_start(action.step, action.concept, action.attempt, action.method, action.hparams)
    lines: list[str] = []
    candidate = run_erase(request, log=lines.append)
    report = run_validation(request, candidate, log=lines.append)
    decision = decide(report, spec.gate)
    m.record_result(action.step, action.attempt, decision, report, candidate)
    return Gate(root, spec, request, candidate, report, decision, lines)


def cells(directory: Path) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    return [(r.group, r.prompt, np.asarray(r.base, np.int16), np.asarray(r.erased, np.int16))
            for r in grids.read_grid(directory)]


def test_the_validator_writes_a_labelled_grid_in_the_attempt_directory(gate):
    out = Path(gate.request.out_dir)
    assert out == gate.root / "steps" / "1-star" / "attempt-1"   # where the report and the tracker look
    suite = build_suite(load_world(), "star", (), gate.spec.validation.max_prompts_per_group)
    expected = [(suite.items[i].group, suite.items[i].prompt.text) for i, _ in grids.pick(suite)]
    meta = json.loads((out / grids.GRID_JSON).read_text())
    assert [(r["group"], r["prompt"]) for r in meta["rows"]] == expected
    assert {g for g, _ in expected} == set(suite.groups()) and len(expected) == 3 * len(suite.groups())
    with Image.open(out / grids.GRID_PNG) as img:
        assert img.format == "PNG"
        assert img.height == grids.HEADER + len(expected) * (32 * 4 + grids.PAD) + grids.PAD
        assert img.width > 2 * 32 * 4
    rows = cells(out)
    assert all(b.shape == e.shape == (128, 128, 3) for _, _, b, e in rows)
    target = [np.abs(b - e).mean() for g, _, b, e in rows if g == "target"]
    assert min(target) > 10, target              # UCE redrew every target prompt
    assert any(line.startswith("grid: ") for line in gate.lines), gate.lines


def test_a_zero_candidate_gives_identical_cells_from_the_cached_base_images(gate, tmp_path):
    tensors, meta = deltas.load_delta(gate.candidate.path, gate.candidate.sha256)
    zero = deltas.save_delta({k: torch.zeros_like(v) for k, v in tensors.items()}, meta, tmp_path / "zero.safetensors")
    cache = Path(gate.request.cache_dir)
    caches = sorted(cache.glob("base-*.json")) + sorted(cache.glob("grid-*.npy"))
    assert len(caches) == 3   # the base scores, the capability bench's base scores, the base half of the grid
    stamps = [c.stat().st_mtime_ns for c in caches]
    request = dataclasses.replace(gate.request, out_dir=str(tmp_path / "zero"))
    report = run_validation(request, zero, log=lambda *a: None)
    after = sorted(cache.glob("base-*.json")) + sorted(cache.glob("grid-*.npy"))
    assert after == caches and [c.stat().st_mtime_ns for c in after] == stamps   # both came from the cache
    assert report.target_acc.value == pytest.approx(report.base_target_acc)
    rows = cells(tmp_path / "zero")
    assert rows and all(np.array_equal(b, e) for _, _, b, e in rows)


def test_a_grid_that_cannot_be_drawn_costs_one_log_line_not_the_gate(gate, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no ink")

    monkeypatch.setattr(grid_draft, "write_grid", broken)
    lines: list[str] = []
    request = dataclasses.replace(gate.request, out_dir=str(tmp_path / "broken"))
    report = run_validation(request, gate.candidate, log=lines.append)
    assert timeless(report) == timeless(gate.report)   # same gate, deterministic
    assert [line for line in lines if line.startswith("grid:")] == ["grid: not written (RuntimeError: no ink)"]
    assert not (tmp_path / "broken" / grids.GRID_PNG).exists()


def test_the_campaign_report_inlines_the_grid(gate):
    text = render_report(gate.root)
    grid = (Path(gate.request.out_dir) / grids.GRID_PNG).read_bytes()
    inlined = [base64.b64decode(s.split(",", 1)[1]) for s in re.findall(r'<img [^>]*src="([^"]+)"', text)]
    assert grid in inlined
    assert "step 1 attempt 1: star" in text


def test_tracking_logs_one_table_row_per_grid_row(gate, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for var in ENV_DIRS:
        monkeypatch.setenv(var, "unused")
    tracker = Tracker.from_spec(gate.spec, gate.root)
    tracker.attempt_started(1, "star", 1, "uce", {})
    tracker.attempt_finished(gate.report, gate.decision, candidate=gate.candidate)
    tracker.close()
    # The run's table (rows with image files) is staged in a run-table artifact under WANDB_DATA_DIR;
    # files/media/table holds only a preview whose image cells read "Image". wandb stages it more than once.
    tables = [t for t in map(json_or_none, (gate.root / "wandb").rglob("*")) if t and t.get("_type") == "table"]
    assert tables and all(t == tables[0] for t in tables)
    table = tables[0]
    rows = json.loads((Path(gate.request.out_dir) / grids.GRID_JSON).read_text())["rows"]
    assert table["columns"] == ["group", "prompt", "base", "erased"]
    assert [d[:2] for d in table["data"]] == [[r["group"], r["prompt"]] for r in rows]
    assert all(c["_type"] == "image-file" and c["width"] == c["height"] == 128 for d in table["data"] for c in d[2:])
    assert all(d[2]["sha256"] != d[3]["sha256"] for d in table["data"] if d[0] == "target")
    assert list((tmp_path / "home").iterdir()) == []


def json_or_none(path: Path):
    if not path.is_file() or path.stat().st_size > 2**20:
        return None
    try:
        return json.loads(path.read_bytes())
    except ValueError:
        return None


def test_the_measure_phase_journals_drift_and_capability_and_the_report_shows_them_with_the_maps(gate):
    out = Path(gate.request.out_dir)
    written = json.loads((out / "gate_report.json").read_text())
    assert written["param_drift"]["text_kv"]["norm"] > 0 and written["param_drift"]["feed_forward"]["norm"] == 0.0   # UCE: K/V only
    journaled = Manifest.open(gate.root).history.attempts[0].report
    assert journaled.param_drift == gate.report.param_drift and journaled.capability == gate.report.capability
    assert gate.report.capability.erased[0] == "star" and gate.report.capability.score > 0.8
    assert (out / "attention.png").read_bytes().startswith(b"\x89PNG")
    text = render_report(gate.root)
    for shown in ("Parameter drift: norm of the summed", "Capability across the campaign", "<section id=cross-attention-maps>",
                  "<section id=rebound-alarms>"):
        assert shown in text, shown
    assert any(line.startswith("views: drift 5 groups, capability") for line in gate.lines), gate.lines
