"""The report's campaign views: drift per layer group, the capability curve, rebound alarms, attention maps."""
from __future__ import annotations

import dataclasses
import json
import re

from erasecore.contracts import Capability, ParamDrift
from orchestrator.manifest import Manifest
from orchestrator.outputs.report import ATTENTION_JSON, ATTENTION_PNG, PNG_MAGIC, render_report
from orchestrator.spec import load_spec
from tests.unit.test_report import ACCEPT, attempt, est, images, png, report


def views(rep, drift: float, score: float, star: float):
    """A report with the fields the measure phase adds."""
    cap = Capability("toy-objects-v1", score, {"star": star, "circle": 1.0}, {"star": 1.0, "circle": 1.0},
                     ("star",), 30, 1.2)
    return dataclasses.replace(rep, param_drift={"text_kv": ParamDrift(10 * drift, drift), "other": ParamDrift(0.0, 0.0)},
                               capability=cap)


def campaign_with_views(tmp_path, rebound: float = 0.15):
    root = tmp_path / "toy"
    m = Manifest.create(root, load_spec(None, ["name=toy", "concepts=[star,square]", f"storage_path={root}",
                                               f"alarms.rebound={rebound}"]))
    attempt(m, 1, "star", 1, ACCEPT, views(report("star", est(0.97, 0.93, 0.99)), 0.2, 1.0, 0.0))
    attempt(m, 2, "square", 1, ACCEPT, views(report("square", est(0.95, 0.9, 0.98), {"star": est(0.3, 0.1, 0.5, 10)}),
                                             0.5, 0.93, 0.5))
    star, square = m.attempt_path(1, "star", 1), m.attempt_path(2, "square", 1)
    (star / ATTENTION_PNG).write_bytes(png(40, 20))
    (star / ATTENTION_JSON).write_text(json.dumps({"prompt": "a red star and a green triangle", "seed": 0,
                                                   "tokens": ["star", "red"], "skipped": ""}))
    (square / ATTENTION_JSON).write_text(json.dumps({"prompt": "", "tokens": [], "skipped": "SD3Transformer2DModel "
                                                     "has no cross-attention"}))
    return root


def test_the_report_plots_drift_and_capability_and_shows_the_attention_maps(tmp_path):
    text = render_report(campaign_with_views(tmp_path))
    for caption in ("Parameter drift: norm of the summed committed deltas", "Capability across the campaign "
                    "(bench toy-objects-v1", "Cross-attention maps"):
        assert caption in text, caption
    attention = text[text.index("<section id=cross-attention-maps>"):]
    attention = attention[:attention.index("</section>")]
    (shown,) = images(attention)
    assert shown == png(40, 20)                                   # the attempt's attention.png, inlined
    assert "&quot;a red star and a green triangle&quot; seed 0: attention of &quot;star&quot;, &quot;red&quot;" \
        in attention
    assert "step 2 attempt 1: square: no attention maps (SD3Transformer2DModel has no cross-attention)" in attention
    plots = text[text.index("<section id=plots>"):text.index("</section>", text.index("<section id=plots>"))]
    assert len(images(plots)) == 5 and all(p.startswith(PNG_MAGIC) for p in images(plots))  # 3 gate plots + 2 views


def test_the_rebound_alarm_section_names_the_climb_and_says_none_under_the_threshold(tmp_path):
    text = render_report(campaign_with_views(tmp_path / "a"))
    section = re.search(r"<section id=rebound-alarms>.*?</section>", text, re.S).group(0)
    assert "<td>2</td><td>star</td><td>0.03</td><td>0.30</td><td>+0.27</td>" in section
    quiet = render_report(campaign_with_views(tmp_path / "b", rebound=0.5))
    assert "<p>None.</p>" in re.search(r"<section id=rebound-alarms>.*?</section>", quiet, re.S).group(0)


def test_reports_without_views_have_no_view_plots_or_attention_section(tmp_path):
    root = tmp_path / "old"
    m = Manifest.create(root, load_spec(None, ["name=old", "concepts=[star]", f"storage_path={root}"]))
    attempt(m, 1, "star", 1, ACCEPT, report("star", est(0.97, 0.93, 0.99)))
    text = render_report(root)
    assert "Parameter drift" not in text and "Capability across" not in text
    assert "<section id=cross-attention-maps>" not in text
