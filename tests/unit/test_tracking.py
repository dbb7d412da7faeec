"""W&B tracking: a real offline run under storage_path, stable ids that resume, and a silent disabled mode."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from erasecore.contracts import DeltaRef, Estimate, GateReport, JudgeIdentity
from orchestrator.gate import GateDecision, error_decision
from orchestrator.spec import load_spec
from orchestrator.outputs.tracking import ENV_DIRS, ImagePair, Tracker, gate_metrics, run_id

REPO = Path(__file__).resolve().parents[2]
ACCEPT = GateDecision("commit", ("forgetting 0.97 >= 0.90",))
JUDGE = JudgeIdentity("toyworld", weights={"evaluator.safetensors": "29edc5ea785bd6167e1f19c8844c6d6e8e0cdee6ba0ddb01"
                                                                    "befc585d14a19954"}, libraries={"torch": "2.13.0"})


def report() -> GateReport:
    e = Estimate(0.97, 0.93, 0.99, 96)
    return GateReport(concept="star", forgetting=e, target_acc=Estimate(0.03, 0.01, 0.07, 96), base_target_acc=0.9,
                      evasion={"paraphrase": Estimate(0.1, 0.02, 0.3, 24)}, retain=e,
                      retain_by_distance={"near": e, "far": e}, leakage=Estimate(0.0, 0.0, 0.04, 96), kl=0.05,
                      kl_base_noise=0.02, cumulative={}, images_generated=400, early_stopped=True, seconds=3.0,
                      judges=(JUDGE,))


def delta(tmp_path: Path, name: str = "delta.safetensors") -> DeltaRef:
    path = tmp_path / "steps" / "1-star" / "attempt-1" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really safetensors, W&B does not care")
    return DeltaRef(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def run_dirs(storage: Path) -> list[Path]:
    return sorted((storage / "wandb" / "wandb").glob("offline-run-*"))


def run_ids(storage: Path) -> list[str]:
    """The run id of each offline run directory, in order (from its run-<id>.wandb file)."""
    return [f.name[len("run-"):-len(".wandb")] for d in run_dirs(storage) for f in d.glob("run-*.wandb")]


def records(run_dir: Path) -> bytes:
    """The run's record file (protobuf): keys, names and aliases appear in it as UTF-8."""
    (wandb_file,) = run_dir.glob("run-*.wandb")
    return wandb_file.read_bytes()


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Offline W&B with a HOME of its own, so a file written outside storage_path would show."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ENV_DIRS:   # the tracker sets these; monkeypatch puts the old values back
        monkeypatch.setenv(var, "unused")
    (tmp_path / "home").mkdir()
    return tmp_path / "campaign"


def test_ids_are_stable_distinct_and_valid():
    a = run_id("toy.v2", 1, 1, "erase")
    assert a == run_id("toy.v2", 1, 1, "erase") and len(a) <= 64
    assert len({a, run_id("toy.v2", 1, 2, "erase"), run_id("toy.v2", 1, 1, "validate"), run_id("toy-v2", 1, 1, "erase")}) == 4
    assert all(c.isalnum() or c in "-_" for c in a)


def test_gate_metrics_keep_the_bounds():
    m = gate_metrics(report(), ACCEPT)
    assert m["gate/forgetting"] == 0.97 and m["gate/forgetting_lower"] == 0.93 and m["gate/forgetting_upper"] == 0.99
    assert m["gate/retain_by_distance/near_lower"] == 0.93 and m["gate/evasion/paraphrase"] == 0.1
    assert m["gate/committed"] == 1.0


def test_an_attempt_is_logged_offline_under_storage_path(offline, tmp_path):
    spec = load_spec(str(REPO / "configs/campaigns/toy.yaml"), [f"storage_path={offline}"])
    tracker = Tracker.from_spec(spec)
    ref = delta(offline)
    image = np.zeros((8, 8, 3), np.uint8)
    tracker.attempt_started(1, "star", 1, "uce", {"erase_scale": 1.0})
    tracker.attempt_finished(report(), ACCEPT, images=[ImagePair("target", "a star", image, image + 255)],
                             candidate=ref, phase_seconds={"erase": 1.5})
    tracker.committed(1, "star", ref.path, ref.sha256)
    tracker.close()
    assert run_ids(offline) == [run_id("toy", 1, 1, "erase"), run_id("toy", 1, 1, "validate")]
    erase_dir, validate_dir = run_dirs(offline)
    erase, validate = records(erase_dir), records(validate_dir)
    for key in (b"time/erase_seconds", b"toy-candidates", b"candidate-delta", b"step-1-attempt-1", b"uce"):
        assert key in erase, key
    for key in (b"gate/forgetting_lower", b"gate/retain", b"gate/kl", b"verdict", b"grids",
                b"toy-deltas", b"model-delta", b"concept-star", b"latest", ref.sha256.encode(),
                b"judges", JUDGE.weights["evaluator.safetensors"].encode()):   # the judge, in the run's config
        assert key in validate, key
    assert list((tmp_path / "home").iterdir()) == []   # nothing under ~ (WANDB_DATA_DIR, WANDB_CACHE_DIR)


def test_a_redone_attempt_resumes_its_run_and_a_failed_one_has_no_validate_run(offline):
    first = Tracker("toy", offline, mode="offline")
    first.attempt_started(2, "square", 1, "uce", {})
    first.close()                                     # the driver dies here
    time.sleep(1.1)   # wandb names offline run dirs by the second: two sessions in one second would share one
    again = Tracker("toy", offline, mode="offline")
    again.attempt_started(2, "square", 1, "uce", {})
    assert again._run.id == run_id("toy", 2, 1, "erase")
    again.attempt_finished(None, error_decision("erase: worker died"))
    again.close()
    assert run_ids(offline) == [run_id("toy", 2, 1, "erase")] * 2   # two sessions of one run; sync joins them
    assert b"worker died" in records(run_dirs(offline)[-1])


def test_disabled_mode_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    tracker = Tracker("toy", tmp_path / "c", mode="disabled")
    tracker.attempt_started(1, "star", 1, "uce", {})
    tracker.attempt_finished(report(), ACCEPT)
    tracker.committed(1, "star", "nowhere.safetensors", "0" * 64)
    tracker.close()
    assert not tracker.enabled and not (tmp_path / "c").exists()


def test_wandb_mode_in_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert not Tracker("toy", tmp_path, mode="online").enabled


def test_importing_tracking_does_not_import_wandb():
    code = "import sys, orchestrator.outputs.tracking; print('wandb' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_fine_tune_progress_is_a_curve_per_logged_step_and_validation_progress_lands_in_its_run(offline):
    from erasecore.phase_progress import ProgressRecord
    from tests.fixtures.wandb_records import history, run_file
    from tests.fixtures.wandb_records import records as read_records

    tracker = Tracker("toy", offline, mode="offline")
    tracker.attempt_started(1, "star", 1, "esd-x", {"steps": 30})
    train = [ProgressRecord(t=100.0 + s, phase="erase", stage="train", step=s, total=30, loss=1.0 / s, lr=5e-4,
                            grad_norm=0.1 * s, steps_per_s=2.0, samples_per_s=32.0, peak_mem_mb=600.0)
             for s in (1, 10, 20, 30)]
    tracker.phase_progress("erase", [ProgressRecord(t=99.0, phase="erase", stage="start"), *train[:2]])
    tracker.phase_progress("erase", train[2:])
    tracker.phase_progress("validate", [ProgressRecord(t=140.0, phase="validate", stage="candidate", images=n,
                                                       images_total=16, images_per_s=4.0) for n in (8, 16)])
    tracker.attempt_finished(report(), ACCEPT, phase_seconds={"erase": 40.0, "validate": 5.0})
    tracker.close()

    erase_dir, validate_dir = run_dirs(offline)
    points = [row for row in history(run_file(erase_dir)) if "train/loss" in row]
    assert [(p["train/step"], p["train/loss"], p["train/lr"], p["train/grad_norm"]) for p in points] == \
        [(float(r.step), r.loss, r.lr, r.grad_norm) for r in train]       # one point per logged step
    metrics = {m.metric.name or m.metric.glob_name: m.metric.step_metric for m in read_records(run_file(erase_dir))
               if m.WhichOneof("record_type") == "metric"}
    assert metrics.get("train/*") == "train/step"                        # the curves' x-axis is the step
    shown = [row for row in history(run_file(validate_dir)) if "validate/candidate_images" in row]
    assert [(row["validate/seconds"], row["validate/candidate_images"]) for row in shown] == [(0.0, 8.0), (0.0, 16.0)]
