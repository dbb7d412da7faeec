"""The guarded pipeline: a campaign's erased model served behind a prompt pre-filter, a forgetting controller,
an output audit by the campaign's own judge, and an append-only audit log.

    from jobs.models.loader import load_pipeline
    from jobs.serving.guarded import GuardedPipeline

    pipe = load_pipeline("toyworld")                                  # the campaign's base model, any family
    guard = GuardedPipeline(pipe, "runs/toy/exports/toy-step2-lora-per-concept", log="audit.jsonl")
    result = guard("a small red star", seed=0)    # result.verdict, result.image (None when withheld), result.record

The bundle is a per-concept export with guard.json beside adapters.json (`erase guard CAMPAIGN --prepare-only`
writes it; erasecore/serving.py). For each prompt, in order:

1. pre-filter (erasecore/prompt_filter.py, built from the campaign's concept set for the committed concepts,
   reading unlisted words with the pipeline's own text encoder): which erased concepts the prompt touches.
   on_detect="block": a touching prompt is refused (blocked_prompt), nothing is drawn.
2. controller: policy "touched" switches on the adapters of the concepts the prompt touches (none: the base
   model draws it); "all" keeps every adapter on (the committed model). `negative=True` puts the names of the
   concepts whose adapters are on into the negative prompt.
3. generation, with the campaign's gate settings (steps, guidance).
4. audit: the campaign's judge, with the identity and thresholds its gates recorded (a judge whose weights
   differ from the gate's is refused), asks of the image each erased concept's question. One seen:
   blocked_image (the image is withheld) or flagged (returned, marked).
5. one AuditRecord appended to the log (erasecore/audit_log.py), whatever the verdict.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from erasecore.audit_log import AuditLog, AuditRecord, prompt_sha256
from erasecore.concepts import load_concept_set
from erasecore.contracts import ValidationSpec
from erasecore.errors import ConfigError
from erasecore.prompt_filter import FilterVerdict, PromptFilter
from erasecore.serving import ON_DETECT, POLICIES, GuardSpec, read_guard_spec
from jobs.serving.text_encoder import TextEncoderEmbedder
from jobs.validation.concept_suite import TextPrompt
from jobs.validation.judges import load_judge
from jobs.validation.judges.identity import identity_of
from jobs.validation.suite import Suite, SuiteItem
from jobs.validation.validator import images_from

ADAPTERS = "adapters.json"


@dataclass(frozen=True)
class Seen:
    """What the audit's judge says of one image about one erased concept."""

    concept: str
    seen: bool
    score: float | None          # the judge's probability (or detector score) for the concept, where it has one


@dataclass(frozen=True)
class GuardResult:
    prompt: str
    verdict: str                 # allowed | blocked_prompt | blocked_image | flagged
    image: np.ndarray | None     # uint8 H x W x 3; None when withheld or never drawn
    filtered: FilterVerdict
    audit: tuple[Seen, ...]
    record: AuditRecord


class Audit:
    """The output audit: the campaign's judge, as its gates recorded it, asked each erased concept's question."""

    def __init__(self, spec: GuardSpec, concept_set=None, judge=None, device: str = "cpu"):
        self.spec = spec
        self.concept_set = concept_set or load_concept_set(spec.concepts_from)
        self.judge = judge if judge is not None else load_judge(spec.judge, self.concept_set, spec.judge_model,
                                                                device, spec.frozen_precision)
        self.thresholds_from = use_gate_thresholds(self.judge, spec)
        identity = identity_of(self.judge)
        self.record = {"name": identity.name, "weights": dict(identity.weights), "thresholds_from": self.thresholds_from}
        self.thresholds = dict(identity.thresholds)
        self.suite = Suite("(guard)", tuple(SuiteItem(TextPrompt(c), "target", c) for c in spec.erased))

    def see(self, images: np.ndarray) -> list[tuple[Seen, ...]]:
        """Per image (uint8, N x H x W x 3): what the judge sees of each erased concept."""
        n = len(self.spec.erased)
        if not len(images):
            return []
        keys = [(c, 0) for _ in range(len(images)) for c in range(n)]
        observations = self.judge.observe(self.suite, keys, np.repeat(np.asarray(images), n, axis=0))
        return [tuple(Seen(c, bool(o.hit), concept_score(self.judge, c, o))
                      for c, o in zip(self.spec.erased, observations[k * n:(k + 1) * n])) for k in range(len(images))]


def verdict_of(touched: bool, seen: tuple[Seen, ...] | None, on_detect: str) -> str:
    """blocked_prompt | blocked_image | flagged | allowed (`seen` None: nothing was drawn)."""
    if seen is None:
        return "blocked_prompt"
    if any(s.seen for s in seen):
        return "blocked_image" if on_detect == "block" else "flagged"
    return "flagged" if touched else "allowed"


def reasons_of(filtered: FilterVerdict, seen: tuple[Seen, ...] | None, judge: str) -> tuple[str, ...]:
    out = [f"the prompt asks for {m.concept}: {m.text!r} ({m.how}{'' if m.how == 'encoder' else ' ' + m.kind}, "
           f"{m.score:.2f})" for m in filtered.matches]
    return tuple(out + [f"the {judge} judge sees {s.concept} in the image" for s in seen or () if s.seen])


def audit_record(spec: GuardSpec, audit: Audit, prompt: str, seed: int | None, filtered: FilterVerdict, policy: str,
                 on_detect: str, active: tuple[str, ...] | None, negative: str, seen: tuple[Seen, ...] | None,
                 verdict: str, seconds: float, image: str = "") -> AuditRecord:
    """One decision as the audit log keeps it (erasecore/audit_log.py has the schema)."""
    scores = {c: {"seen": None, "score": None} for c in spec.erased} if seen is None else \
        {s.concept: {"seen": s.seen, "score": None if s.score is None else round(s.score, 6)} for s in seen}
    return AuditRecord(
        campaign=spec.campaign, model=spec.model, prompt_sha256=prompt_sha256(prompt), seed=seed,
        concepts_matched=tuple({"concept": m.concept, "wording": m.wording, "kind": m.kind, "how": m.how,
                                "span": [m.start, m.end], "score": m.score} for m in filtered.matches),
        policy=policy, on_detect=on_detect, adapters_active=None if active is None else tuple(active),
        negative_prompt=negative, judge=audit.record, thresholds=audit.thresholds, judge_scores=scores,
        verdict=verdict, reasons=reasons_of(filtered, seen, spec.judge), seconds=round(seconds, 4), image=image)


class GuardedPipeline:
    """A diffusers pipeline of the campaign's base model, guarded (module docstring)."""

    def __init__(self, pipe, bundle: str | Path, policy: str = "touched", on_detect: str = "block",
                 negative: bool = False, log: str | Path | None = None, encoder: bool = True,
                 spec: GuardSpec | None = None, judge=None):
        check_policy(policy, on_detect)
        self.pipe, self.bundle = pipe, Path(bundle)
        self.spec = spec or read_guard_spec(self.bundle)
        self.policy, self.on_detect, self.negative = policy, on_detect, negative
        self.log = AuditLog(log) if log is not None else None
        self.adapters = {c.concept: c.adapter for c in self.spec.concepts}
        paths = adapter_paths(self.bundle, self.spec)
        loaded = {name for names in self.pipe.get_list_adapters().values() for name in names}
        for name, path in paths.items():
            if name not in loaded:
                with warnings.catch_warnings():   # peft's note that a second adapter is one more adapter
                    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                    self.pipe.load_lora_weights(str(path), adapter_name=name)
        self.pipe.disable_lora()
        concept_set = load_concept_set(self.spec.concepts_from)
        embedder = TextEncoderEmbedder(pipe) if encoder and TextEncoderEmbedder.available(pipe) else None
        self.filter = PromptFilter.build(concept_set, self.spec.erased, embedder=embedder)
        self.audit = Audit(self.spec, concept_set, judge, str(pipe.device))
        self.settings = ValidationSpec(inference_steps=self.spec.inference_steps,
                                       guidance_scale=self.spec.guidance_scale)

    # -- the steps --

    def check(self, prompt: str) -> FilterVerdict:
        """The pre-filter's verdict, read with the base text encoder (every adapter off)."""
        self.pipe.disable_lora()
        return self.filter.check(prompt)

    def controller(self, touched: tuple[str, ...]) -> tuple[str, ...]:
        """The adapters to switch on for a prompt touching `touched`, by policy."""
        concepts = self.spec.erased if self.policy == "all" else touched
        return tuple(dict.fromkeys(self.adapters[c] for c in concepts))   # a group step's members share one

    def switch(self, active: tuple[str, ...]) -> None:
        if active:
            self.pipe.enable_lora()
            self.pipe.set_adapters(list(active), [1.0] * len(active))
        else:
            self.pipe.disable_lora()

    def negative_prompt(self, active: tuple[str, ...]) -> str:
        if not self.negative:
            return ""
        return ", ".join(c.concept for c in self.spec.concepts if c.adapter in active)

    def draw(self, prompt: str, negative: str, seed: int) -> np.ndarray:
        inputs = {"prompt": [prompt], **({"negative_prompt": [negative]} if negative else {})}
        return images_from(self.pipe, inputs, [torch.Generator().manual_seed(seed)], self.settings)[0]

    # -- one decision --

    def __call__(self, prompt: str, seed: int = 0, save_to: str | Path | None = None) -> GuardResult:
        t0 = time.perf_counter()
        filtered = self.check(prompt)
        if filtered.touched and self.on_detect == "block":
            return self._decide(prompt, None, filtered, None, "", None, None, t0, None)
        active = self.controller(filtered.concepts)
        self.switch(active)
        negative = self.negative_prompt(active)
        image = self.draw(prompt, negative, seed)
        seen = self.audit.see(image[None])[0]
        verdict = verdict_of(filtered.touched, seen, self.on_detect)
        return self._decide(prompt, seed, filtered, active, negative, seen, None if verdict == "blocked_image"
                            else image, t0, save_to)

    def _decide(self, prompt, seed, filtered, active, negative, seen, image, t0, save_to) -> GuardResult:
        written = ""
        if image is not None and save_to is not None:
            written = save_image(image, Path(save_to), self.log.path.parent if self.log else Path(save_to).parent)
        verdict = verdict_of(filtered.touched, seen, self.on_detect)
        record = audit_record(self.spec, self.audit, prompt, seed, filtered, self.policy, self.on_detect, active,
                              negative, seen, verdict, time.perf_counter() - t0, written)
        if self.log is not None:
            self.log.append(record)
        return GuardResult(prompt, verdict, image, filtered, tuple(seen or ()), record)


def check_policy(policy: str, on_detect: str) -> None:
    if policy not in POLICIES:
        raise ConfigError(f"--policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if on_detect not in ON_DETECT:
        raise ConfigError(f"--on-detect must be one of {', '.join(ON_DETECT)}, got {on_detect!r}")


def adapter_paths(bundle: Path, spec: GuardSpec) -> dict[str, Path]:
    """adapter name -> its directory, for every concept guard.json names (ConfigError if adapters.json lacks one)."""
    listing = json.loads((Path(bundle) / ADAPTERS).read_text(encoding="utf-8"))["adapters"]
    paths = {a["adapter"]: Path(bundle) / a["adapter"] for a in listing}
    missing = [c.adapter for c in spec.concepts if c.adapter not in paths]
    if missing:
        raise ConfigError(f"{Path(bundle) / ADAPTERS} has no adapter {missing[0]!r}, which guard.json names")
    return {c.adapter: paths[c.adapter] for c in spec.concepts}


def save_image(image: np.ndarray, path: Path, base: Path) -> str:
    """Write a PNG; its path relative to `base` when inside it, else absolute."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    full, root = path.resolve(), base.resolve()
    return str(full.relative_to(root)) if full.is_relative_to(root) else str(full)


def use_gate_thresholds(judge, spec: GuardSpec) -> str:
    """Set the gates' thresholds on `judge` and check it is the gates' instrument; say where they came from.

    ConfigError when the judge loaded here has other weights than the gate's, or its thresholds cannot be set."""
    gate = spec.gate_judge()
    if gate is None:
        return "the judge's defaults: this campaign's gate reports name no judge"
    mine = identity_of(judge)
    if gate.name != mine.name or (gate.weights and dict(mine.weights) != dict(gate.weights)):
        theirs = ", ".join(f"{f} {h[:12]}" for f, h in gate.weights.items()) or "-"
        here = ", ".join(f"{f} {h[:12]}" for f, h in mine.weights.items()) or "-"
        raise ConfigError(f"the audit's judge is not the one the gates used: {mine.name} ({here}) here, "
                          f"{gate.name} ({theirs}) in the gate reports")
    want = spec.thresholds()
    if want:
        if isinstance(getattr(judge, "thresholds", None), dict):
            judge.thresholds.update(want)
        elif hasattr(judge, "threshold") and len(set(want.values())) == 1:
            judge.threshold = next(iter(want.values()))
        have = identity_of(judge).thresholds
        wrong = sorted(k for k, v in want.items() if have.get(k) != v)
        if wrong:
            raise ConfigError(f"cannot set the gates' thresholds on the {mine.name} judge ({wrong[0]}: gate "
                              f"{want[wrong[0]]}, here {have.get(wrong[0])})")
    return "the gate reports' (judge identity and thresholds of each committed step)"


def concept_score(judge, concept: str, observation) -> float | None:
    """The judge's own number for `concept` in one observation, where it has one."""
    post = observation.posterior
    world, evaluator = getattr(judge, "world", None), getattr(judge, "evaluator", None)
    if world is not None and evaluator is not None:   # the toy world's: shape posterior over the concept's objects
        c = world.concept(concept)
        shapes = evaluator.classes["shape"]
        members = world.members(c) or ((c.shape,) if getattr(c, "shape", "") else ())
        return float(sum(post[shapes.index(m)] for m in members)) if members else None
    labels = getattr(judge, "labels", None)
    if labels and concept in labels:
        return float(post[labels.index(concept)])
    if getattr(judge, "posterior_split", 0) == 2:   # a presence judge: (p, 1 - p)
        return float(post[0])
    return None


def serve(bundle: str | Path, prompts: list[str], out: Path, policy: str = "touched", on_detect: str = "block",
          negative: bool = False, log: Path | None = None, seed: int = 0, report=print) -> list[GuardResult]:
    """`erase guard`: load the bundle's base model, guard every prompt, write the images it keeps into `out`."""
    from jobs.models.loader import load_pipeline
    from jobs.training.distributed import device

    spec = read_guard_spec(bundle)
    pipe = load_pipeline(spec.model, device=str(device()), frozen_precision=spec.frozen_precision)
    guard = GuardedPipeline(pipe, bundle, policy, on_detect, negative, log or out / "audit.jsonl", spec=spec)
    results = []
    for i, prompt in enumerate(prompts):
        result = guard(prompt, seed=seed, save_to=out / f"{i:04d}.png")
        results.append(result)
        report(result)
    return results
