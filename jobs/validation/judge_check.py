"""The judge self-check's measurement: the base model's images of each concept's gate prompts, judged.

    check = check_judge(requests)          # one request per concept (orchestrator/judge_check.py builds them)
    erasecore.judge_check.require(check)   # one JudgeCheckError line if a concept is refused

A concept's suite is the one its gate builds (the judge's provider, as for_request does); of it, the target
and evasion prompts (the gate's base target accuracy) and the retain prompts are drawn with the validator's
generate, at the gate's seeds and noise. The judge answers the first as asked (hit rate) and the retain
images asked about the concept instead of their own (false positives). What it saw is cached in the gate's
baseline cache, so checking again (or a run's own check after `erase judge-check`) draws nothing.
"""
from __future__ import annotations

from collections.abc import Sequence

from erasecore import judge_check
from erasecore.contracts import StepRequest
from jobs.models.loader import load_pipeline
from jobs.training.distributed import device
from jobs.validation import sequential
from jobs.validation.judges.identity import identity_of
from jobs.validation.suite import Suite, SuiteItem
from jobs.validation.validator import (
    Validator,
    for_request,
    frozen_tag,
    generate,
    hit_rate,
    stratified_keys,
)

OTHER = "judge-check:other"   # a retain prompt's image, asked whether it shows the checked concept


def check_judge(requests: Sequence[StepRequest], pipe=None, log=print) -> judge_check.JudgeCheck:
    """Every request's concept measured on the base model (`pipe`, loaded from the first request if None)."""
    first = requests[0]
    if pipe is None:
        pipe = load_pipeline(first.model, device=str(device()), frozen_precision=first.frozen_precision)
    verdicts, judge = [], None
    for request in requests:
        validator, suite = for_request(request, request.validation.judge, log)
        rates = measure(validator, pipe, request.model, suite, log, share_baseline=request.step == 1)
        verdicts.append(judge_check.verdict(rates, request.validation.allow_weak_judge))
        judge = validator.judge
    v = first.validation
    return judge_check.JudgeCheck(identity_of(judge), first.model, v.seeds, v.confidence, tuple(verdicts))


def measure(validator: Validator, pipe, model: str, suite: Suite, log=print,
            share_baseline: bool = False) -> judge_check.JudgeRates:
    """The judge's hit and false-positive rates for the suite's concept on `pipe`'s images (cached).

    With share_baseline (the campaign's first concept, whose gate suite is the one checked: nothing erased
    before it) the images are that gate's own baseline, drawn as the gate draws them and cached for it (the
    gate then draws only its candidate), and judged once more as the check asks. A later concept's gate suite
    holds the concepts erased before it, so its check draws only its own prompts."""
    asked, check = split(suite)
    cache, judge, spec = validator.cache, validator.judge, validator.spec
    key = "judge-check-" + cache.key(model, check, spec, judge.cache_id, frozen_tag(pipe))
    seen = cache.load(key)
    if seen is None:
        drawn: dict = {}
        if share_baseline:   # a zero-shot judge is calibrated there, as the gate calibrates it
            validator.baseline(pipe, model, suite, drawn_images=lambda keys, images: drawn.update(k=keys, x=images))
        if drawn:
            keys, images = relabelled(suite, drawn["k"], drawn["x"])
        else:
            keys = stratified_keys(asked, spec.seeds)
            log(f"  judge-check {suite.target}: {len(keys)} base-model images")
            images = generate(pipe, asked, keys, spec)
            if hasattr(judge, "calibrate"):   # a zero-shot judge's thresholds, from these base images
                judge.calibrate(asked, judge.observe(asked, keys, images))
        seen = judge.observe(check, keys, images)   # own prompts as asked, the others' about the concept
        cache.save(key, seen)
    own = [o for o in seen if check.items[o.item].group != OTHER]
    other = [o for o in seen if check.items[o.item].group == OTHER]
    return judge_check.JudgeRates(suite.target, hit_rate(own, spec.confidence), hit_rate(other, spec.confidence))


def relabelled(suite: Suite, keys: list, images):
    """The baseline's images of the check's prompts, keyed by the check suite's items (split's order)."""
    own = [i for i, item in enumerate(suite.items) if sequential.check_kind(item.group) == "forgetting"]
    others = [i for i, item in enumerate(suite.items) if item.group.startswith("retain")]
    index = {i: j for j, i in enumerate(own + others)}
    rows = [r for r, (item, _) in enumerate(keys) if item in index]
    return [(index[keys[r][0]], keys[r][1]) for r in rows], images[rows]


def split(suite: Suite) -> tuple[Suite, Suite]:
    """(the prompts to draw, as the gate asks them; the same prompts as the check asks them).

    The concept's own prompts are its target and evasion groups; the others are the retain groups, whose items
    the check asks about the concept (group OTHER), where the gate asks about their own concept."""
    own = [i for i in suite.items if sequential.check_kind(i.group) == "forgetting"]
    others = [i for i in suite.items if i.group.startswith("retain")]
    asked = Suite(suite.target, tuple(own + others), suite.unjudged, suite.thin)
    probed = [SuiteItem(i.prompt, OTHER, suite.target) for i in others]
    return asked, Suite(suite.target, tuple(own + probed), suite.unjudged, suite.thin)
