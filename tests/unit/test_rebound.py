"""The rebound alarm: an earlier concept drawn again on a later gate, against its accuracy when committed."""
from __future__ import annotations

from pathlib import Path

import pytest

from erasecore.contracts import Estimate
from erasecore.errors import ConfigError
from orchestrator.manifest import Manifest
from orchestrator.rebound import campaign_rebounds, committed_accuracy, rebounds
from orchestrator.spec import load_spec, spec_hash

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded_toy"


def acc(value: float, n: int = 10) -> Estimate:
    return Estimate(value, max(0.0, value - 0.2), min(1.0, value + 0.2), n)


def test_an_earlier_concept_climbing_past_the_threshold_fires():
    (alarm,) = rebounds({"star": 0.02, "square": 0.0}, {"star": acc(0.3), "square": acc(0.1)}, 3, 0.15)
    assert (alarm.concept, alarm.step, alarm.at_commit, alarm.now) == ("star", 3, 0.02, 0.3)
    assert alarm.climb == pytest.approx(0.28)
    assert "star drawn 0.30 at step 3, 0.02 when committed (+0.28)" in alarm.text()


def test_no_alarm_at_or_under_the_threshold_for_unmeasured_or_never_committed_concepts():
    assert rebounds({"star": 0.05}, {"star": acc(0.2)}, 2, 0.15) == []          # +0.15 is not more than 0.15
    assert rebounds({"star": 0.05}, {"star": acc(0.9, n=0)}, 2, 0.15) == []     # no image measured
    assert rebounds({}, {"star": acc(0.9)}, 2, 0.15) == []                      # star was never committed
    assert rebounds({"star": 0.5}, {"star": acc(0.1)}, 2, 0.0) == []            # fell further: no rebound


def test_the_recorded_campaign_rebounds_only_under_a_tight_threshold():
    history = Manifest.open(RECORDED).history
    assert committed_accuracy(history) == pytest.approx({"star": 0.0217, "square": 0.0}, abs=1e-4)
    assert campaign_rebounds(history, 0.15) == []
    (alarm,) = campaign_rebounds(history, 0.05)      # round's second attempt drew star once in 10
    assert (alarm.concept, alarm.step, alarm.now) == ("star", 3, 0.1)


def test_the_threshold_is_a_spec_option_that_leaves_the_spec_hash_alone():
    default = load_spec(None, ["name=toy", "concepts=[star]"])
    tight = load_spec(None, ["name=toy", "concepts=[star]", "alarms.rebound=0.05"])
    assert (default.alarms.rebound, tight.alarms.rebound) == (0.15, 0.05)
    assert spec_hash(default) == spec_hash(tight)   # an alarm changes no result: resuming with another is allowed
    with pytest.raises(ConfigError, match="alarms.rebound must be between 0 and 1"):
        load_spec(None, ["name=toy", "concepts=[star]", "alarms.rebound=2"])


def test_the_progress_lines_print_an_alarm_line_after_the_gate(tmp_path):
    import shutil

    from orchestrator.campaign import RunAttempt
    from orchestrator.gate import GateDecision
    from orchestrator.progress import ProgressLines

    root = tmp_path / "toy"
    shutil.copytree(RECORDED, root)
    m = Manifest.open(root)
    spec = load_spec(str(root / "spec.yaml"), [f"storage_path={root}", "alarms.rebound=0.05"])
    lines: list[str] = []
    progress = ProgressLines(spec, m, lines.append, now=lambda: 0.0)
    report = next(a.report for a in m.history.attempts if (a.step, a.attempt) == (3, 2))
    a = RunAttempt(3, "round", 2, "esd-x", {}, ("star", "square"), ())
    progress.attempt_finished(a, (), GateDecision("reject", ("forgetting 0.5 < 0.9",), ("forgetting",)), report, None)
    assert "alarm  rebound: star drawn 0.10 at step 3, 0.02 when committed (+0.08)" in lines[-1]
    assert "gate" in lines[-2]
