"""Settle a campaign once, at the edge: everything a spec names outside itself, checked before Ray starts.

    settled = preflight(spec)             # run, resume, submit, and the driver itself
    settled = preflight(spec, run=False)  # erase plan: no judge or model weights needed
    check_model_source(settled.spec, weights=False)   # erase plan: a hub id's configs in the local cache

One CampaignError line for any mistake (exit 2 in the CLI), never a failed attempt mid-campaign:
the model directory, the model's family and each method (and ladder rung) against it, every
method's hyperparameters against the catalog's schema, the fine-tune batch against the worker
count, the DeepSpeed JSON (read here, once), the judge, the concepts against the campaign's concept
set (configs/concepts/, erasecore/concepts.py), the storage path, and a hub id in the local
Hugging Face cache unless model_source is "workers" (looked up by the cache's layout: no network). What it settles travels in every StepRequest: the resolved judge,
the parallel layout with its DeepSpeed config.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from erasecore import catalog, families, judges
from erasecore.concepts import (ConceptSet, auto_steps, erased_by, expand_members, group_steps,
                                load_concept_set, step_members)
from erasecore.contracts import ParallelSpec
from erasecore.errors import ConfigError, MethodConfigError, UnknownConceptError
from erasecore.judges import judge_for
from erasecore.models import TOY, check_hub_model, check_model, looks_local, toyworld_dir
from orchestrator.gate import limits
from orchestrator.policy import method_sequence
from orchestrator.spec import CampaignSpec, Resources


@dataclass(frozen=True)
class Settled:
    """A campaign spec with everything outside it resolved."""

    spec: CampaignSpec
    family: str | None                  # None when the model's model_index.json is not on this machine
    judge: str | None                   # "toyworld"; None only with run=False
    concept_set: ConceptSet | None      # where the concepts come from; None: no set for this model (plan only)
    parallel: ParallelSpec              # the fine-tune worker layout, DeepSpeed JSON included
    hparams: dict[str, dict[str, Any]]  # each method the campaign may run -> resolved hyperparameters

    def kinds(self) -> dict[str, str]:
        """Each concept's kind in the concept set (object, superclass, ...): a search's order by kind."""
        if self.concept_set is None:
            return {}
        kind = {c: self.concept_set.entry(c, allow_thin=self.spec.allow_thin).kind
                for c in erased_by(self.spec.concepts)}
        return {s: ("group:" if len(step_members(s)) > 1 else "") + kind[step_members(s)[0]] for s in self.spec.concepts}


def preflight(spec: CampaignSpec, run: bool = True) -> Settled:
    """Check and resolve what `spec` names; `run` also requires the model on disk, a judge and the storage path."""
    if run:
        check_model(spec.model)
    family = _family(spec)
    hparams = _hparams(spec)
    parallel = parallel_spec(spec.resources, _deepspeed(spec.resources))
    _check_worker_batches(spec, hparams)
    concept_set = _concept_set(spec)
    spec = _grouped(_expanded(spec, concept_set), concept_set)
    judge = judge_for(spec.model, spec.validation.judge, concept_set.judge if concept_set else "")
    _check_sweep(spec, judge)
    if run:
        _require_judge(spec, judge)
        _check_judge_model(judge, judge_model(spec))
        _check_storage(spec.storage_path)
        check_model_source(spec)
    return Settled(spec, family, judge, concept_set, parallel, hparams)


def check_model_source(spec: CampaignSpec, weights: bool = True) -> None:
    """A hub id read from the local Hugging Face cache (model_source: local) must be there, its weights too
    unless only its configs are read (`erase plan`: weights=False); ModelNotCachedError, one line."""
    check_hub_model(spec.model, spec.model_source, weights)


def parallel_spec(res: Resources, deepspeed: dict) -> ParallelSpec:
    """How the worker group of a fine-tune step is laid out; the step's CPUs and GPUs split evenly."""
    n = res.num_workers
    return ParallelSpec(num_workers=n, strategy=res.strategy, deepspeed_config=deepspeed,
                        gradient_checkpointing=res.gradient_checkpointing, checkpoint_every=res.checkpoint_every,
                        cpus_per_worker=res.cpus_per_step / n, gpus_per_worker=res.gpus_per_step / n)


def _family(spec: CampaignSpec) -> str | None:
    """Refuse a method (or ladder rung) that cannot apply to the model's family, naming why.

    Read from model_index.json when it is on this machine (a local directory, the toy world, a hub id
    in the Hugging Face cache); otherwise the loader reports a missing model before any step runs.
    """
    cls = families.pipeline_class(spec.model)
    if cls is None:
        return None
    family = families.family_of(cls)
    if family is None:
        raise ConfigError(families.unsupported_pipeline(cls, spec.model))
    rungs = [("method", spec.method)] + [(f"ladder[{i}]", m) for i, m in enumerate(spec.ladder)]
    for key, name in rungs:
        reason = catalog.why_not(name, family)
        if reason:
            raise ConfigError(f"{key}: method {name!r} does not apply to {family} models ({cls}): {reason}")
    return family


def _hparams(spec: CampaignSpec) -> dict[str, dict[str, Any]]:
    """Every hparams.<method> checked against the catalog; the campaign's methods resolved over their defaults."""
    for name, given in spec.hparams.items():
        catalog.get(name).check(dict(given))
    for i, candidate in enumerate(spec.search.candidates):
        try:
            catalog.get(candidate.method).check(dict(candidate.hparams))
        except MethodConfigError as e:
            raise MethodConfigError(f"search.candidates[{i}]: {e}") from None
    methods = [*method_sequence(spec), *(c.method for c in spec.search.candidates), *spec.search.methods]
    return {name: catalog.get(name).resolve(dict(spec.hparams.get(name, {}))) for name in dict.fromkeys(methods)}


def _check_worker_batches(spec: CampaignSpec, hparams: dict[str, dict[str, Any]]) -> None:
    """A worker group splits each fine-tune's global batch evenly: refuse one that does not split."""
    n = spec.resources.num_workers
    for name, hp in hparams.items():
        if n > 1 and not catalog.get(name).closed_form and int(hp["batch"]) % n:
            raise ConfigError(f"hparams.{name}.batch is {hp['batch']}, which does not split over "
                              f"resources.num_workers={n}; use a multiple of {n}")


def _deepspeed(res: Resources) -> dict:
    """The DeepSpeed JSON a campaign names (configs/deepspeed/*.json), read once; {} under DDP."""
    if res.strategy != "deepspeed":
        return {}
    path = Path(res.deepspeed_config)
    if not path.is_file():
        raise ConfigError(f"resources.deepspeed_config: no such file {path} (see configs/deepspeed/)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"resources.deepspeed_config: {path} is not valid JSON: {e}") from None
    stage = (data.get("zero_optimization") or {}).get("stage") if isinstance(data, dict) else None
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"resources.deepspeed_config: {path} must set zero_optimization.stage to 0-3")
    return data


def _check_sweep(spec: CampaignSpec, judge: str | None) -> None:
    """The final sweep's suite is a judge's provider's own (the toy world's: jobs/toyworld/suite.py)."""
    if spec.validation.final_sweep != "none" and judge is not None and not getattr(judges.find(judge), "sweep", False):
        raise ConfigError(f"validation.final_sweep: the sweep is built for the toy world's judge, not {judge}; "
                          f"set validation.final_sweep=none")


def _require_judge(spec: CampaignSpec, judge: str | None) -> None:
    if judge is None:
        raise ConfigError(f"validation.judge: model {spec.model!r} has no judge in this build: name a concept set "
                          f"whose judge this build has (concepts_from=nudity: NudeNet), or validation.judge="
                          f"clip | vqa | nudenet (clip and vqa with validation.judge_model); validation.judge="
                          f"toyworld is for pipelines that draw the toy world")


def _check_judge_model(judge: str, model: str) -> None:
    """A judge's weights must be on this machine (a local directory, or a hub id in the HF cache) before Ray starts."""
    entry = judges.find(judge)
    if entry is None or not entry.needs_model:
        return
    if not model:
        raise ConfigError(f"validation.judge_model: the {judge} judge needs its weights (a hub id or a local "
                          f"directory, e.g. {entry.example_weights})")
    local = Path(model)
    found = (local / "config.json").is_file() if looks_local(model) else \
        families.hub_cache_file(model, "config.json") is not None
    if not found:
        raise ConfigError(f"validation.judge_model: {model!r} is not on this machine ("
                          f"{'no config.json in that directory' if looks_local(model) else 'not in the Hugging Face cache'}"
                          f"); download it first (huggingface-cli download {model})")


def _check_storage(storage_path: str) -> None:
    """The campaign directory must be a directory this process can create and write."""
    path = Path(storage_path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"storage_path {storage_path} exists and is not a directory")
    if existing is not None and existing != path and not existing.is_dir():
        raise ConfigError(f"storage_path {storage_path}: {existing} is a file, not a directory")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"storage_path {storage_path}: {existing} is not writable by this user")


def _expanded(spec: CampaignSpec, concept_set: ConceptSet | None) -> CampaignSpec:
    """The spec whose queue has each superclass's members before it (`expand: members`); the same on resume."""
    if spec.expand == "none":
        return spec
    if concept_set is None:
        raise ConfigError("expand: members needs a concept set to find the members in (concepts_from=...)")
    return dataclasses.replace(spec, concepts=list(expand_members(spec.concepts, concept_set)))


def _grouped(spec: CampaignSpec, concept_set: ConceptSet | None) -> CampaignSpec:
    """The spec whose queue has one step per group of concepts sharing a parent (`steps: group`), or each such
    group step followed by its members (`steps: auto`); the same on resume."""
    if spec.steps == "concept":
        return spec
    if concept_set is None:
        raise ConfigError(f"steps: {spec.steps} needs a concept set to find each concept's parent in "
                          f"(concepts_from=...)")
    queue = auto_steps if spec.steps == "auto" else group_steps
    return dataclasses.replace(spec, concepts=list(queue(spec.concepts, concept_set)))


def _concept_set(spec: CampaignSpec) -> ConceptSet | None:
    """The campaign's concept set (concepts_from, else the toy world's for a toy-judged model), every
    concept checked against it."""
    own = judges.for_model(spec.model)
    judge = own.name if own is not None and spec.validation.judge == judges.AUTO else spec.validation.judge
    ref = spec.concepts_from or getattr(judges.find(judge), "concept_set", "")
    if not ref:
        return None
    concept_set = load_concept_set(ref)
    for name in [*erased_by(spec.concepts), *spec.preserve]:
        try:
            entry = concept_set.entry(name, allow_thin=spec.allow_thin)
        except UnknownConceptError as e:
            raise UnknownConceptError(f"concepts: {e} (or set allow_thin=true for a templates-only suite)") from None
        who = concept_set.judge if judge == "auto" else judge
        if entry.kind == "variant" and not getattr(judges.find(who), "variants", False):
            raise ConfigError(f"concepts: {name!r} is a variant (an object with attributes fixed); only the toy "
                              f"world's evaluator judges variants, not the {who} judge")
    return concept_set


def with_settled_validation(settled: Settled):
    """The spec's ValidationSpec as a step sees it: the judge (and its weights) settled, sequential sampling
    stopping at the gate's thresholds."""
    spec = settled.spec
    return dataclasses.replace(spec.validation, judge=settled.judge or spec.validation.judge,
                               judge_model=judge_model(spec), limits=limits(spec.gate))


TOY_JUDGES = ("clip", "vqa")   # judges the toy world ships weights of (jobs/toyworld/train_clip.py, train_vqa.py)


def judge_model(spec: CampaignSpec) -> str:
    """validation.judge_model, else the toy world's own CLIP or VQA for a toy-world model judged by clip or vqa."""
    judge = spec.validation.judge
    toy = toyworld_dir() / judge
    if not spec.validation.judge_model and judge in TOY_JUDGES and spec.model == TOY and toy.is_dir():
        return str(toy)
    return spec.validation.judge_model
