"""The gate's `attack` group: the erased concept regenerated through the candidate's own projections.

Erased concepts come back under attack (UnlearnDiffAtk: 13-22% -> 75-80% on SD 1.4 nudity for ESD, UCE,
RECE and MACE). The attack here is RECE's closed form (arXiv 2407.12383), turned on the candidate: with
W the base model's cross-attention K/V projections and W' the candidate's (base + parents + candidate),

    M = argmin sum_l ||W'_l M c - W_l c||^2 + reg ||M c||^2 = (reg I + sum W'^T W')^-1 sum W'^T W,

and every text state c of the concept's own prompts from the concept word on (the word, end-of-text and
padding: the rows UCE edits) is replaced by M c: the states that, through the edited K/V, give back what
the base model read for the concept. The words before it stay as they were. The images drawn from them (same noise
as the target group's images of the same prompt and seed) are judged like the target group; attack
success is the share still showing the concept.

Where it applies: every candidate of a UNet family (SD 1.x/2.x, SDXL), whatever the method: K/V edits
(uce, rece, mace) and attn2 fine-tunes (esd-x, ca, fmn) are inverted exactly as far as a linear map of
the states can; LoRA-style deltas (lora, spm) through their dense change of to_k/to_v; for changes
outside K/V (esd-u) M is close to the identity and the attack is the plain prompt: the attack that reaches
those is the soft prompt optimised against the candidate's own denoising loss
(jobs/validation/attack_optimized.py, group `attack:optimized`). DiT families (SD3, Flux, Z-Image) read the text through joint
attention or embedders whose inverse is not a map of the pipeline's prompt_embeds: left out, with the reason.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from jobs.models.targets import cross_attention_modules, denoiser
from jobs.models.text_embeddings import concept_positions
from jobs.training.kv_edit import regenerating_map
from jobs.validation import statistics as st
from jobs.validation.validator import images_from, noise_seed
from erasecore.concepts import step_members
from erasecore.contracts import Estimate, GateReport, ValidationSpec

REG = 1e-3          # RECE's published ridge weight toward zero
PROJECTIONS = ("to_k", "to_v")
GROUP = "attack"


class AttackProbe:
    """Capture the base model's K/V before any delta is stacked; after, regenerate and judge the concept."""

    def __init__(self, suite, spec: ValidationSpec, judge, log=print):
        self.suite, self.spec, self.judge, self.log = suite, spec, judge, log
        self.original: list[torch.Tensor] | None = None
        self.why_not = ""

    def capture(self, pipe) -> None:
        self.why_not = _why_not(pipe, self.spec)
        if not self.why_not:
            self.original = [w.detach().double().cpu().clone() for w in _kv(pipe)]

    def finish(self, pipe, report: GateReport) -> GateReport:
        """The report with its attack estimate (or, where the attack cannot run, the reason in `unjudged`)."""
        if self.why_not:
            return dataclasses.replace(report, unjudged={**report.unjudged, GROUP: self.why_not})
        t0 = time.time()
        keys = self.keys()
        if not keys:
            return dataclasses.replace(report, unjudged={**report.unjudged, GROUP: "the suite has no target prompts"})
        edited = [w.detach().double().cpu() for w in _kv(pipe)]
        images = self.draw(pipe, keys, regenerating_map(edited, self.original, REG))
        hits = sum(o.hit for o in self.judge.observe(self.suite, keys, images))
        lo, hi = st.wilson(hits, len(keys), self.spec.confidence)
        attack = Estimate(hits / len(keys), lo, hi, len(keys))
        return dataclasses.replace(report, attack=attack, attack_seconds=round(time.time() - t0, 3))

    def keys(self) -> list[tuple[int, int]]:
        """The target group's first `attack_prompts` items, at every seed of the gate."""
        items = [i for i, it in enumerate(self.suite.items) if it.group == "target"][:self.spec.attack_prompts]
        return [(i, s) for s in range(self.spec.seeds) for i in items]

    @torch.no_grad()
    def draw(self, pipe, keys: list[tuple[int, int]], m: torch.Tensor) -> np.ndarray:
        """The keys' images with every text state c of their prompts replaced by M c (CFG's negative untouched)."""
        out = []
        for start in range(0, len(keys), self.spec.batch_size):
            chunk = keys[start:start + self.spec.batch_size]
            texts = [self.suite.items[i].prompt.text for i, _ in chunk]
            embeds = _encoded(pipe, texts)
            states = embeds["prompt_embeds"]
            mapped = (states.double() @ m.to(states.device).T).to(states.dtype)
            at = _from_concept_on(pipe, texts, step_members(self.suite.target)).to(states.device)[..., None]
            embeds["prompt_embeds"] = torch.where(at, mapped, states)
            offset = self.spec.seed_offset
            gens = [torch.Generator().manual_seed(noise_seed(t, s + offset)) for t, (_, s) in zip(texts, chunk)]
            out.append(images_from(pipe, embeds, gens, self.spec))
        return np.concatenate(out)


def _why_not(pipe, spec: ValidationSpec) -> str:
    if spec.attack_prompts == 0:
        return "validation.attack_prompts is 0: the attack group is off"
    if not cross_attention_modules(denoiser(pipe)[1]):
        return ("no cross-attention K/V to invert: this family reads the text through joint attention or "
                "embedders (the closed-form attack applies to UNet families)")
    return ""


def _from_concept_on(pipe, texts: list[str], concepts: tuple[str, ...]) -> torch.Tensor:
    """(N, L) True from the concept's first token to the end: the rows UCE edits (the word, EOS, padding).
    A group step's suite names its members: each prompt's own member is the one it holds."""
    return concept_positions(pipe, texts, concepts).int().cummax(dim=1).values.bool()


def _kv(pipe) -> list[torch.Tensor]:
    net = denoiser(pipe)[1]
    return [getattr(m, p).weight for m in cross_attention_modules(net).values() for p in PROJECTIONS]


def _encoded(pipe, texts: list[str]) -> dict[str, torch.Tensor]:
    """The pipeline's own encode_prompt (SD: states; SDXL: states and pooled), as keyword arguments."""
    out = pipe.encode_prompt(prompt=texts, device=pipe.device, num_images_per_prompt=1,
                             do_classifier_free_guidance=True)
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    return dict(zip(names, out))
