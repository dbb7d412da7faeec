"""W&B logs the campaign views per gate: drift per layer group, capability, and the rebound alarm."""
from __future__ import annotations

import dataclasses

import pytest

from erasecore.contracts import Estimate
from orchestrator.outputs.tracking import ENV_DIRS, Tracker, view_metrics
from tests.fixtures.wandb_records import history, run_file
from tests.unit.test_report_views import views
from tests.unit.test_tracking import ACCEPT, delta, report, run_dirs


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Offline W&B writing under the campaign directory only (as tests/unit/test_tracking.py's)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ENV_DIRS:
        monkeypatch.setenv(var, "unused")
    (tmp_path / "home").mkdir()
    return tmp_path / "campaign"


def test_view_metrics_are_flat_keys_of_drift_and_capability():
    keys = view_metrics(views(report(), 0.2, 0.9, 0.0))
    assert keys == {"param_drift/other": 0.0, "param_drift/other_relative": 0.0, "param_drift/text_kv": 2.0,
                    "param_drift/text_kv_relative": 0.2, "capability/score": 0.9, "capability/circle": 1.0,
                    "capability/star": 0.0}
    assert view_metrics(report()) == {}   # a gate without views (older workers) logs none


def test_an_offline_run_logs_drift_capability_and_a_rebound_after_the_commit(offline):
    tracker = Tracker("toy", offline, mode="offline", rebound=0.15)
    ref = delta(offline)
    tracker.attempt_started(1, "star", 1, "uce", {})
    tracker.attempt_finished(views(report(), 0.2, 1.0, 0.0), ACCEPT, candidate=ref)
    tracker.committed(1, "star", ref.path, ref.sha256)             # star's accuracy at commit: 0.03
    later = dataclasses.replace(report(), concept="square", cumulative={"star": Estimate(0.3, 0.1, 0.5, 10)})
    tracker.attempt_started(2, "square", 1, "uce", {})
    tracker.attempt_finished(views(later, 0.5, 0.93, 0.5), ACCEPT)
    tracker.close()
    first, second = [row for d in run_dirs(offline) for row in history(run_file(d)) if "gate/forgetting" in row]
    assert (first["param_drift/text_kv_relative"], first["capability/score"], first["alarm/rebounds"]) == (0.2, 1.0, 0.0)
    assert (second["param_drift/text_kv_relative"], second["capability/score"]) == (0.5, 0.93)
    assert second["alarm/rebounds"] == 1.0 and abs(second["rebound/star"] - 0.27) < 1e-9
