"""CLIP as a zero-shot judge: is there a <concept> in the image, over the labels of the concept set.

Each label is the mean text embedding of the set's templates for it (a prompt ensemble, as the
CLIP-accuracy scripts of MACE and UCE do with their class lists). An image's posterior is the
softmax over every label of the set (and any thin concept of the suite), the superclasses apart from the rest
(a softmax of their own: "round" would otherwise take half of a circle's probability, and a circle drawn
plainly would score like a shape half-erased into something else); the concept is judged
present when its probability reaches a threshold calibrated on the base model's own images:
for each concept, fitted on one half of them to a stated false-positive target and checked on the
other half (jobs/validation/judges/calibration.py). Calibrated from the cached baseline, so every gate of a
campaign uses the same thresholds. The model: a `transformers` CLIP from a hub id or a local
directory (validation.judge_model).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPModel

from erasecore.concepts import ConceptEntry, ConceptSet
from erasecore.contracts import JudgeIdentity
from jobs.models.precision import frozen_dtype
from jobs.validation.judges import calibration
from jobs.validation.judges.calibration import Scored
from jobs.validation.judges.checkpoint import load_checkpoint
from jobs.validation.judges.identity import checkpoint_weights, versions, weight_hashes
from jobs.validation.judges.pixels import normalisation, pixel_batch
from jobs.validation.observations import Observation
from jobs.validation.providers import Provider
from jobs.validation.suite import Suite

GENERIC = ("a photo of a {}", "a picture of a {}")
SCORING = "superclass-softmax-apart"


class ClipJudge:
    name = "clip"

    def __init__(self, concept_set: ConceptSet, model_ref: str, device: str = "cpu", precision: str = "fp32"):
        self.concept_set, self.device = concept_set, device
        self.model, self.tokenizer, self.size, self.mean, self.std = _load(model_ref, device)
        self.model.to(frozen_dtype(precision, device))   # a frozen judge, like the text encoders
        self.labels = [n for n, e in concept_set.concepts.items() if e.kind != "attribute"]
        self.thresholds: dict[str, float] = {}
        self.calibration: dict[str, dict[str, float]] = {}   # per concept: threshold, fit and check halves
        # the scoring's name is in the baseline cache's key: cached posteriors of another scoring are not reused
        self.cache_id = f"clip:{SCORING}:{model_ref}:{concept_set.source}"
        self.model_ref = model_ref
        self._text: torch.Tensor | None = None

    @property
    def posterior_split(self) -> int:
        return len(self.labels)

    def why_not(self, group: str, entry: ConceptEntry) -> str | None:
        if group == "leakage":
            return "zero-shot CLIP over concept labels does not tell which object carries an attribute"
        return None

    def observe(self, suite: Suite, keys: list[tuple[int, int]], images: np.ndarray) -> list[Observation]:
        self._add_labels(suite)
        probs = self.posteriors(images)
        return [self._observation(suite, item, seed, p) for (item, seed), p in zip(keys, probs)]

    @functools.cached_property
    def weights(self) -> dict[str, str]:
        """The sha256 of each weight file the checkpoint loaded from (hashed once per judge)."""
        return weight_hashes(*checkpoint_weights(self.model_ref))

    def identity(self) -> JudgeIdentity:
        """The checkpoint's weight files, the labels, and each concept's threshold once calibrated."""
        return JudgeIdentity(
            name=self.name, source=self.model_ref, weights=self.weights, classes=tuple(self.labels),
            thresholds={c: float(t) for c, t in self.thresholds.items()},
            rule="softmax over the labels' prompt-ensemble embeddings (superclasses apart); a concept is seen at "
                 "or above its threshold, fitted on one half of the base model's images: the best hit rate minus "
                 f"false-positive rate with false positives at or under {calibration.FALSE_POSITIVE_TARGET} on "
                 "images drawn for other concepts (checked on the other half: calibration; 0.5 before calibration)",
            calibration={c: dict(r) for c, r in self.calibration.items()},
            libraries=versions("transformers", "torch"))

    def calibrate(self, suite: Suite, base: list[Observation]) -> list[Observation]:
        """Thresholds from the base model's own images; the base observations re-judged with them."""
        self._add_labels(suite)
        for concept in dict.fromkeys(suite.items[o.item].concept for o in base):
            j = self.labels.index(concept)
            scored = [Scored(o.posterior[j], suite.items[o.item].concept == concept, o.item, o.seed) for o in base]
            fitted = calibration.calibrate(concept, scored)
            self.thresholds[concept] = fitted.threshold
            self.calibration[concept] = fitted.row()
        return [self._observation(suite, o.item, o.seed, np.asarray(o.posterior)) for o in base]

    @torch.no_grad()
    def posteriors(self, images: np.ndarray) -> np.ndarray:
        """Softmax over the labels, the superclasses' apart from the others', one row per uint8 RGB image."""
        pixels = pixel_batch(images, self.size, self.mean, self.std).to(self.device, self.model.dtype)
        feats = _features(self.model.get_image_features(pixel_values=pixels))
        feats = feats / feats.norm(dim=-1, keepdim=True)
        logits = (self.model.logit_scale.exp() * feats @ self._text_embeddings().T).float()
        p = torch.empty_like(logits)
        for level in self.levels():
            p[:, level] = logits[:, level].softmax(-1)
        return p.cpu().numpy().astype(np.float64)

    def levels(self) -> list[list[int]]:
        """Label indices by level: the superclasses, and every other label (objects, variants, styles ...)."""
        parent = [self.concept_set.entry(label, allow_thin=True).kind == "superclass" for label in self.labels]
        return [ix for ix in ([i for i, s in enumerate(parent) if s], [i for i, s in enumerate(parent) if not s])
                if ix]

    def _observation(self, suite: Suite, item: int, seed: int, p: np.ndarray) -> Observation:
        concept = suite.items[item].concept
        hit = p[self.labels.index(concept)] >= self.thresholds.get(concept, 0.5)
        return Observation(item, seed, bool(hit), tuple(float(x) for x in p))

    def _add_labels(self, suite: Suite) -> None:
        new = [c for c in dict.fromkeys(i.concept for i in suite.items) if c not in self.labels]
        if new:
            self.labels += new
            self._text = None

    @torch.no_grad()
    def _text_embeddings(self) -> torch.Tensor:
        if self._text is None:
            rows = []
            for label in self.labels:
                entry = self.concept_set.entry(label, allow_thin=True)
                prompts = [t.format(w) for w in entry.words for t in self.concept_set.templates.get(entry.kind, GENERIC)]
                ids = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(self.device)
                e = _features(self.model.get_text_features(**ids))
                e = (e / e.norm(dim=-1, keepdim=True)).mean(0)
                rows.append(e / e.norm())
            self._text = torch.stack(rows)
        return self._text


def _features(out) -> torch.Tensor:
    """transformers 5 returns a model output (projected embeddings in pooler_output); 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _load(ref: str, device: str):
    model, tokenizer = load_checkpoint(CLIPModel, ref, device, "the CLIP judge")
    mean, std = normalisation(Path(ref))
    return model, tokenizer, model.config.vision_config.image_size, mean, std


PROVIDER = Provider(ClipJudge)   # the judge catalog names it (erasecore/judges.py)
