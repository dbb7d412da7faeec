"""The retain-set validator: generate a suite's prompts x seeds, judge them, compare with the base model.

The base model's observations are computed once per (model, suite, settings) and cached by hash.
With early_stop, images are generated in stratified chunks (sequential sampling) and the gate ends
as soon as every check is certified pass or one is certified fail (jobs/validation/sequential.py);
`seeds` x prompts is the budget.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from erasecore.atomic import atomic_write, atomic_write_text
from erasecore.concepts import step_members
from erasecore.contracts import Estimate, GateReport, ValidationSpec
from erasecore.models import resolve
from erasecore.phase_progress import NullProgress, ProgressWriter
from jobs.models.adapters import image_size
from jobs.training.distributed import peak_memory_mb
from jobs.validation import providers, sequential
from jobs.validation import statistics as st
from jobs.validation.judges.identity import identity_of
from jobs.validation.observations import Observation, drift_kl, label_changed
from jobs.validation.group_suite import group_gate
from jobs.validation.shards import InProcess, Spread
from jobs.validation.suite import EVASION_KINDS, Suite

Key = tuple[int, int]


def generate(pipe, suite: Suite, keys: list[Key], spec: ValidationSpec, on_batch=None) -> np.ndarray:
    """uint8 images for (item, seed) keys; each image's noise depends only on its seed and prompt.

    on_batch(n) is told after each batch how many of `keys` are drawn (progress; it changes nothing)."""
    images = []
    for i in range(0, len(keys), spec.batch_size):
        chunk = keys[i:i + spec.batch_size]
        prompts = [suite.items[k].prompt.text for k, _ in chunk]
        gens = [torch.Generator().manual_seed(noise_seed(suite.items[k].prompt.text, s + spec.seed_offset))
                for k, s in chunk]
        images.append(images_from(pipe, {"prompt": prompts}, gens, spec))
        if on_batch is not None:
            on_batch(i + len(chunk))
    return np.concatenate(images)


def images_from(pipe, inputs: dict, generators: list, spec: ValidationSpec) -> np.ndarray:
    """uint8 images of one batch; `inputs` are the prompts (prompt=) or their states (prompt_embeds=, ...)."""
    size = image_size(pipe)   # any family: the denoiser's sample size x the VAE's factor
    out = pipe(**inputs, num_inference_steps=spec.inference_steps, guidance_scale=spec.guidance_scale,
               generator=generators, height=size, width=size, output_type="np").images
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def noise_seed(prompt: str, seed: int) -> int:
    return int(hashlib.sha256(f"{prompt}|{seed}".encode()).hexdigest()[:8], 16)


def stratified_keys(suite: Suite, seeds: int, seed: int = 0, first: int = 0, groups=None) -> list[Key]:
    """The (item, seed) keys of seeds first..seeds-1 (of `groups` only, if given), shuffled within groups
    and interleaved, so any prefix covers every group."""
    rng = random.Random(seed)
    per_group: dict[str, list[Key]] = {}
    for s in range(first, seeds):
        for idx, item in enumerate(suite.items):
            if groups is None or item.group in groups:
                per_group.setdefault(item.group, []).append((idx, s))
    for keys in per_group.values():
        rng.shuffle(keys)
    out, queues = [], list(per_group.values())
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop())
    return out


def frozen_tag(pipe) -> str:
    """The frozen components' dtype when it is not fp32: images drawn through a half VAE are other images."""
    vae = getattr(pipe, "vae", None)
    dtype = vae.dtype if vae is not None else torch.float32
    return "" if dtype == torch.float32 else str(dtype).removeprefix("torch.")


def _fingerprint(model: str) -> list:
    """Name, size and mtime of a local model's weight files: retrained weights never hit an old baseline."""
    root = Path(resolve(model))
    if not root.is_dir():
        return []  # a hub id: its revision is what the name says
    return sorted([str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns]
                  for p in root.rglob("*.safetensors"))


class BaselineCache:
    """Base-model observations on disk, keyed by model + suite + generation settings."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory) if directory else None

    def key(self, model: str, suite: Suite, spec: ValidationSpec, judge: str = "", frozen: str = "") -> str:
        """`frozen` names a half dtype the text encoders and VAE ran in (fp32 adds nothing: older keys hold)."""
        settings = {k: v for k, v in asdict(spec).items() if k in ("seeds", "guidance_scale", "inference_steps")}
        if spec.seed_offset:   # other noise: other base images (an offset of 0 keeps the keys it always had)
            settings["seed_offset"] = spec.seed_offset
        parts = [model, _fingerprint(model), suite.digest(), settings] + ([judge] if judge else []) + \
            ([frozen] if frozen else [])
        raw = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:20]

    def load(self, key: str) -> list[Observation] | None:
        if self.dir is None or not (self.dir / f"base-{key}.json").is_file():
            return None
        rows = json.loads((self.dir / f"base-{key}.json").read_text())
        return [Observation(r[0], r[1], r[2], tuple(r[3])) for r in rows]

    def save(self, key: str, obs: list[Observation]) -> None:
        if self.dir is None:
            return
        rows = [[o.item, o.seed, o.hit, list(o.posterior)] for o in obs]
        atomic_write_text(self.dir / f"base-{key}.json", json.dumps(rows))   # a unique temp file per writer

    def load_images(self, name: str) -> np.ndarray | None:
        """Base-model images stored under `name` (e.g. the before half of a grid), or None."""
        path = self.dir / f"{name}.npy" if self.dir is not None else None
        try:
            return np.load(path) if path is not None and path.is_file() else None
        except (OSError, ValueError):   # a damaged file is a miss: drawn again and rewritten
            return None

    def save_images(self, name: str, images: np.ndarray) -> None:
        if self.dir is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, images)
        atomic_write(self.dir / f"{name}.npy", [buffer.getvalue()])


class Validator:
    """Generates a suite's images and has a judge observe them (any judge with observe, posterior_split, cache_id;
    identity() names it in every report)."""

    def __init__(self, judge, spec: ValidationSpec, cache: BaselineCache, log=print,
                 progress: ProgressWriter | None = None):
        self.judge, self.spec, self.cache, self.log = judge, spec, cache, log
        self.progress = progress or NullProgress()   # "baseline"/"candidate" records: images drawn of total
        self.spread: Spread = InProcess()            # who draws the looks (jobs/validation/shards.py)

    def baseline(self, base_pipe, model: str, suite: Suite, drawn_images=None) -> dict[Key, Observation]:
        """The base model's observations of the suite (cached). `drawn_images(keys, images)` is called with what
        was drawn when the cache missed, so another judging of the same images (the judge self-check) draws
        nothing more; it is not called on a hit."""
        key = self.cache.key(model, suite, self.spec, self.judge.cache_id, frozen_tag(base_pipe))
        obs = self.cache.load(key)
        fresh = obs is None
        if fresh:
            keys = stratified_keys(suite, self.spec.seeds)
            drawn = self._counter("baseline", len(keys))
            parts, done = [], 0
            for images in self.spread.draw_base(self.looks(keys), lambda part: generate(base_pipe, suite, part,
                                                                                         self.spec)):
                parts.append(images)
                done += len(images)
                if drawn:
                    drawn(done)
            images = np.concatenate(parts)
            obs = self.judge.observe(suite, keys, images)   # judged at once, as unsharded
            if drawn_images is not None:
                drawn_images(keys, images)
        if hasattr(self.judge, "calibrate"):   # a zero-shot judge sets its thresholds on the base model's images
            obs = self.judge.calibrate(suite, obs)
        if fresh:
            self.cache.save(key, obs)
        return {(o.item, o.seed): o for o in obs}

    def _counter(self, stage: str, total: int):
        """A progress record now (0 of total images), and a function to call with the images drawn so far."""
        if not self.progress.enabled:
            return None
        t0 = time.time()
        self.progress.write(stage, images=0, images_total=total)

        def drawn(n: int) -> None:
            seconds = max(time.time() - t0, 1e-9)
            self.progress.write(stage, images=n, images_total=total, images_per_s=round(n / seconds, 3),
                                peak_mem_mb=peak_memory_mb())
        return drawn

    def looks(self, keys: list[Key]) -> list[list[Key]]:
        """The gate's looks: consecutive batches of batch_size keys. A look is also the unit a shard draws,
        since an image can differ in its last bit when drawn in another batch."""
        chunk = self.spec.batch_size
        return [keys[start:start + chunk] for start in range(0, len(keys), chunk)]

    def observe(self, pipe, suite: Suite, part: list[Key]) -> list[Observation]:
        """One look: draw its images in one batch and judge them (the same call in every shard)."""
        return self.judge.observe(suite, part, generate(pipe, suite, part, self.spec))

    def validate(self, pipe, suite: Suite, base: dict[Key, Observation]) -> GateReport:
        """Measure `pipe` (the candidate) on the suite, in looks until every check is decided (jobs/validation/sequential.py).

        The looks run through self.spread (this process alone, or shards that each draw whole looks);
        the stop rule and the report see the merged observations in key order either way."""
        t0 = time.time()
        looks = self.looks(stratified_keys(suite, self.spec.seeds))
        seen: list[Observation] = []
        early = False
        drawn = self._counter("candidate", sum(map(len, looks)))
        results = self.spread.observe(looks, lambda part: self.observe(pipe, suite, part))
        try:
            for i, observed in enumerate(results):
                seen += observed
                if drawn:
                    drawn(len(seen))
                if self.spec.early_stop and i + 1 < len(looks) and \
                        sequential.can_stop(self.report(suite, seen, base, False, 0.0), self.spec):
                    early = True
                    break
        finally:
            results.close()   # looks still being drawn ahead by other shards are dropped
        extended: list[str] = []
        if self.spec.early_stop and not early:
            extended = sequential.to_extend(self.report(suite, seen, base, False, 0.0), self.spec)
            seen += self._extend(pipe, suite, extended)
        return dataclasses.replace(self.report(suite, seen, base, early, time.time() - t0), extended=tuple(extended))

    def _extend(self, pipe, suite: Suite, names: list[str]) -> list[Observation]:
        """More seeds of the named checks' groups: drawn whole (in batches), then looked at once."""
        if not names:
            return []
        groups = sequential.extension_groups(suite, names)
        keys = stratified_keys(suite, self.spec.seeds + self.spec.extend_seeds, first=self.spec.seeds, groups=groups)
        self.log(f"  extending {', '.join(names)} (open within {self.spec.extend_margin} of the threshold): "
                 f"{len(keys)} more images")
        drawn = self._counter("extension", len(keys))
        more: list[Observation] = []
        results = self.spread.observe(self.looks(keys), lambda part: self.observe(pipe, suite, part))
        try:
            for observed in results:
                more += observed
                if drawn:
                    drawn(len(more))
        finally:
            results.close()
        return more

    def report(self, suite: Suite, seen: list[Observation], base, early: bool, seconds: float) -> GateReport:
        """The gate report of `seen`; every interval at the confidence spent over the planned checks and looks."""
        conf = sequential.interval_confidence(self.spec, suite, self.spec.seeds * len(suite.items))
        groups = [suite.items[o.item].group for o in seen]
        target = [o for o, g in zip(seen, groups) if _is_target(g)]
        retain_pairs = [(base[(o.item, o.seed)], o) for o, g in zip(seen, groups) if g.startswith("retain")]
        split = self.judge.posterior_split
        base_noise = _seed_noise(base, suite, split)
        base_hit = _base_hits(base, self.spec.seeds)
        return GateReport(
            concept=suite.target,
            forgetting=_forgetting(suite, seen, base_hit, conf),
            target_acc=hit_rate(target, conf),
            base_target_acc=sum(base_hit(o) for o in target) / len(target) if target else 0.0,
            evasion={k: hit_rate([o for o, g in zip(seen, groups) if g == f"evasion:{k}"], conf) for k in EVASION_KINDS
                     if f"evasion:{k}" in groups},
            retain=_retain(suite, seen, base, lambda g: g.startswith("retain"), conf),
            retain_by_distance={d: _retain(suite, seen, base, lambda g, d=d: g == f"retain:{d}", conf)
                                for d in ("near", "far") if f"retain:{d}" in groups},
            leakage=hit_rate([o for o, g in zip(seen, groups) if g == "leakage"], conf),
            kl=drift_kl([b for b, _ in retain_pairs], [c for _, c in retain_pairs], split),
            kl_base_noise=base_noise,
            cumulative={g.split(":", 1)[1]: hit_rate([o for o, gg in zip(seen, groups) if gg == g], conf)
                        for g in dict.fromkeys(groups) if g.startswith("cumulative:")},
            images_generated=len(seen), early_stopped=early, seconds=seconds,
            unjudged=dict(suite.unjudged), thin=suite.thin,
            drift=_drift([b for b, _ in retain_pairs], [c for _, c in retain_pairs], split, conf),
            interval_confidence=conf, judges=(identity_of(self.judge),))


def _is_target(group: str) -> bool:
    return sequential.check_kind(group) == "forgetting"   # the target group and the evasion groups


def hit_rate(obs: list[Observation], conf: float) -> Estimate:
    """The share of `obs` the judge answered yes to, with its Wilson interval at `conf`."""
    k, n = sum(o.hit for o in obs), len(obs)
    lo, hi = st.wilson(k, n, conf)
    return Estimate(k / n if n else 0.0, lo, hi, n)


def _base_hits(base: dict[Key, Observation], seeds: int):
    """The base model's hit for an observation's key: its own image's within the budget's seeds, and each
    prompt's mean over those seeds for an extension key (the base draws the budget's seeds only)."""
    per_item: dict[int, list[int]] = {}
    for (item, seed), o in base.items():
        if seed < seeds:
            per_item.setdefault(item, []).append(o.hit)

    def hit(o: Observation) -> float:
        if o.seed < seeds:
            return base[(o.item, o.seed)].hit
        hits = per_item.get(o.item, [])
        return sum(hits) / len(hits) if hits else 0.0
    return hit


def _forgetting(suite, seen, base_hit, conf) -> Estimate:
    obs = [o for o in seen if _is_target(suite.items[o.item].group)]
    base_acc = sum(base_hit(o) for o in obs) / max(1, len(obs))
    v, lo, hi = st.forgetting_interval(sum(o.hit for o in obs), len(obs), base_acc, conf)
    return Estimate(v, lo, hi, len(obs))


def _retain(suite, seen, base, which, conf) -> Estimate:
    obs = [o for o in seen if which(suite.items[o.item].group)]
    base_acc = sum(base[(o.item, o.seed)].hit for o in obs) / max(1, len(obs))
    v, lo, hi = st.ratio_interval(sum(o.hit for o in obs), len(obs), base_acc, conf)
    return Estimate(v, lo, hi, len(obs))


def _drift(base: list[Observation], cand: list[Observation], split: int, conf: float) -> Estimate:
    """Share of paired retain images whose judged label changed, with its Wilson interval."""
    changed = label_changed(base, cand, split)
    lo, hi = st.wilson(sum(changed), len(changed), conf)
    return Estimate(sum(changed) / len(changed) if changed else 0.0, lo, hi, len(changed))


def _seed_noise(base: dict[Key, Observation], suite: Suite, n_shape: int) -> float:
    """The base model's own seed-to-seed KL on retain prompts: what drift means nothing."""
    a, b = [], []
    for (item, seed), o in base.items():
        if suite.items[item].group.startswith("retain") and (item, seed + 1) in base:
            a.append(o)
            b.append(base[(item, seed + 1)])
    return drift_kl(a, b, n_shape)


def for_request(request, judge: str, log=print):
    """(Validator, Suite) for a step request: the suite of its concept and earlier erasures, judged by `judge`
    (both from the judge's provider: jobs/validation/providers.py; a group step's merged from its members')."""
    cache = BaselineCache(request.cache_dir or Path(request.out_dir) / "baseline-cache")
    provider = providers.get(judge)
    grouped = len(step_members(request.concept)) > 1
    judged_by, suite = group_gate(provider, request, judge) if grouped else provider.gate(request, judge)
    return Validator(judged_by, request.validation, cache, log), suite
