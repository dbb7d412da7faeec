"""Typed values that cross the orchestrator/worker boundary. Plain dataclasses: no torch, no Ray.

The orchestrator builds a StepRequest, a worker returns a StepResult whose GateReport the
(pure) gate judges. Everything here round-trips through JSON (erasecore.codec).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Estimate:
    """A proportion with a two-sided Wilson interval (at its GateReport's interval_confidence)."""

    value: float
    lower: float
    upper: float
    n: int


@dataclass(frozen=True)
class Limits:
    """The thresholds a candidate must meet: the campaign's gate section, as the gate and a step's
    sequential sampling both read it (erasecore/gate_checks.py)."""

    min_forgetting: float = 0.9
    min_retain: float = 0.95
    max_leakage: float = 0.10
    max_drift: float = 0.25
    max_cumulative_acc: float = 0.2
    max_attack: float | None = None   # off unless set: attack success the gate tolerates


@dataclass(frozen=True)
class ValidationSpec:
    """How a step is measured."""

    seeds: int = 2                 # images per prompt (one per seed)
    max_prompts_per_group: int = 24
    guidance_scale: float = 5.0
    inference_steps: int = 20
    confidence: float = 0.95
    early_stop: bool = True
    batch_size: int = 64
    # Sequential sampling (early_stop) ends a gate once every check's interval is on its passing side
    # of the gate's thresholds, or one is on its failing side (erasecore/gate_checks.py); `seeds` x prompts
    # is the budget. Preflight sets them from the campaign's gate section (a campaign sets them there, not
    # here); unset (None), a step stops at Limits()' defaults.
    limits: Limits | None = None
    # The gate draws image k of a prompt from noise seed seed_offset + k: a confirmation gate (a search's
    # chosen candidate measured again, orchestrator/campaign.py) draws fresh ones.
    seed_offset: int = 0
    # Who judges the images: "auto" is the toy world's evaluator for the toy model and none for any
    # other; "toyworld" also for another pipeline that draws the toy world (e.g. SDXL trained on it).
    # preflight settles "auto" once: a StepRequest always names its judge.
    judge: str = "auto"
    judge_model: str = ""          # the judge's weights (clip): a hub id or a local directory
    attack_prompts: int = 8        # target prompts the attack group regenerates per seed (0: no attack group)
    # The optimized attack (jobs/validation/attack_optimized.py: soft tokens optimised against the candidate's
    # denoising loss, UnlearnDiffAtk's kind): Adam steps (0: off), soft tokens per prompt, target prompts.
    attack_optimized_steps: int = 0
    attack_optimized_tokens: int = 5
    attack_optimized_prompts: int = 8
    # Shards of a gate: the looks are split over this many Ray tasks, each on validation_gpus
    # (0: one per GPU of the cluster). The report is the same for any number (operational).
    shards: int = 1
    # Earlier-erased concepts: a gate re-checks at most this many of their prompts, spread over them and
    # rotating with the step (erasecore/cumulative.py); 50 keeps 10 earlier objects whole.
    cumulative_budget: int = 50
    # An open forgetting/leakage/cumulative check within extend_margin of its threshold when the budget is
    # spent gets up to extend_seeds more seeds of its own groups (jobs/validation/sequential.py); 0: off.
    extend_seeds: int = 2
    extend_margin: float = 0.05
    sweep_every: int = 0           # every k-th gate re-checks every earlier concept in full (0: never)
    # After the last step, a sweep measures the committed model on every committed concept:
    # "none", "report" (journal and report it), or "halt" (also end the campaign halted on a rebound).
    final_sweep: str = "none"
    # The judge self-check (`erase judge-check`): a concept the judge cannot tell from the others on the base
    # model's images is refused; true runs it anyway, flagged (erasecore/judge_check.py).
    allow_weak_judge: bool = False


@dataclass(frozen=True)
class ParallelSpec:
    """How a fine-tune step is spread over workers (from the campaign's resources)."""

    num_workers: int = 1
    strategy: str = "ddp"                  # "ddp" | "deepspeed"
    deepspeed_config: dict[str, Any] = field(default_factory=dict)   # the JSON of configs/deepspeed/*
    gradient_checkpointing: bool = False
    checkpoint_every: int = 50             # optimizer steps between the step's own checkpoints
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass(frozen=True)
class DeltaRef:
    """A committed (or candidate) delta file and its content hash."""

    path: str
    sha256: str


GATE_REPORT = "gate_report.json"   # a validation phase's report in its out_dir, written whole as its last act


@dataclass(frozen=True)
class StepRequest:
    """Erase one concept from base + parents, validate, write into out_dir."""

    campaign: str
    step: int                      # k, 1-based position in the concept list
    attempt: int                   # n, 1-based
    concept: str
    method: str
    hparams: dict[str, Any]
    model: str                     # "toyworld", a local diffusers directory, or a hub id
    parents: tuple[DeltaRef, ...]  # committed deltas 1..k-1, applied in order
    out_dir: str
    erased_before: tuple[str, ...] = ()   # concepts committed earlier: must stay gone
    preserve: tuple[str, ...] = ()        # concepts the method should actively keep
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    cache_dir: str = ""            # base-model baselines cached here by hash
    seed: int = 0
    parallel: ParallelSpec = field(default_factory=ParallelSpec)
    concepts_from: str = ""        # the concept set the suite is built from ("" = the judge's own)
    allow_thin: bool = False
    frozen_precision: str = "auto" # text encoders, VAE, judge: auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    sweep: bool = False            # not an erasure: measure base + parents on every erased_before concept


@dataclass(frozen=True)
class ParamDrift:
    """How far the committed deltas plus the candidate moved one layer group from the base weights."""

    norm: float                     # Frobenius norm of the summed deltas over the group's parameters
    relative: float                 # norm / the base weights' norm over the same group


@dataclass(frozen=True)
class Capability:
    """Forget-Me-Not's memorization idea per gate: how well the model still draws a fixed bench of concepts."""

    bench: str                      # the bench's name (a fixed set of prompts, the same on every gate)
    score: float                    # recognised images of the entries not erased so far / the base's
    drawn: dict[str, float]         # per bench entry: share of its images the judge recognises
    base: dict[str, float]          # the same for the base model
    erased: tuple[str, ...]         # bench entries erased so far (left out of the score)
    images: int
    seconds: float


@dataclass(frozen=True)
class JudgeIdentity:
    """Exactly which judge measured a gate: two gates compare number for number only under equal identities
    (another checkpoint, threshold or library version is another measuring instrument)."""

    name: str                       # the judge catalog's name (erasecore/judges.py)
    source: str = ""                # where its weights came from: a directory, a hub id, a wheel
    weights: dict[str, str] = field(default_factory=dict)   # each weight file it loaded (under source) -> sha256
    classes: tuple[str, ...] = ()   # the labels it answers
    thresholds: dict[str, float] = field(default_factory=dict)   # per decision: the score at or above which it says yes
    rule: str = ""                  # how an image's scores become a yes, in words
    libraries: dict[str, str] = field(default_factory=dict)      # distribution -> version it ran with
    # A calibrated judge's table, per decision: its threshold, the false-positive target it was fitted to on one
    # half of the base model's images, and the hit and false-positive rates it gave on the other half.
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class GateReport:
    """What the validator measured for one candidate, relative to the base model."""

    concept: str
    forgetting: Estimate            # 1 - target acc / base target acc (on target + subclasses + variants)
    target_acc: Estimate
    base_target_acc: float
    evasion: dict[str, Estimate]    # per kind: subclass, composition, paraphrase -> acc still drawn
    retain: Estimate                # retain acc / base retain acc, all retain prompts
    retain_by_distance: dict[str, Estimate]  # "near" (siblings), "far" (other superclasses)
    leakage: Estimate               # share of pair prompts where the target's colour moved
    kl: float                       # mean KL(base || candidate) of judge posteriors on retain prompts (information)
    kl_base_noise: float            # the base model's own seed-to-seed KL (information)
    cumulative: dict[str, Estimate] # earlier erased concepts: acc still drawn
    images_generated: int
    early_stopped: bool
    seconds: float
    unjudged: dict[str, str] = field(default_factory=dict)   # suite group left out -> why its judge cannot answer
    thin: bool = False              # the concept was not in its concept set: a templates-only suite
    attack: Estimate | None = None  # the erased concept regenerated through the candidate's K/V (jobs/validation/attack.py)
    attack_seconds: float = 0.0
    # The concept brought back by a soft prompt optimised against the candidate's own denoising loss
    # (jobs/validation/attack_optimized.py); None: not measured (off, a family it cannot reach, older journals).
    attack_optimized: Estimate | None = None
    attack_optimized_seconds: float = 0.0
    param_drift: dict[str, ParamDrift] = field(default_factory=dict)   # layer group -> drift of base+parents+candidate
    capability: Capability | None = None   # None: not measured (no bench for this judge, or older journals)
    # Share of retain images whose judged label (argmax of each posterior part) differs from the base
    # model's on the same prompt and seed. n=0 in journals written before it existed.
    drift: Estimate = field(default_factory=lambda: Estimate(0.0, 0.0, 1.0, 0))
    interval_confidence: float = 0.0  # the confidence of every interval above (spent over checks and looks)
    extended: tuple[str, ...] = ()   # checks the gate drew more images for after its budget (a coin toss there)
    judges: tuple[JudgeIdentity, ...] = ()   # who judged its images; empty in journals written before it existed


@dataclass(frozen=True)
class StepResult:
    request: StepRequest
    delta: DeltaRef
    report: GateReport
    erase_seconds: float
    validate_seconds: float
