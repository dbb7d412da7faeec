"""W&B tracking of a campaign, from the driver only: a run per attempt and phase, an artifact version per commit.

Layout (one W&B project per spec.tracking.project):
- group = campaign name; one run per (step, attempt, phase), job_type "erase" or "validate"
  (or "commit" when a commit is published after a driver restart), with a stable id from
  (campaign, step, attempt, phase) and resume="allow": a redone attempt resumes its run.
- while the erase phase runs, its progress records become the erase run's training curves:
  train/loss, train/lr, train/grad_norm, train/steps_per_s, train/samples_per_s, train/peak_mem_mb,
  one point per record, with train/step (optimizer steps done) as their x-axis (define_metric).
  The validation's records (validate/<stage>_images, validate/images_per_s, validate/peak_mem_mb
  over validate/seconds) go to the validate run, which opens when the gate has decided: they are
  held until then (the terminal and `erase watch` show them live).
- the erase run logs the candidate delta to "<campaign>-candidates" (type "candidate-delta",
  by reference: the file stays on storage_path); the validate run logs the gate metrics,
  the decision, the campaign views (param_drift/<group>[_relative], capability/score, capability/<entry>,
  rebound/<concept> and alarm/rebounds: orchestrator/rebound.py against the accuracies at commit this
  tracker saw) and the image grids (wandb.Table "grids", one row per prompt: group, prompt, base,
  erased, read from the grid.png/grid.json the validator wrote in the attempt directory),
  and, online, use_artifact(candidate) for
  lineage (wandb refuses use_artifact offline: there the candidate's name and sha256 go in
  the validate run's config instead). Its config also names who judged the gate: "judges", each
  judge's identity (GateReport.judges: weights' sha256, classes, thresholds, library versions).
- the judge self-check before the first erase is a run of its own (job_type "judge-check", step 0): the
  table "judge_check" (per concept: hit and false-positive rates with their intervals, verdict, reason),
  summary judge_check/refused, and the judge's identity in its config.
- each commit is a version of "<campaign>-deltas" (type "model-delta", the file uploaded)
  with aliases step-<k>, concept-<name>, latest.

Mode: spec.tracking.mode (offline by default), unless WANDB_MODE is set (an operator's override:
CI sets disabled). Offline and online keep every file under <storage_path>/wandb (WANDB_DIR,
WANDB_DATA_DIR, WANDB_CACHE_DIR point there); `wandb sync <storage_path>/wandb/wandb/offline-run-*`
uploads later. Disabled never imports wandb. Only the driver may hold a Tracker: workers return
values, the driver logs them, so exactly one process writes each run.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from erasecore.contracts import DeltaRef, Estimate, GateReport
from erasecore.judge_check import JudgeCheck
from erasecore.phase_progress import ProgressRecord
from orchestrator.campaign import CommitAttempt, RunAttempt
from orchestrator.gate import GateDecision
from orchestrator.loop import Callbacks, PhaseOutput
from orchestrator.manifest import attempt_dir, slug
from orchestrator.rebound import rebounds
from orchestrator.spec import TRACKING_MODES, CampaignSpec, spec_hash

ENV_DIRS = ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR")


@dataclass(frozen=True)
class ImagePair:
    """One prompt drawn by the base model and by the candidate (HxWx3 uint8 arrays or PIL images)."""

    group: str        # target | evasion | retain | leakage
    prompt: str
    base: Any
    erased: Any


def run_id(campaign: str, step: int, attempt: int, phase: str) -> str:
    """A W&B run id stable across restarts: readable prefix, hash of the exact identity."""
    digest = hashlib.sha256(f"{campaign}|{step}|{attempt}|{phase}".encode()).hexdigest()[:8]
    return f"{_name(campaign)[:32]}-s{step}-a{attempt}-{phase}-{digest}"


def gate_metrics(report: GateReport, decision: GateDecision) -> dict[str, float]:
    """The gate's inputs and verdict as flat W&B keys: gate/<metric>[_lower|_upper], gate/<group>/<key>."""
    out: dict[str, float] = {}

    def estimate(key: str, e: Estimate) -> None:
        out.update({key: e.value, f"{key}_lower": e.lower, f"{key}_upper": e.upper, f"{key}_n": float(e.n)})

    for key in ("forgetting", "target_acc", "retain", "leakage", "drift"):
        estimate(f"gate/{key}", getattr(report, key))
    for group in ("evasion", "retain_by_distance", "cumulative"):
        for key, e in sorted(getattr(report, group).items()):
            estimate(f"gate/{group}/{key}", e)
    out.update({"gate/base_target_acc": report.base_target_acc, "gate/kl": report.kl,
                "gate/kl_base_noise": report.kl_base_noise, "gate/images_generated": float(report.images_generated),
                "gate/validate_seconds": report.seconds, "gate/committed": float(decision.committed),
                "gate/extended_checks": float(len(report.extended))})
    out.update(view_metrics(report))
    return out


def judge_config(report: GateReport) -> dict[str, Any]:
    """Who judged the gate, for the validate run's config: each judge's name, weights' sha256, classes,
    thresholds, rule and library versions (none in a report from a journal that predates them)."""
    return {"judges": [asdict(j) for j in report.judges]} if report.judges else {}


def view_metrics(report: GateReport) -> dict[str, float]:
    """The campaign views of a gate: param_drift/<group>[_relative], capability/score and capability/<entry>."""
    out: dict[str, float] = {}
    for group, d in sorted(report.param_drift.items()):
        out.update({f"param_drift/{group}": d.norm, f"param_drift/{group}_relative": d.relative})
    if report.capability is not None:
        out["capability/score"] = report.capability.score
        out.update({f"capability/{_key(e)}": v for e, v in sorted(report.capability.drawn.items())})
    return out


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")


TRAIN_KEYS = ("loss", "lr", "grad_norm", "steps_per_s", "samples_per_s", "peak_mem_mb")


def train_point(record: ProgressRecord) -> dict[str, float]:
    """A fine-tune's progress record as one W&B point: train/<key>, x-axis train/step."""
    point = {"train/step": float(record.step or 0)}
    point.update({f"train/{k}": float(getattr(record, k)) for k in TRAIN_KEYS if getattr(record, k) is not None})
    return point


def validate_point(record: ProgressRecord, t0: float) -> dict[str, float]:
    """A validation's progress record as one W&B point over seconds since the phase's first record."""
    point = {"validate/seconds": round(record.t - t0, 3), f"validate/{record.stage}_images": float(record.images or 0)}
    if record.images_per_s is not None:
        point["validate/images_per_s"] = float(record.images_per_s)
    if record.peak_mem_mb is not None:
        point["validate/peak_mem_mb"] = float(record.peak_mem_mb)
    return point


class Tracker:
    """W&B for one campaign. Build with from_spec(); call the hooks in the order the runner meets them.

    attempt_started -> attempt_finished -> [committed] for each attempt; close() at the end.
    Every hook is a no-op in disabled mode.
    """

    def __init__(self, campaign: str, storage_path: str | Path, mode: str = "offline",
                 project: str = "concept-erasure", config: Mapping[str, Any] | None = None,
                 rebound: float = 0.15):
        mode = os.environ.get("WANDB_MODE") or mode
        if mode not in TRACKING_MODES:
            raise ValueError(f"tracking mode must be one of {', '.join(TRACKING_MODES)}, got {mode!r}")
        self.campaign, self.mode, self.project = campaign, mode, project
        self.root = Path(storage_path)
        self.dir = self.root / "wandb"
        self.config = dict(config or {})
        self._run = None                       # the one open run
        self._open: tuple[int, int, str] | None = None
        self._attempt: tuple[int, str, int] | None = None   # (step, concept, attempt) of the current attempt
        self._validation: list[ProgressRecord] = []          # the validation's records, until its run opens
        self._wandb = None
        self.rebound = rebound                 # spec alarms.rebound
        self._at_commit: dict[str, float] = {}   # concept -> target accuracy on the gate that committed it
        self._last: GateReport | None = None
        if mode != "disabled":
            self.dir.mkdir(parents=True, exist_ok=True)
            for var in ENV_DIRS:   # wandb reads these at init; without them it writes under ~
                os.environ[var] = str(self.dir)
            import wandb

            self._wandb = wandb

    @classmethod
    def from_spec(cls, spec: CampaignSpec, storage_path: str | Path | None = None) -> Tracker:
        """A Tracker for a campaign spec; storage_path defaults to spec.storage_path."""
        config = {"campaign": spec.name, "model": spec.model, "method": spec.method, "spec_hash": spec_hash(spec),
                  "concepts": list(spec.concepts), "gate": asdict(spec.gate), "retry": asdict(spec.retry)}
        return cls(spec.name, storage_path or spec.storage_path, spec.tracking.mode, spec.tracking.project, config,
                   spec.alarms.rebound)

    @property
    def enabled(self) -> bool:
        return self._wandb is not None

    # -- the hooks the loop calls (through TrackingCallbacks) --

    def attempt_started(self, step: int, concept: str, attempt: int, method: str = "",
                        hparams: Mapping[str, Any] | None = None) -> None:
        """Before the erase phase: opens (or, for a redone attempt, resumes) the attempt's erase run."""
        self._attempt = (step, concept, attempt)
        self._validation = []
        if self.enabled:
            self._start(step, attempt, "erase", {"concept": concept, "method": method, "hparams": dict(hparams or {})})

    def phase_progress(self, phase: str, records: Sequence[ProgressRecord]) -> None:
        """Progress records of the running phase: the erase run's training curves now; the validation's later."""
        if not self.enabled or self._attempt is None:
            return
        step, _, attempt = self._attempt
        if phase == "validate":
            self._validation += [r for r in records if r.stage in ("baseline", "candidate")]
            return
        train = [r for r in records if r.stage == "train" and r.step is not None]
        if train:
            run = self._ensure(step, attempt, "erase")
            for record in train:
                run.log(train_point(record))

    def attempt_finished(self, report: GateReport | None, decision: GateDecision,
                         images: Sequence[ImagePair] = (), candidate: DeltaRef | None = None,
                         phase_seconds: Mapping[str, float] | None = None) -> None:
        """After the gate: closes the erase run; the validate run logs metrics, decision and image grids.

        report None (a phase failed) logs the decision in the erase run and opens no validate run.
        The validate run stays open until committed() or the next attempt, so a commit is logged by it.
        No images given: the pairs of the grid the validator wrote in the attempt directory, if any.
        """
        if not self.enabled or self._attempt is None:
            return
        step, concept, attempt = self._attempt
        run = self._ensure(step, attempt, "erase")
        candidate_artifact = self._log_candidate(run, step, attempt, candidate) if candidate else None
        if phase_seconds:
            run.log({f"time/{k}_seconds": float(v) for k, v in phase_seconds.items()})
        if report is None:
            self._summarise(run, decision)
            self._finish()
            return
        self._finish()
        lineage = {"candidate": f"{_name(self.campaign)}-candidates:step-{step}-attempt-{attempt}",
                   "candidate_sha256": candidate.sha256 if candidate else ""}
        run = self._start(step, attempt, "validate", {"concept": concept, **lineage, **judge_config(report)})
        if candidate_artifact is not None and self.mode == "online":
            candidate_artifact.wait()   # its version must exist before another run can use it
            run.use_artifact(candidate_artifact)
        validation, self._validation = self._validation, []
        for record in validation:
            run.log(validate_point(record, validation[0].t))
        data: dict[str, Any] = dict(gate_metrics(report, decision))
        self._last = report
        alarms = rebounds(self._at_commit, report.cumulative, step, self.rebound)
        data.update({f"rebound/{_key(a.concept)}": a.climb for a in alarms})
        data["alarm/rebounds"] = float(len(alarms))
        images = images or self._grid_pairs(step, concept, attempt)
        if images:
            data["grids"] = self._table(images)
        run.log(data)
        self._summarise(run, decision)

    def judge_checked(self, check: JudgeCheck) -> None:
        """The judge self-check (before the first erase): one run of its own, the per-concept table and the
        judge's identity in its config."""
        if not self.enabled:
            return
        run = self._start(0, 0, "judge-check", {"judges": [asdict(check.judge)], "judge_check_seeds": check.seeds})
        columns = ["concept", "hit", "hit_lower", "hit_upper", "false_positive", "fp_lower", "fp_upper", "n_hit",
                   "n_false_positive", "verdict", "reason"]
        rows = [[c.rates.concept, c.rates.hit.value, c.rates.hit.lower, c.rates.hit.upper,
                 c.rates.false_positive.value, c.rates.false_positive.lower, c.rates.false_positive.upper,
                 c.rates.hit.n, c.rates.false_positive.n, c.verdict, c.reason] for c in check.concepts]
        run.log({"judge_check": self._wandb.Table(columns=columns, data=rows)})
        run.summary["judge_check/refused"] = len(check.refused)
        self._finish()

    def committed(self, step: int, concept: str, delta_path: str | Path, sha256: str) -> None:
        """After Manifest.commit: a new version of the campaign's model-delta artifact."""
        if self._last is not None and self._last.concept == concept:
            self._at_commit[concept] = self._last.target_acc.value
        if not self.enabled:
            return
        if self._open is None or self._open[0] != step:
            self._finish()   # the driver restarted between gate and commit: a commit run of its own
            self._start(step, 0, "commit", {"concept": concept})
        artifact = self._wandb.Artifact(f"{_name(self.campaign)}-deltas", type="model-delta",
                                        metadata={"step": step, "concept": concept, "sha256": sha256})
        artifact.add_file(str(delta_path), name=Path(delta_path).name)
        self._run.log_artifact(artifact, aliases=[f"step-{step}", f"concept-{slug(concept)}", "latest"])
        self._run.summary["committed_sha256"] = sha256
        self._finish()

    def close(self) -> None:
        """Finish whatever run is open and stop wandb's service, which writes the last records of an offline
        run's .wandb file only when it shuts down (read right after finish(), it can hold just its header).
        Safe to call twice."""
        if self.enabled:
            self._finish()
            self._wandb.teardown()

    # -- internals --

    def _start(self, step: int, attempt: int, phase: str, config: Mapping[str, Any]):
        self._finish()
        wandb = self._wandb
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True,
                                  x_save_requirements=False, disable_job_creation=True)
        self._run = wandb.init(project=self.project, group=self.campaign, job_type=phase,
                               id=run_id(self.campaign, step, attempt, phase), resume="allow",
                               name=f"{self.campaign} step {step} attempt {attempt} {phase}",
                               mode=self.mode, dir=str(self.dir), settings=settings, reinit="finish_previous",
                               config={**self.config, "step": step, "attempt": attempt, "phase": phase, **config},
                               allow_val_change=True)
        self._open = (step, attempt, phase)
        if phase == "erase":      # progress curves plot against their own counters, not W&B's _step
            self._run.define_metric("train/step")
            self._run.define_metric("train/*", step_metric="train/step")
        elif phase == "validate":
            self._run.define_metric("validate/seconds")
            self._run.define_metric("validate/*", step_metric="validate/seconds")
        return self._run

    def _ensure(self, step: int, attempt: int, phase: str):
        """The open run if it is this one, else (a hook called after a restart) that run resumed."""
        if self._open == (step, attempt, phase):
            return self._run
        return self._start(step, attempt, phase, {})

    def _finish(self) -> None:
        if self._run is not None:
            self._run.finish()
        self._run, self._open = None, None

    def _log_candidate(self, run, step: int, attempt: int, candidate: DeltaRef):
        artifact = self._wandb.Artifact(f"{_name(self.campaign)}-candidates", type="candidate-delta",
                                        metadata={"step": step, "attempt": attempt, "sha256": candidate.sha256})
        # By reference: candidates stay on storage_path; only committed deltas are uploaded.
        artifact.add_reference(Path(candidate.path).resolve().as_uri(), name=Path(candidate.path).name)
        return run.log_artifact(artifact, aliases=[f"step-{step}-attempt-{attempt}"])

    def _summarise(self, run, decision: GateDecision) -> None:
        run.summary.update({"verdict": decision.verdict, "reasons": list(decision.reasons),
                            "failed": list(decision.failed)})

    def _grid_pairs(self, step: int, concept: str, attempt: int) -> list[ImagePair]:
        """The validator's grid for this attempt as image pairs; none when it wrote none or it cannot be read."""
        # numpy and PIL, no torch; imported only by an enabled tracker
        from jobs.validation.grids import read_grid

        try:
            rows = read_grid(self.root / attempt_dir(step, concept, attempt))
        except (OSError, ValueError, KeyError, TypeError):   # a damaged grid costs its table, not the campaign
            return []
        return [ImagePair(r.group, r.prompt, r.base, r.erased) for r in rows]

    def _table(self, images: Sequence[ImagePair]):
        wandb = self._wandb
        table = wandb.Table(columns=["group", "prompt", "base", "erased"])
        for pair in images:
            table.add_data(pair.group, pair.prompt, wandb.Image(pair.base), wandb.Image(pair.erased))
        return table


def _name(campaign: str) -> str:
    """A campaign name as W&B ids and artifact names accept it (letters, digits, - and _)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", campaign).strip("-") or "campaign"


class TrackingCallbacks(Callbacks):
    """The campaign loop's events as W&B runs: one Tracker, only on the driver."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def attempt_started(self, a: RunAttempt, request) -> None:
        self.tracker.attempt_started(a.step, a.concept, a.attempt, a.method, a.hparams)

    def phase_progress(self, a: RunAttempt, phase: str, records: Sequence[ProgressRecord]) -> None:
        self.tracker.phase_progress(phase, records)

    def attempt_finished(self, a: RunAttempt, phases: Sequence[PhaseOutput], decision: GateDecision,
                         report: GateReport | None, candidate: DeltaRef | None) -> None:
        self.tracker.attempt_finished(report, decision, candidate=candidate,
                                      phase_seconds={p.phase: p.seconds for p in phases})

    def committed(self, c: CommitAttempt, record, path: Path) -> None:
        self.tracker.committed(c.step, c.concept, path, record.delta.sha256)
