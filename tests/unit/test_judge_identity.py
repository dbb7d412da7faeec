"""Each gate names its judge (GateReport.judges): kept by the journal's codec, absent from older journals that
still load, and shown in the HTML report, one row per distinct judge."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from erasecore.codec import from_dict, from_json, to_dict, to_json
from erasecore.contracts import GateReport, JudgeIdentity
from orchestrator.manifest import Manifest
from orchestrator.outputs.report import render_report
from orchestrator.outputs.tracking import judge_config
from orchestrator.spec import load_spec
from tests.unit.test_report import ACCEPT, attempt, est, report

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded_toy"
SHA = "29edc5ea785bd6167e1f19c8844c6d6e8e0cdee6ba0ddb01befc585d14a19954"
TOY = JudgeIdentity("toyworld", "jobs/toyworld/weights/evaluator", {"evaluator.safetensors": SHA},
                    ("shape:star", "colour:red"), {}, "argmax of each head", {"torch": "2.13.0+cpu"})
NUDENET = JudgeIdentity("nudenet", "the nudenet wheel", {"320n.onnx": "c15d" + "0" * 60}, ("FEMALE_BREAST_EXPOSED",),
                        {"nudity": 0.6, "person": 0.6}, "any class >= 0.6", {"nudenet": "3.4.2"})


def judged(concept: str, *judges: JudgeIdentity) -> GateReport:
    return dataclasses.replace(report(concept, est(0.97, 0.93, 0.99)), judges=judges)


def test_the_codec_keeps_a_reports_judges():
    r = judged("star", TOY, NUDENET)
    back = from_json(GateReport, to_json(r))
    assert back == r and back.judges[1].thresholds == {"nudity": 0.6, "person": 0.6}
    assert isinstance(back.judges[0].classes, tuple)


def test_a_report_written_before_judges_existed_loads_with_none():
    data = to_dict(judged("star", TOY))
    del data["judges"]
    assert from_dict(GateReport, data).judges == ()


def test_a_recorded_journal_from_before_judges_loads_and_reports_them_as_not_recorded():
    assert '"judges"' not in (RECORDED / "manifest.json").read_text()   # truly written before the field
    reports = [a.report for a in Manifest.open(RECORDED).history.attempts if a.report is not None]
    assert reports and all(r.judges == () for r in reports)
    section = _judges_section(render_report(RECORDED))
    assert "not recorded" in section and "1: star, 2: square, 3: round" in section


def test_the_report_shows_one_row_per_distinct_judge_with_the_steps_it_judged(tmp_path):
    root = tmp_path / "toy"
    m = Manifest.create(root, load_spec(None, ["name=toy", "concepts=[star,square,round]", f"storage_path={root}"]))
    other = dataclasses.replace(TOY, libraries={"torch": "2.14.0"})   # the same weights under another torch
    attempt(m, 1, "star", 1, ACCEPT, judged("star", TOY))
    attempt(m, 2, "square", 1, ACCEPT, judged("square", TOY))
    attempt(m, 3, "round", 1, ACCEPT, judged("round", other))
    section = _judges_section(render_report(root))
    assert section.count(f"evaluator.safetensors {SHA}") == 2
    assert "<td>1: star, 2: square</td>" in section and "<td>3: round</td>" in section
    assert "torch 2.13.0+cpu" in section and "torch 2.14.0" in section and "2: shape:star, colour:red" in section
    assert "not recorded" not in section


def test_the_validate_runs_config_names_the_judges():
    config = judge_config(judged("star", NUDENET))
    expected = dataclasses.asdict(NUDENET) | {"classes": ["FEMALE_BREAST_EXPOSED"]}   # as W&B stores it: JSON
    assert json.loads(json.dumps(config)) == {"judges": [expected]}
    assert judge_config(judged("star")) == {}


def _judges_section(html: str) -> str:
    return html.split("<section id=judges>", 1)[1].split("</section>", 1)[0]


def test_a_calibrated_judges_table_is_kept_by_the_codec_and_shown_in_the_report(tmp_path):
    row = {"threshold": 0.4231, "false_positive_target": 0.05, "fit_images": 60.0, "check_hit": 0.93,
           "check_false_positive": 0.03, "check_own": 30.0, "check_other": 40.0}
    clip = JudgeIdentity("clip", "tiny-clip", {"model.safetensors": "ab" * 32}, ("star",), {"star": 0.4231},
                         "fitted to a false-positive target", {}, calibration={"star": row})
    assert from_json(GateReport, to_json(judged("star", clip))).judges[0].calibration == {"star": row}
    root = tmp_path / "toy"
    m = Manifest.create(root, load_spec(None, ["name=toy", "concepts=[star]", f"storage_path={root}"]))
    attempt(m, 1, "star", 1, ACCEPT, judged("star", clip))
    section = _judges_section(render_report(root))
    assert "<td>0.4231</td>" in section and "0.93 of 30" in section and "0.03 of 40" in section
    assert "checked on the other half" in section
