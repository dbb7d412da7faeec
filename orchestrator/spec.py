"""The campaign spec: dataclass schema + YAML + CLI dotlist, merged by omegaconf into frozen dataclasses.

load_spec() is the only way in: every mistake a user can make in a campaign file or an
override comes out as one ConfigError line naming the key to fix. What leaves this module
is plain frozen dataclasses (never DictConfig), safe to send to workers. What needs more than
the file (the model on disk, its family, the judge, the DeepSpeed JSON, method hyperparameters)
is settled once by orchestrator/preflight.py. What needs more than
the file (the model on disk, its family, the judge, the DeepSpeed JSON, method hyperparameters)
is settled once by orchestrator/preflight.py.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import (ConfigKeyError, InterpolationResolutionError, MissingMandatoryValue,
                              OmegaConfBaseException, ValidationError)

from erasecore.catalog import METHOD_NAMES
from erasecore.concepts import GROUP_JOIN, step_members
from erasecore.contracts import ValidationSpec
from erasecore.gate_checks import CHECK_KINDS, POINT, RULES
from erasecore.errors import ConfigError
from erasecore import judges
from erasecore.models import TOY

ON_EXHAUSTED = ("skip", "halt")
FINAL_SWEEPS = ("none", "report", "halt")   # not "off": YAML reads off as false
STRATEGIES = ("ddp", "deepspeed")
FROZEN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
EXPANDS = ("none", "members")
STEPS = ("concept", "group", "auto")
TRACKING_MODES = ("offline", "online", "disabled")
MODEL_SOURCES = ("local", "workers")
SCHEDULES = ("auto", "serial", "pipelined")   # resources.schedule (orchestrator/schedule.py)
# Fields that do not change what a campaign produces: they may differ on resume.
OPERATIONAL_FIELDS = ("resources", "tracking", "storage_path", "alarms", "model_source")


@dataclass(frozen=True)
class GateThresholds:
    """What a candidate must show to be committed (see orchestrator.gate for the rule)."""

    min_forgetting: float = 0.9
    min_retain: float = 0.95
    max_leakage: float = 0.10
    max_drift: float = 0.25           # share of retain images whose judged label changed vs the base (same seed)
    max_cumulative_acc: float = 0.2   # earlier-erased concepts must stay below this accuracy
    # Attack success (the erased concept regenerated through the candidate's own K/V, jobs/validation/
    # attack.py) the gate tolerates; null: reported, never gated (measured on the toy world: docs/methods.md).
    max_attack: Optional[float] = None
    # Per check (forgetting, retain, leakage, drift, cumulative), what decides when the image budget
    # is spent before its interval left the threshold: "point" (the point estimate) or "certified"
    # (it fails: only a certified pass passes). A certified pass or fail always decides.
    rules: dict[str, str] = field(default_factory=lambda: {k: POINT for k in CHECK_KINDS})


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a concept gets and what happens when they run out."""

    max_attempts: int = 3             # per concept, across the whole ladder
    strength_step: float = 2.0        # multiplier on the method's strength knob between retries
    on_exhausted: str = "skip"        # "skip" the concept or "halt" the campaign


@dataclass(frozen=True)
class Candidate:
    """One setting a step's search may try: a catalog method and its hyperparameter overrides."""

    method: str = MISSING
    hparams: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Search:
    """What a concept tries when its first attempt is rejected (orchestrator/policy.py), instead of the
    retry ladder: `candidates`, then the grid `methods` x `strengths` (each factor times the method's
    strength knob's default), ordered by what committed earlier in this campaign for concepts of the same
    kind. Off while both lists are empty."""

    candidates: list[Candidate] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    strengths: list[float] = field(default_factory=lambda: [1.0])
    from_first: bool = False          # attempt 1 is the search's first candidate, not `method`
    max_attempts: int = 0             # per concept, the first attempt included (0: every candidate once)
    max_seconds: float = 0.0          # per concept, wall seconds of its finished attempts (0: no limit)
    # A candidate chosen after another was rejected is measured again on fresh seeds before it commits:
    # the best of several noisy gates passes by chance more often than one gate does.
    confirm: bool = True


@dataclass(frozen=True)
class Resources:
    """Where and how a step runs. cpus/gpus_per_step are the whole step's, split evenly over its workers."""

    cpus_per_step: float = 1.0
    gpus_per_step: float = 0.0
    validation_gpus: float = 0.0
    num_workers: int = 1              # > 1: a fine-tune step is a Ray Train group on one node
    strategy: str = "ddp"             # "ddp" | "deepspeed" (ZeRO stage and offload from deepspeed_config)
    deepspeed_config: str = "configs/deepspeed/zero2.json"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 50        # optimizer steps between a distributed step's own checkpoints
    gpu_memory_gb: float = 80.0       # per GPU, what `erase plan` fits the step into
    # The frozen text encoders, VAE and judge: "auto" is bf16 on a GPU and fp32 on a CPU
    # (jobs/models/precision.py); the trained denoiser stays as its method holds it.
    frozen_precision: str = "auto"
    # "auto": the scheduler bench's best pipelining on a cluster with GPUs for two erase-and-gate pairs, serial
    # otherwise (unless the settings below ask for pipelining); "serial"; "pipelined" (orchestrator/schedule.py).
    schedule: str = "auto"
    # The pipelined loop (orchestrator/pipeline.py): erase the next concept on a candidate while it is
    # validated, and run a rejected concept's next retries at once; the commits stay the serial loop's.
    speculative: bool = False
    speculation_depth: int = 1        # steps erased ahead of the head, each on the candidate before it
    parallel_attempts: int = 1        # attempts of one concept in flight at once (1: one at a time)
    # Steps after the head whose base-model images are drawn ahead into the baseline cache while erases and
    # other gates run, so their gates draw only the candidate (0: each gate draws its own); pipelined loop.
    prefetch_baselines: int = 0


@dataclass(frozen=True)
class Tracking:
    mode: str = "offline"             # "offline" | "online" | "disabled" (W&B)
    project: str = "concept-erasure"


@dataclass(frozen=True)
class Alarms:
    """Warnings over a campaign (progress lines, report, W&B); they reject nothing, so they are operational."""

    rebound: float = 0.15             # an earlier concept drawn this much more than when it was committed


@dataclass(frozen=True)
class CampaignSpec:
    """An ordered list of concepts to erase from one model, and how to judge each step."""

    name: str = MISSING
    model: str = TOY
    # Where a hub id's weights come from: "local", this machine's Hugging Face cache (looked up before Ray
    # starts, no network; a hub id not there is refused), or "workers", which fetch it from the hub.
    model_source: str = "local"
    concepts: list[str] = MISSING
    method: str = "uce"
    ladder: list[str] = field(default_factory=lambda: ["esd-x", "esd-u"])
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> overrides
    preserve: list[str] = field(default_factory=list)
    gate: GateThresholds = field(default_factory=GateThresholds)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    search: Search = field(default_factory=Search)
    resources: Resources = field(default_factory=Resources)
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    tracking: Tracking = field(default_factory=Tracking)
    alarms: Alarms = field(default_factory=Alarms)
    storage_path: str = "runs/${name}"
    seed: int = 0
    # The concept set the concepts come from: a shipped name (configs/concepts/<name>.yaml) or a path;
    # "" takes the judge's own set (the toy world's for judge toyworld).
    concepts_from: str = ""
    allow_thin: bool = False          # a concept missing from the set gets a templates-only (thin) entry
    # "members": a superclass in `concepts` is erased as its members, one gated step each, then the
    # superclass word (the queue is expanded from the concept set in preflight); "none": one step.
    expand: str = "none"
    # "group": concepts of the queue that share a parent (the variants of one object, the members of one
    # superclass) are erased in one gated step at the first one's place (settled in preflight, after
    # `expand`); "auto": each such group step, then its members one at a time, run only if the group step
    # is refused; "concept": one step per concept.
    steps: str = "concept"


def load_spec(path: str | None, overrides: list[str] = ()) -> CampaignSpec:
    """Merge schema <- YAML file (if any) <- `key=value` overrides; validate; return frozen dataclasses."""
    layers = [OmegaConf.structured(CampaignSpec)]
    if path is not None:
        layers.append(_without_stop_keys(_load_yaml(Path(path))))
    layers.append(_parse_overrides(list(overrides)))
    where = str(path) if path is not None else "overrides"
    for layer in layers[1:]:
        _check_sections(OmegaConf.to_container(layer, resolve=False), CampaignSpec, "", where)
    try:
        spec = OmegaConf.to_object(OmegaConf.merge(*layers))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{where}: {_describe(e)}") from None
    _validate(spec, where)
    return spec


def resolved_yaml(spec: CampaignSpec) -> str:
    """The spec as resolved YAML: what is snapshotted beside a campaign."""
    return OmegaConf.to_yaml(OmegaConf.structured(spec))


def spec_hash(spec: CampaignSpec) -> str:
    """sha256 of the canonical JSON of every field that changes results (not resources/tracking/storage_path)."""
    data = {k: v for k, v in dataclasses.asdict(spec).items() if k not in OPERATIONAL_FIELDS}
    # Fields added after journals were first written hash only when set, so those journals keep their hash.
    if data["validation"]["judge"] == "auto":
        del data["validation"]["judge"]
    for key, default in (("judge_model", ""), ("cumulative_budget", 50), ("sweep_every", 0), ("final_sweep", "none")):
        if data["validation"][key] == default:
            del data["validation"][key]
    if data["gate"]["max_attack"] is None:
        del data["gate"]["max_attack"]
    if data["gate"]["rules"].get("attack") == POINT:
        del data["gate"]["rules"]["attack"]
    if data["validation"]["extend_seeds"] == 0:   # off: the gate as it was before the extension existed
        del data["validation"]["extend_seeds"], data["validation"]["extend_margin"]
    if data["validation"]["attack_prompts"] == ValidationSpec.attack_prompts:
        del data["validation"]["attack_prompts"]
    if data["validation"]["attack_optimized_steps"] == 0:   # off: its token and prompt counts change nothing
        for key in ("attack_optimized_steps", "attack_optimized_tokens", "attack_optimized_prompts"):
            del data["validation"][key]
    del data["validation"]["shards"]   # where a gate's looks are drawn never changes its report
    del data["validation"]["allow_weak_judge"]   # decided before any step (the judge self-check), in no report
    # The gate section holds the thresholds (validation.limits is preflight's copy, never set in a campaign);
    # the snapshot's constant stop keys hash as they always did, so every journal keeps its hash.
    del data["validation"]["limits"]
    data["validation"].update(STOP_KEYS)
    if data["validation"]["seed_offset"] == 0:
        del data["validation"]["seed_offset"]
    if data["search"] == dataclasses.asdict(Search()):
        del data["search"]
    for key, default in (("concepts_from", ""), ("allow_thin", False), ("expand", "none"), ("steps", "concept")):
        if data[key] == default:
            del data[key]
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---- reading ---------------------------------------------------------------------------------

def _load_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"campaign file not found: {path}")
    try:
        raw = OmegaConf.load(path)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read campaign file {path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}{at}: YAML syntax error: {problem}") from None
    if not isinstance(raw, DictConfig):
        raise ConfigError(f"{path}: a campaign file must be a mapping (name: ..., concepts: [...]), not a list")
    return raw


# The gate's thresholds as a journal's spec snapshot may still spell them in its validation section (where
# preflight overwrote them from the gate section, so they never changed a result): read as absent.
STOP_KEYS = {"stop_forgetting": 0.9, "stop_retain": 0.95, "stop_leakage": 0.10, "stop_drift": 0.25,
             "stop_cumulative": 0.2}


def _without_stop_keys(raw: DictConfig) -> DictConfig:
    validation = raw.get("validation")
    if isinstance(validation, DictConfig):
        for key in STOP_KEYS:
            validation.pop(key, None)
    return raw


def _parse_overrides(overrides: list[str]) -> DictConfig:
    parsed = []
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. retry.max_attempts=5)")
        try:
            parsed.append(OmegaConf.from_dotlist([item]))
        except (OmegaConfBaseException, yaml.YAMLError) as e:
            problem = getattr(e, "problem", None) or _first_line(e)
            raise ConfigError(f"cannot parse override {item!r}: {problem}") from None
    return OmegaConf.merge(*parsed) if parsed else OmegaConf.create({})


def _check_sections(layer: dict, schema: Any, prefix: str, where: str) -> None:
    """A section (gate, retry, ...) given as a scalar: omegaconf's own error would not name the key."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if not dataclasses.is_dataclass(hints[f.name]) or f.name not in layer:
            continue
        if not isinstance(layer[f.name], dict):
            raise ConfigError(f"{where}: key {prefix + f.name!r} must be {_expected(prefix + f.name)}")
        _check_sections(layer[f.name], hints[f.name], f"{prefix}{f.name}.", where)


def _describe(e: OmegaConfBaseException) -> str:
    """One line for an omegaconf error, naming the key and, for type errors, the expected type."""
    key = getattr(e, "full_key", None) or "?"
    if isinstance(e, ConfigKeyError):
        return f"unknown key {key!r}; known keys here: {', '.join(_known_keys(key))}"
    if isinstance(e, MissingMandatoryValue):
        return f"missing required key {key!r}"
    if isinstance(e, InterpolationResolutionError):
        return f"key {key!r}: cannot resolve interpolation: {_first_line(e)}"
    if isinstance(e, ValidationError):
        return f"key {key!r} must be {_expected(key)} ({_first_line(e)})"
    return f"key {key!r}: {_first_line(e)}"


def _first_line(e: Exception) -> str:
    return (getattr(e, "msg", None) or str(e)).splitlines()[0]


def _hint_at(full_key: str):
    """The schema's type hint for a dotted key such as gate.min_retain or hparams.uce."""
    hint: Any = CampaignSpec
    for part in re.findall(r"[^.\[\]]+", full_key):
        if dataclasses.is_dataclass(hint):
            hint = typing.get_type_hints(hint).get(part)
        elif typing.get_origin(hint) in (dict, list):
            hint = typing.get_args(hint)[-1]
        else:
            return None
    return hint


def _known_keys(full_key: str) -> list[str]:
    parent = _hint_at(full_key.rpartition(".")[0]) if "." in full_key else CampaignSpec
    return [f.name for f in dataclasses.fields(parent)] if dataclasses.is_dataclass(parent) else []


_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
_PLURALS = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}


def _expected(full_key: str) -> str:
    hint = _hint_at(full_key)
    if hint in _TYPE_WORDS:
        return _TYPE_WORDS[hint]
    origin = typing.get_origin(hint)
    if origin is list:
        return f"a list of {_PLURALS.get(typing.get_args(hint)[0], 'values')}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(hint))}"
    return "a valid value"


# ---- validation beyond types -----------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _validate(spec: CampaignSpec, where: str) -> None:
    def fail(message: str):
        raise ConfigError(f"{where}: {message}")

    if not _NAME.match(spec.name):
        fail(f"name {spec.name!r} must be letters, digits, '.', '_' or '-' (it names directories and runs)")
    if not spec.concepts:
        fail("concepts is empty; list at least one concept to erase")
    for c in list(spec.concepts) + list(spec.preserve):
        if not isinstance(c, str) or not c.strip():
            fail(f"concepts and preserve must be non-empty strings, got {c!r}")
    members = [m for c in spec.concepts for m in step_members(c)]   # "a + b": one group step
    if any(not m for m in members):
        fail(f"a group step names its members joined by '{GROUP_JOIN}', got an empty member in {spec.concepts}")
    dupes = sorted({c for c in members if members.count(c) > 1 and not _auto_fallback(spec, c)})
    if dupes:
        fail(f"duplicate concepts: {', '.join(dupes)} (each concept is erased once)")
    both = sorted(set(members) & set(spec.preserve))
    if both:
        fail(f"concepts both erased and preserved: {', '.join(both)}")
    for key, name in [("method", spec.method)] + [(f"ladder[{i}]", m) for i, m in enumerate(spec.ladder)] \
            + [(f"hparams.{m}", m) for m in spec.hparams] \
            + [(f"search.candidates[{i}].method", c.method) for i, c in enumerate(spec.search.candidates)] \
            + [(f"search.methods[{i}]", m) for i, m in enumerate(spec.search.methods)]:
        if name not in METHOD_NAMES:
            fail(f"{key}: unknown method {name!r}; known methods: {', '.join(METHOD_NAMES)}")
    if spec.validation.limits is not None:
        fail("validation.limits is set from the gate section (gate.min_forgetting, ...); set the thresholds there")
    _validate_numbers(spec, fail)


def _auto_fallback(spec: CampaignSpec, concept: str) -> bool:
    """`steps: auto` queues a concept twice: in one group step, then as its own step after it (run only if the
    group step is refused)."""
    if spec.steps != "auto":
        return False
    groups = [k for k, c in enumerate(spec.concepts) if len(step_members(c)) > 1 and concept in step_members(c)]
    singles = [k for k, c in enumerate(spec.concepts) if c == concept]
    return len(groups) == 1 and len(singles) == 1 and groups[0] < singles[0]


def _validate_numbers(spec: CampaignSpec, fail) -> None:
    g, r = spec.gate, spec.retry
    for key in ("min_forgetting", "min_retain", "max_leakage", "max_drift", "max_cumulative_acc"):
        if not 0.0 <= getattr(g, key) <= 1.0:
            fail(f"gate.{key} must be between 0 and 1, got {getattr(g, key)}")
    if g.max_attack is not None and not 0.0 <= g.max_attack <= 1.0:
        fail(f"gate.max_attack must be between 0 and 1 (or null: off), got {g.max_attack}")
    for check, rule in g.rules.items():
        if check not in CHECK_KINDS:
            fail(f"gate.rules: unknown check {check!r}; checks: {', '.join(CHECK_KINDS)}")
        if rule not in RULES:
            fail(f"gate.rules.{check} must be one of {', '.join(RULES)}, got {rule!r}")
    if r.max_attempts < 1:
        fail(f"retry.max_attempts must be >= 1, got {r.max_attempts}")
    if r.strength_step <= 0:
        fail(f"retry.strength_step must be > 0, got {r.strength_step}")
    if r.on_exhausted not in ON_EXHAUSTED:
        fail(f"retry.on_exhausted must be one of {', '.join(ON_EXHAUSTED)}, got {r.on_exhausted!r}")
    s = spec.search
    if s.methods and not s.strengths or any(f <= 0 for f in s.strengths):
        fail(f"search.strengths must be factors > 0 (1.0: the method's default strength), got {list(s.strengths)}")
    if s.max_attempts < 0 or s.max_seconds < 0:
        fail(f"search.max_attempts and search.max_seconds must be >= 0 (0: no limit), got {s.max_attempts} and "
             f"{s.max_seconds:g}")
    if not 0.0 <= spec.alarms.rebound <= 1.0:
        fail(f"alarms.rebound must be between 0 and 1, got {spec.alarms.rebound}")
    if spec.tracking.mode not in TRACKING_MODES:
        fail(f"tracking.mode must be one of {', '.join(TRACKING_MODES)}, got {spec.tracking.mode!r}")
    res = spec.resources
    if res.cpus_per_step <= 0:
        fail(f"resources.cpus_per_step must be > 0 (a step needs a CPU to run on), got {res.cpus_per_step:g}")
    if min(res.gpus_per_step, res.validation_gpus) < 0 or res.num_workers < 1:
        fail("resources.gpus_per_step and validation_gpus must be >= 0 and resources.num_workers >= 1")
    if res.strategy not in STRATEGIES:
        fail(f"resources.strategy must be one of {', '.join(STRATEGIES)}, got {res.strategy!r}")
    if res.schedule not in SCHEDULES:
        fail(f"resources.schedule must be one of {', '.join(SCHEDULES)}, got {res.schedule!r}")
    if res.prefetch_baselines < 0:
        fail(f"resources.prefetch_baselines must be >= 0, got {res.prefetch_baselines}")
    if res.parallel_attempts < 1 or res.speculation_depth < 1:
        fail(f"resources.parallel_attempts and speculation_depth must be >= 1, got {res.parallel_attempts} and "
             f"{res.speculation_depth}")
    if res.checkpoint_every < 1 or res.gpu_memory_gb <= 0:
        fail("resources.checkpoint_every must be >= 1 and resources.gpu_memory_gb > 0")
    if res.frozen_precision not in FROZEN_PRECISIONS:
        fail(f"resources.frozen_precision must be one of {', '.join(FROZEN_PRECISIONS)}, got {res.frozen_precision!r}")
    v = spec.validation
    if v.seeds < 1 or v.max_prompts_per_group < 1 or v.inference_steps < 1 or v.batch_size < 1:
        fail("validation.seeds, max_prompts_per_group, inference_steps and batch_size must be >= 1")
    if v.attack_prompts < 0:
        fail(f"validation.attack_prompts must be >= 0 (0 turns the attack group off), got {v.attack_prompts}")
    if v.attack_optimized_steps < 0 or v.attack_optimized_tokens < 1 or v.attack_optimized_prompts < 1:
        fail(f"validation.attack_optimized_steps must be >= 0 (0 turns the optimized attack off) and "
             f"attack_optimized_tokens and attack_optimized_prompts >= 1, got {v.attack_optimized_steps}, "
             f"{v.attack_optimized_tokens} and {v.attack_optimized_prompts}")
    if v.shards < 0:
        fail(f"validation.shards must be >= 0 (0: one per GPU of the cluster), got {v.shards}")
    known = (judges.AUTO,) + judges.names()
    if v.judge not in known:
        fail(f"validation.judge must be one of {', '.join(known)}, got {v.judge!r}")
    if v.cumulative_budget < 1 or v.sweep_every < 0:
        fail("validation.cumulative_budget must be >= 1 and validation.sweep_every >= 0 (0: no periodic sweep)")
    if v.extend_seeds < 0 or not 0.0 <= v.extend_margin < 1.0:
        fail(f"validation.extend_seeds must be >= 0 (0: no extension) and validation.extend_margin in [0, 1), "
             f"got {v.extend_seeds} and {v.extend_margin}")
    if v.final_sweep not in FINAL_SWEEPS:
        fail(f"validation.final_sweep must be one of {', '.join(FINAL_SWEEPS)}, got {v.final_sweep!r}")
    if not 0.0 < v.confidence < 1.0:
        fail(f"validation.confidence must be between 0 and 1 (exclusive), got {v.confidence}")
    if spec.model_source not in MODEL_SOURCES:
        fail(f"model_source must be one of {', '.join(MODEL_SOURCES)} (where a hub id's weights come from), "
             f"got {spec.model_source!r}")
    if spec.expand not in EXPANDS:
        fail(f"expand must be one of {', '.join(EXPANDS)}, got {spec.expand!r}")
    if spec.steps not in STEPS:
        fail(f"steps must be one of {', '.join(STEPS)}, got {spec.steps!r}")
    if not spec.storage_path.strip():
        fail("storage_path is empty")
