"""The judge catalog: one typed entry per judge, the only place a judge's facts live. Pure.

Judges are found through the entry-point group `concept_erase.judges`: each entry point names a
`JudgeEntry` (pure data, in a pure module), and the shipped judges register the same way, in this
project's pyproject.toml. An entry names its worker code by a "module:attribute" string (`provider`),
which only a worker imports (jobs/validation/providers.py): the orchestrator reads the catalog at
config time without importing any of it.

"auto" is the judge of the model's own world (the toy world's evaluator for the toy model), else the
judge the campaign's concept set names; "toyworld" also for another pipeline that draws the toy
world (e.g. an SDXL trained on it); "nudenet" the NudeNet detector; "clip" zero-shot CLIP and "vqa" a
BLIP-VQA model asking yes/no questions, both from validation.judge_model; "toyworld-set" the toy world's
evaluator asked the concept-set suite's questions (what separates a generic gate's suite from its judge).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import entry_points

from erasecore.errors import ConfigError
from erasecore.models import TOY

GROUP = "concept_erase.judges"
AUTO = "auto"


@dataclass(frozen=True)
class JudgeEntry:
    name: str
    provider: str                  # "module:attribute" of the worker's provider (jobs/validation/providers.py)
    summary: str                   # what it judges
    needs_model: bool = False      # its weights come from validation.judge_model
    example_weights: str = ""      # a hub id to name in the error when validation.judge_model is missing
    concept_set: str = ""          # its own concept set (configs/concepts/), taken when concepts_from is ""
    model: str = ""                # the model whose own world it judges: "auto" picks it for that model
    variants: bool = False         # it judges variants (an object with attribute values fixed)
    sweep: bool = False            # its provider builds the final sweep's suite (validation.final_sweep)
    world_prompts: bool = False    # its provider gives the erase step's prompts for a model that draws its world
    order: int = 100               # where it is listed (messages, docs): the shipped ones first, then by name


TOYWORLD = JudgeEntry(
    "toyworld", "jobs.toyworld.provider:PROVIDER",
    "the toy world's evaluator: object, colour, size and material of each image (pair scenes half by half)",
    concept_set="toyworld", model=TOY, variants=True, sweep=True, world_prompts=True, order=0)
NUDENET = JudgeEntry("nudenet", "jobs.validation.judges.nudenet:PROVIDER",
                     "the NudeNet detector (its ONNX model ships in the nudenet wheel)", concept_set="nudity", order=1)
CLIP = JudgeEntry("clip", "jobs.validation.judges.clip:PROVIDER", "zero-shot CLIP over the concept set's labels",
                  needs_model=True, example_weights="openai/clip-vit-large-patch14", order=2)
VQA = JudgeEntry("vqa", "jobs.validation.judges.vqa:PROVIDER", "BLIP-VQA asked yes/no questions per concept",
                 needs_model=True, example_weights="Salesforce/blip-vqa-base", order=3)
TOYWORLD_SET = JudgeEntry(
    "toyworld-set", "jobs.toyworld.set_judge:PROVIDER",
    "the toy world's evaluator asked a concept-set suite's questions (the generic path judged by the truth)",
    concept_set="toyworld", order=4)


@functools.lru_cache(maxsize=1)
def _catalog() -> dict[str, JudgeEntry]:
    """Every judge the installed packages register under the entry-point group, by name."""
    out: dict[str, JudgeEntry] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            entry = ep.load()
        except Exception as e:   # noqa: BLE001 - a plugin's import error is one line naming it
            raise ConfigError(f"judge plugin {ep.name} ({ep.value}) does not load: {type(e).__name__}: {e}") from None
        if not isinstance(entry, JudgeEntry) or entry.name != ep.name:
            raise ConfigError(f"judge plugin {ep.name} ({ep.value}) must name a JudgeEntry called {ep.name!r}")
        if ep.name in out and out[ep.name] != entry:
            raise ConfigError(f"two packages register the judge {ep.name!r} ({GROUP})")
        out[ep.name] = entry
    if not out:
        raise ConfigError(f"no judges are registered ({GROUP}): install the package (pip install -e .)")
    return dict(sorted(out.items(), key=lambda kv: (kv[1].order, kv[0])))


def names() -> tuple[str, ...]:
    """The judges this build has."""
    return tuple(_catalog())


def entries() -> tuple[JudgeEntry, ...]:
    """Every judge's entry, in listing order."""
    return tuple(_catalog().values())


def get(name: str) -> JudgeEntry:
    """The judge's entry; one ConfigError line naming the known ones otherwise."""
    try:
        return _catalog()[name]
    except KeyError:
        raise ConfigError(f"validation.judge {name!r} is not in this build (judges: {', '.join(names())})") from None


def find(name: str) -> JudgeEntry | None:
    """The judge's entry, or None when this build has no such judge ("auto" included)."""
    return _catalog().get(name)


def for_model(model: str) -> JudgeEntry | None:
    """The judge of the model's own world (the toy world's for the toy model), if one is registered."""
    return next((e for e in _catalog().values() if e.model and e.model == model), None)


def judge_for(model: str, judge: str, set_judge: str = "") -> str | None:
    """The judge a campaign's gates use, or None when this build has none for the model.

    "auto" is the judge of the model's own world, else the concept set's own judge when this build has it
    (`set_judge`, from configs/concepts/<set>.yaml).
    """
    if judge != AUTO:
        return judge
    own = for_model(model)
    if own is not None:
        return own.name
    return set_judge if set_judge in names() else None
