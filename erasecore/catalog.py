"""The method catalog: one typed entry per erasure method, the only place a method's facts live.

Every table the project needs derives from here: the names a campaign may use, where the code
is (`entry`), the typed hyperparameter schema and its defaults, the strength knob the retry
policy turns, closed form or fine-tune, what the memory planner counts (forwards that keep a
graph, a frozen copy, the trained parameter set), the LoRA targets, and the families a method
cannot take and why. Pure: the orchestrator reads it at config time without torch, and the
worker's registry (jobs/methods/registry.py) imports `entry` from it.

The entries are found through the entry-point group `concept_erase.methods`: each entry point names
a MethodEntry (never the worker function, so reading the catalog imports no torch). The shipped ones
below register there in pyproject.toml like any plugin; a third-party distribution adds a method by
declaring one (docs/methods.md). Read lazily on first use of METHODS, CATALOG, METHOD_NAMES or get(),
then cached for the process; the shipped methods come first in SHIPPED's order, then plugins by name.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from erasecore.errors import MethodConfigError, MethodPluginError

PRECISIONS = ("no", "fp16", "bf16")
TUNED, PUBLISHED = "tuned", "published"


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type (int, float, str, bool, or list of str), default and allowed values."""

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple[Any, ...] = ()
    minimum: float | None = None     # inclusive lower bound for numbers
    maximum: float | None = None     # inclusive upper bound for numbers
    positive: bool = False           # numbers must be > 0

    def check(self, method: str, value: Any) -> None:
        """MethodConfigError (one line, naming hparams.<method>.<name>) unless `value` fits."""
        key = f"hparams.{method}.{self.name}"
        if not _is_type(value, self.type):
            raise MethodConfigError(f"{key} must be {_type_words(self.type)}, got {value!r}")
        if self.choices and value not in self.choices:
            raise MethodConfigError(f"{key} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.positive and value <= 0:
            raise MethodConfigError(f"{key} must be > 0, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise MethodConfigError(f"{key} must be >= {self.minimum:g}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise MethodConfigError(f"{key} must be <= {self.maximum:g}, got {value!r}")


@dataclass(frozen=True)
class TrainedSet:
    """Which denoiser parameters a method changes, found by module type (jobs/models/targets.py).

    kind: "none" (closed form on projections / LoRA factors only), "text_attention" (the
    text-facing attention projections named; UNet attn2, SD3's and Flux's joint-attention text
    stream, Z-Image's caption-only context_refiner blocks),
    "non_text_attention" (everything else but the conditioning embeddings), and two LoRAs of the
    `rank` hyperparameter that leave the denoiser's own weights frozen: "lora_block_linears" (every
    attention and feed-forward Linear inside the transformer blocks) and "lora_text_kv" (cross-attention K/V).
    """

    kind: str
    projections: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out")


@dataclass(frozen=True)
class MethodEntry:
    name: str
    entry: str                       # "module:function" of the worker code: erase(pipe, inputs) -> MethodOutput
    summary: str
    params: tuple[Param, ...]
    strength: str                    # the knob the retry policy multiplies (under-erased) or divides
    closed_form: bool = False        # no training loop: one process whatever resources.num_workers says
    graph_forwards: int = 2          # denoiser forwards per step that keep an autograd graph
    frozen_copy: bool = False        # keeps a frozen copy of the denoiser to make targets
    attention_probs: bool = False    # its loss reads cross-attention probabilities (kept for the backward)
    trains: TrainedSet = TrainedSet("none")
    artifact: str = "dense"          # "dense" differences or "lora" factors
    not_for: dict[str, str] = field(default_factory=dict)   # family -> why the method cannot apply
    # Named variants: "tuned" is the project's defaults (the params'); others change some of them, e.g.
    # "published" = the official code's. A campaign picks one with hparams.<method>.variant.
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def defaults(self, variant: str = TUNED) -> dict[str, Any]:
        """The hyperparameters a run gets when it sets nothing but (optionally) the variant."""
        base = {p.name: _copy(p.default) for p in self.params}
        return {**base, **self.variants.get(variant, {})} if variant != TUNED else base

    @property
    def default_strength(self) -> Any:
        return self.defaults()[self.strength]

    @property
    def lora_targets(self) -> tuple[str, ...]:
        return tuple(self.defaults().get("target_modules", ()))

    def check(self, given: dict[str, Any]) -> None:
        """MethodConfigError for an unknown or mistyped hyperparameter (what a campaign sets for this method)."""
        known = {p.name: p for p in self.params}
        for name, value in given.items():
            if name not in known:
                raise MethodConfigError(f"hparams.{self.name}: method {self.name!r} has no hyperparameter "
                                        f"{name!r}; known: {', '.join(sorted(known))}")
            known[name].check(self.name, value)

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """The defaults of the variant `given` names (tuned if none) with `given` on top, after checking `given`."""
        self.check(given)
        return {**self.defaults(given.get("variant", TUNED)), **given}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _is_type(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    if kind is list:
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return isinstance(value, kind)


def _type_words(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            list: "a list of strings"}[kind]


# ---- shared parameter shapes ----------------------------------------------------------------

def _finetune(steps: int, lr: float, batch: int) -> tuple[Param, ...]:
    return (Param("steps", int, steps, "optimizer steps", minimum=1),
            Param("lr", float, lr, "AdamW learning rate", positive=True),
            Param("batch", int, batch, "global batch (all workers together)", minimum=1),
            Param("grad_accum", int, 1, "micro-steps per optimizer step", minimum=1),
            Param("mixed_precision", str, "no", "GPU only; CPU always runs fp32", choices=PRECISIONS))


_PRESERVE = Param("preserve_weight", float, 1.0, "weight of the term that keeps other concepts' predictions",
                  minimum=0)
# Sequential erasure (CUIG, ICLR 2026): fine-tunes collapse over a long campaign as the model drifts away from
# the base, step after step; these pull the trained weights toward the base on the accumulated change.
# jobs/training/drift_penalty.py. 0 is off and adds nothing: the same delta bit for bit.
_DRIFT_WHAT = ("over the n trained weights (LoRA: the wrapped weights), theta_base the base model's before any "
               "committed delta of the campaign, so it penalises the accumulated change of every committed step "
               "plus this one; mean over elements, so a weight means the same for few or many trained weights; "
               "0: off")
_DRIFT = (Param("drift_l2", float, 0.0, "L2 pull toward the base model: the loss gains "
                f"drift_l2 * sum((theta - theta_base)^2) / n {_DRIFT_WHAT}", minimum=0),
          Param("drift_l1", float, 0.0, "L1 pull toward the base model: the loss gains "
                f"drift_l1 * sum(|theta - theta_base|) / n {_DRIFT_WHAT}", minimum=0))
def _variant(published: str) -> Param:
    return Param("variant", str, TUNED, f"{TUNED}: this project's defaults; {PUBLISHED}: {published}",
                 choices=(TUNED, PUBLISHED))


_ESD_PARAMS = (Param("eta", float, 1.0, "negative guidance: how far from the concept the target points",
                     minimum=0),) + _finetune(150, 5e-4, 16) + _DRIFT + (_PRESERVE,) + (
    Param("anchor", str, "without_concept", "what the target points to: the prompt without the concept, "
          "or the empty prompt (the official ESD)", choices=("without_concept", "empty")),
    _variant("the official diffusers script's: empty-prompt anchor, eta 2, no preservation, 200 steps "
             "at lr 5e-5, batch 1"))
# The official ESD script (diffusers): what differs is switched here; its x_t from a partial sampling run of
# the frozen model (here x0 generated once, forward-noised) and ESD-u's parameter set are not.
_ESD_PUBLISHED = {"anchor": "empty", "eta": 2.0, "preserve_weight": 0.0, "steps": 200, "lr": 5e-5, "batch": 1}
_NO_JOINT_TEXT_STATES = ("UCE's closed form edits the Linear maps that read the text encoder's states as they are; "
                         "SD3's context_embedder reads CLIP and T5 states joined along the sequence (CLIP's tokens "
                         "zero-padded to T5's width), so a concept sits at positions of two tokenizers, and the "
                         "alignment of concept tokens to anchor tokens is written for one")
_NO_CROSS_ATTENTION_PROBE = ("Forget-Me-Not minimises cross-attention maps read by a probe on UNet cross-attention "
                             "(attn2); SD3 has joint attention, which the probe does not read")
_NO_UNET_KV = ("{} through UNet cross-attention K/V (attn2), whose inputs are the text states alone; Flux "
               "and Z-Image have no cross-attention (their text enters joint or shared self-attention), and "
               "the text-embedder port UCE uses is not written for it")
_NO_FLUX_PROBE = ("Forget-Me-Not minimises cross-attention maps read by a probe on UNet cross-attention (attn2); "
                  "Flux's dual-stream blocks take one softmax over image and text tokens together inside "
                  "FluxAttnProcessor (no image-to-text map of its own), and its single-stream blocks cannot tell "
                  "the streams apart, so the probe has nothing to read")
_NO_ZIMAGE_PROBE = ("Forget-Me-Not minimises cross-attention maps read by a probe on UNet cross-attention (attn2); "
                    "Z-Image has no cross-attention: caption and image tokens share one self-attention in its main "
                    "layers, so no map of image queries over text keys exists for the probe to read")

UCE = MethodEntry(
    "uce", "jobs.methods.uce:erase",
    "Unified Concept Editing (arXiv 2308.14761): closed-form edit of the Linear maps that read the text "
    "encoder's output (UNet cross-attention K/V; Flux's context and pooled-text embedders; Z-Image's "
    "caption embedder)",
    (Param("lam", float, 0.5, "weight of the old projection", positive=True),
     Param("erase_scale", float, 1.0, "weight of the erase rows", minimum=0),
     Param("preserve_scale", float, 1.0, "weight of the preserve rows", minimum=0),
     Param("projections", list, ["to_k", "to_v"],
           "cross-attention projections edited (UNet families; DiTs edit their text embedders)"),
     Param("rows", str, "from_concept", "which text states are edited: every position from the concept "
           "word on, guided to the prompt without it (and preserving the words before), or the official "
           "script's last real token of each prompt, guided to the empty prompt",
           choices=("from_concept", "last_token")),
     _variant("the official script's: last real token per prompt, guided to the empty prompt, nothing "
              "preserved")),
    strength="erase_scale", closed_form=True, graph_forwards=0,
    not_for={"sd3": _NO_JOINT_TEXT_STATES},
    variants={PUBLISHED: {"rows": "last_token", "preserve_scale": 0.0}})
ESD_X = MethodEntry(
    "esd-x", "jobs.methods.esd:erase",
    "ESD-x (arXiv 2303.07345): negative-guidance fine-tune of text-facing attention",
    _ESD_PARAMS, strength="eta", frozen_copy=True, trains=TrainedSet("text_attention"),
    variants={PUBLISHED: _ESD_PUBLISHED})
ESD_U = MethodEntry(
    "esd-u", "jobs.methods.esd:erase",
    "ESD-u: the same loss on every other denoiser weight (larger lr, measured on the toy world)",
    tuple(Param("lr", float, 1e-3, p.help, positive=True) if p.name == "lr" else p for p in _ESD_PARAMS),
    strength="eta", frozen_copy=True, trains=TrainedSet("non_text_attention"),
    variants={PUBLISHED: _ESD_PUBLISHED})
FMN = MethodEntry(
    "fmn", "jobs.methods.fmn:erase",
    "Forget-Me-Not (arXiv 2303.17591): minimise the concept tokens' cross-attention",
    _finetune(35, 2e-3, 8) + _DRIFT, strength="steps", graph_forwards=1, attention_probs=True,
    trains=TrainedSet("text_attention", ("to_k", "to_v")),
    not_for={"sd3": _NO_CROSS_ATTENTION_PROBE, "flux": _NO_FLUX_PROBE, "zimage": _NO_ZIMAGE_PROBE})
CA = MethodEntry(
    "ca", "jobs.methods.ablation:erase",
    "Concept Ablation (arXiv 2303.13516): map the concept to its anchor on text-facing K/V",
    _finetune(150, 2e-3, 16) + _DRIFT + (_PRESERVE,), strength="steps", frozen_copy=True,
    trains=TrainedSet("text_attention", ("to_k", "to_v")))
LORA = MethodEntry(
    "lora", "jobs.methods.lora_reverse:erase",
    "LoRA reverse fine-tune: a switchable adapter trained to suppress the concept",
    (Param("rank", int, 8, "LoRA rank", minimum=1),
     Param("alpha", float, 16, "LoRA alpha (scale alpha / rank)", positive=True))
    + _finetune(200, 1e-3, 16) + _DRIFT
    + (Param("suppress_weight", float, 1.0, "weight of the suppression term", minimum=0),
       Param("retain_target", str, "frozen", "retain term: match the frozen model or the denoising target",
             choices=("frozen", "noise")),
       Param("target_modules", list, ["to_q", "to_k", "to_v"], "attention projections given adapters")),
    strength="suppress_weight", artifact="lora")
RECE = MethodEntry(
    "rece", "jobs.methods.rece:erase",
    "RECE (arXiv 2407.12383): UCE, then rounds erasing the embeddings that still regenerate the concept",
    (Param("lam", float, 0.1, "weight of the old projection (published 0.1)", positive=True),
     Param("erase_scale", float, 1.0, "weight of the erase rows", minimum=0),
     Param("preserve_scale", float, 1.0, "weight of the preserve rows", minimum=0),
     Param("rounds", int, 2, "derive-and-re-edit rounds after the first edit (published 1-3)", minimum=0),
     Param("reg", float, 1e-3, "ridge weight of the derived embedding (published 1e-3)", positive=True),
     Param("projections", list, ["to_k", "to_v"], "cross-attention projections edited")),
    strength="erase_scale", closed_form=True, graph_forwards=0,
    not_for={"sd3": _NO_JOINT_TEXT_STATES.replace("UCE's closed form", "RECE's closed forms (UCE's edit and "
                                                  "the regenerating embedding)"),
             "flux": _NO_UNET_KV.format("RECE derives its regenerating embedding"),
             "zimage": _NO_UNET_KV.format("RECE derives its regenerating embedding")})
SPM = MethodEntry(
    "spm", "jobs.methods.spm:erase",
    "SPM (arXiv 2312.16145): a rank-1 membrane LoRA on the transformer blocks' linears, ESD target + anchoring",
    (Param("rank", int, 1, "LoRA rank (published 1)", minimum=1),
     Param("alpha", float, 1.0, "LoRA alpha (published 1; scale alpha / rank)", positive=True),
     Param("eta", float, 1.0, "negative guidance of the erase target (published 1)", minimum=0))
    + _finetune(200, 1e-3, 8) + _DRIFT
    + (Param("anchor_weight", float, 1.0, "weight of latent anchoring on the preserve prompts", minimum=0),),
    strength="eta", trains=TrainedSet("lora_block_linears"), artifact="lora")
MACE = MethodEntry(
    "mace", "jobs.methods.mace:erase",
    "MACE (arXiv 2403.06135): closed-form K/V refinement, a masked-attention rank-1 LoRA, closed-form fusion",
    (Param("lam", float, 0.5, "weight of the old projection in the refinement (UCE's lam)", positive=True),
     Param("erase_scale", float, 1.0, "weight of the refinement's erase rows", minimum=0),
     Param("preserve_scale", float, 1.0, "weight of the refinement's preserve rows (published 0)", minimum=0),
     Param("rank", int, 1, "LoRA rank (published 1)", minimum=1),
     Param("alpha", float, 1.0, "LoRA alpha (scale alpha / rank)", positive=True),
     Param("mask_quantile", float, 0.7, "a pixel is in the concept's region above this quantile of its "
           "image's attention map", minimum=0))
    + _finetune(50, 1e-3, 4)
    + (Param("fuse_lam", float, 1e3, "weight of the refined weights in the fusion (published lamb 1e3)",
             positive=True),),
    strength="erase_scale", graph_forwards=1, attention_probs=True, trains=TrainedSet("lora_text_kv"),
    not_for={"sd3": _NO_JOINT_TEXT_STATES.replace("UCE's closed form", "MACE's refinement and fusion (UCE-style "
                                                  "closed forms) and its attention loss"),
             "flux": _NO_UNET_KV.format("MACE refines, masks and fuses"),
             "zimage": _NO_UNET_KV.format("MACE refines, masks and fuses")})

SPEED = MethodEntry(
    "speed", "jobs.methods.speed:erase",
    "null-space closed form for long lists (after SPEED, arXiv 2503.07392): UCE's erase rows solved only "
    "outside the subspace the preserved rows span, so preserved concepts map exactly as before",
    (Param("lam", float, 0.5, "weight of the update's norm", positive=True),
     Param("erase_scale", float, 1.0, "weight of the erase rows", minimum=0),
     Param("protect_energy", float, 0.99, "share of the preserved rows' energy whose directions the edit "
           "leaves untouched (0: none; 1: every direction the preserved rows reach)", minimum=0, maximum=1),
     Param("preserve_scale", float, 1.0, "weight of the preserve rows outside the protected subspace (UCE's)",
           minimum=0),
     Param("guide", str, "", "a word whose K/V the concept's take (its words replaced by it in the anchor "
           "prompts); empty: the concept's words removed"),
     Param("context", int, 64, "compositions '<target> and <preserved>' whose words after the concept are kept "
           "as they map (what the other object reads: its attributes stay its own)", minimum=0),
     Param("protect", str, "preserved", "which rows span the protected subspace: every preserved row (the "
           "preserve prompts, the words before the concept, the context) or the context alone (the rest kept "
           "by UCE's soft term)", choices=("preserved", "context")),
     Param("projections", list, ["to_k", "to_v"], "cross-attention projections edited")),
    strength="erase_scale", closed_form=True, graph_forwards=0,
    not_for={"sd3": _NO_JOINT_TEXT_STATES.replace("UCE's closed form", "the null-space closed form"),
             "flux": _NO_UNET_KV.format("the null-space edit solves"),
             "zimage": _NO_UNET_KV.format("the null-space edit solves")})

# The shipped methods in the catalog's own order (tables, benches and the help list them so); each is
# registered in pyproject.toml as an entry point of group concept_erase.methods, like a plugin's.
SHIPPED: tuple[MethodEntry, ...] = (UCE, ESD_X, ESD_U, FMN, CA, LORA, RECE, SPM, MACE, SPEED)

# ---- loading: the entry-point group ------------------------------------------------------------

GROUP = "concept_erase.methods"
DISTRIBUTION = "concept-erase"
_TRAINED_KINDS = ("none", "text_attention", "non_text_attention", "lora_block_linears", "lora_text_kv")
_LAZY = ("METHODS", "CATALOG", "METHOD_NAMES")   # module attributes read through _load (PEP 562 __getattr__)
_log = logging.getLogger(__name__)

# Read on first use (module __getattr__ below), then cached for the process:
METHODS: tuple[MethodEntry, ...]      # the shipped methods in SHIPPED's order, then plugins sorted by name
CATALOG: dict[str, MethodEntry]       # name -> entry, in METHODS' order
METHOD_NAMES: tuple[str, ...]         # the names a campaign may use, in METHODS' order


@dataclass(frozen=True)
class _Loaded:
    methods: tuple[MethodEntry, ...]
    broken: dict[str, str]            # entry-point name -> the one-line reason it was skipped


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        loaded = _load()
        return {"METHODS": loaded.methods, "CATALOG": {m.name: m for m in loaded.methods},
                "METHOD_NAMES": tuple(m.name for m in loaded.methods)}[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _load() -> _Loaded:
    """The catalog from the entry-point group concept_erase.methods: each entry point names a MethodEntry.

    A third-party entry point that cannot be loaded, is not a MethodEntry, names another method than its
    own, lacks a "module:function" worker, or claims a name already taken is skipped with one warning line
    naming its distribution and entry point: it never breaks the shipped methods or another plugin. A
    campaign that names it is then refused at config time, as an unknown method after that warning, and
    `get` (preflight's hyperparameters, the worker's registry) raises the warning's MethodPluginError.
    The shipped entries come from this module; when this project's own entry points are missing (metadata
    of an older install), SHIPPED stands in for them, with one warning to reinstall.
    """
    shipped = {m.name: m for m in SHIPPED}
    found: dict[str, MethodEntry] = {}
    broken: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        own = _normalized(dist) == _normalized(DISTRIBUTION)
        try:
            entry = _checked(ep)
            if found.get(entry.name) is entry:   # one distribution seen twice on sys.path (an egg-info beside)
                continue
            if entry.name in shipped and not (own and entry is shipped[entry.name]):
                raise MethodPluginError("the name is a shipped method's")
            if entry.name in found:
                raise MethodPluginError("the name is taken by an earlier entry point")
        except Exception as e:   # noqa: BLE001 - any failure of third-party code is one line, not a traceback
            why = str(e) if isinstance(e, MethodPluginError) else f"{type(e).__name__}: {e}"
            error = MethodPluginError(f"method plugin {ep.name!r} ({ep.value}) of distribution {dist}: {why}; "
                                      f"skipped")
            broken.setdefault(ep.name, str(error))
            _log.warning("warning: %s", error)
            continue
        found[entry.name] = entry
    missing = [name for name in shipped if name not in found]
    if missing:
        _log.warning("warning: the entry-point group %s lacks the shipped method(s) %s (the installed metadata "
                     "of %s predates them): using the built-in entries; reinstall (pip install -e .)",
                     GROUP, ", ".join(missing), DISTRIBUTION)
        found.update({name: shipped[name] for name in missing})
    plugins = sorted(name for name in found if name not in shipped)
    return _Loaded(tuple(found[name] for name in (*shipped, *plugins)), broken)


def _checked(ep: EntryPoint) -> MethodEntry:
    """The MethodEntry `ep` names; MethodPluginError saying what is wrong with it otherwise."""
    entry = ep.load()
    if not isinstance(entry, MethodEntry):
        raise MethodPluginError(f"names a {type(entry).__name__}, not an erasecore.catalog.MethodEntry")
    if entry.name != ep.name:
        raise MethodPluginError(f"names method {entry.name!r}, not {ep.name!r}")
    module, _, function = entry.entry.partition(":")
    if not module or not function:
        raise MethodPluginError(f"its worker {entry.entry!r} is not \"module:function\"")
    names = {p.name for p in entry.params}
    if entry.strength not in names:
        raise MethodPluginError(f"its strength {entry.strength!r} is none of its hyperparameters")
    if entry.artifact not in ("dense", "lora") or entry.trains.kind not in _TRAINED_KINDS:
        raise MethodPluginError(f"artifact {entry.artifact!r} / trains {entry.trains.kind!r} unknown")
    return entry


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def get(name: str) -> MethodEntry:
    """The entry of `name`; MethodConfigError naming the known methods (or why a plugin was skipped) otherwise."""
    loaded = _load()
    for entry in loaded.methods:
        if entry.name == name:
            return entry
    if name in loaded.broken:
        raise MethodPluginError(loaded.broken[name])
    known = ", ".join(m.name for m in loaded.methods)
    raise MethodConfigError(f"unknown method {name!r}; known methods: {known}")


def why_not(method: str, family: str) -> str | None:
    """Why `method` cannot apply to `family`, or None when it can."""
    return get(method).not_for.get(family)
