"""The gate's `attack:optimized` group: a soft prompt optimised against the candidate's own denoising loss.

The closed-form attack (jobs/validation/attack.py) inverts the candidate's cross-attention K/V; a fine-tune
whose change lives elsewhere (ESD-u, SPM, most of ESD-x) leaves it little to invert. UnlearnDiffAtk (Zhang et
al., arXiv 2310.11868) needs no such structure: the base model's images of the concept are noised at random
timesteps, and an adversarial prompt is optimised so that the *candidate's* noise prediction on them matches
the noise (v, for a v-prediction model: the family adapter's target), i.e. so that the candidate denoises
toward the concept again:

    min_e  E_{x0, t, eps} || eps_candidate(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t, c(e ; prompt)) - eps ||^2

Here e is k soft tokens: continuous vectors in the text encoder's input-embedding space (the published attack
projects them to real tokens; left continuous, it searches a space that holds the published one's), initialised from the
embeddings of seeded draws of real vocabulary tokens and inserted after start-of-text, so the concept's own
prompt follows them. Each target prompt gets its own k tokens (the paper attacks prompt by prompt); one Adam
run optimises them all at once, which is the same as one run per prompt: each prompt's tokens get gradient
from its own term of the mean only, and Adam scales each coordinate alone. The reference images x0 are the
base model's latents of the same (prompt, seed) keys as the target group, drawn before any delta is stacked;
each step noises one of each prompt's references at one timestep (the paper: one image, one timestep per
step), all drawn from a generator seeded by the step number, so the attack is deterministic. Then every key
is drawn again from its optimised prompt, with the noise the target group's image of the same prompt and seed
had, and judged by the gate's judge; attack success is the share that shows the concept.

The candidate is never changed: its weights are frozen for the run (requires_grad restored after) and only
the soft tokens reach the optimiser. Measured and reported, never gated: no threshold reads it.

Where it applies: SD 1.x/2.x and SDXL, whose prompts reach the denoiser through CLIP encoders the pipeline's
own encode_prompt calls (both of SDXL's get their soft tokens). The DiT families (SD3 with T5, Flux's T5,
Z-Image's chat-templated Qwen3) read the prompt through other encoders and templates: left out, with the reason.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from erasecore.contracts import Estimate, GateReport, ValidationSpec
from erasecore.families import family_of
from jobs.models.adapters import Conditioning, adapter, image_size
from jobs.models.targets import denoiser
from jobs.training.finetune import step_generator
from jobs.validation import statistics as st
from jobs.validation.validator import images_from, noise_seed

GROUP = "attack:optimized"
FAMILIES = ("sd", "sdxl")
PLACEHOLDER = "a"     # one CLIP token in every vocabulary: marks where the soft tokens go, then is replaced
LR = 0.1              # Adam's step, in units of the embedding table's spread (comparable across encoders)
GRAD_BATCH = 8        # latents per backward pass: a backward holds activations the no-grad gate never does
EVAL_DRAWS = 4        # fixed (timestep, noise) draws per latent that the reported losses average over
SEED = 0              # the attack's own randomness (initial tokens, timesteps, noise)
EVAL_SEED = 1         # ... and the evaluation draws', apart from every optimisation step's


class OptimizedAttackProbe:
    """Capture the base model's images of the concept; after the candidate is stacked, attack it and judge."""

    def __init__(self, suite, spec: ValidationSpec, judge, log=print):
        self.suite, self.spec, self.judge, self.log = suite, spec, judge, log
        self.reference: torch.Tensor | None = None   # base-model latents x0, one per key
        self.losses: dict[str, float] = {}           # denoising loss: plain prompt, initial and optimised soft prompt
        self.why_not = ""

    def capture(self, pipe) -> None:
        """The base model's latents of the attack's keys: the images the candidate is steered back toward."""
        self.why_not = _why_not(pipe, self.spec) or ("" if self.keys() else "the suite has no target prompts")
        if not self.why_not:
            self.reference = self._latents(pipe, self.keys()).cpu()

    def finish(self, pipe, report: GateReport) -> GateReport:
        """The report with attack_optimized (or, where the attack cannot run, the reason in `unjudged`)."""
        if self.why_not:
            return dataclasses.replace(report, unjudged={**report.unjudged, GROUP: self.why_not})
        t0 = time.time()
        keys = self.keys()
        prompts = sorted({i for i, _ in keys})
        with _frozen(pipe):
            soft = self.optimise(pipe, keys, prompts)
        images = self.draw(pipe, keys, prompts, soft)
        hits = sum(o.hit for o in self.judge.observe(self.suite, keys, images))
        lo, hi = st.wilson(hits, len(keys), self.spec.confidence)
        self.log(f"  attack:optimized: loss {self.losses['plain']:.4f} (prompt) -> {self.losses['attacked']:.4f} "
                 f"after {self.spec.attack_optimized_steps} steps; {hits}/{len(keys)} show {self.suite.target!r}")
        return dataclasses.replace(report, attack_optimized=Estimate(hits / len(keys), lo, hi, len(keys)),
                                   attack_optimized_seconds=round(time.time() - t0, 3))

    def keys(self) -> list[tuple[int, int]]:
        """The target group's first `attack_optimized_prompts` items, at every seed of the gate."""
        targets = [i for i, it in enumerate(self.suite.items) if it.group == "target"]
        items = targets[:self.spec.attack_optimized_prompts]
        return [(i, s) for s in range(self.spec.seeds) for i in items]

    def optimise(self, pipe, keys, prompts: list[int]) -> list[torch.Tensor]:
        """Soft tokens per encoder, (prompts, k, width), that minimise the candidate's loss on the reference."""
        texts = [self.suite.items[i].prompt.text for i in prompts]
        row = torch.tensor([prompts.index(i) for i, _ in keys])
        x0 = self.reference.to(pipe.device)
        soft = [torch.nn.Parameter(s) for s in _initial(pipe, len(prompts), self.spec.attack_optimized_tokens)]
        opt = torch.optim.Adam([{"params": [s], "lr": LR * _spread(e)} for s, e in zip(soft, _embeddings(pipe))])
        self.losses["plain"] = self._loss(pipe, texts, row, x0, None)
        self.losses["initial"] = self._loss(pipe, texts, row, x0, soft)
        with torch.enable_grad():
            for step in range(self.spec.attack_optimized_steps):
                gen = step_generator(SEED, step)
                pick = _one_per_prompt(row, gen)
                xt, target, t = adapter(pipe).noised(x0[pick], gen)
                opt.zero_grad(set_to_none=True)
                for part in torch.split(torch.arange(len(pick)), GRAD_BATCH):
                    loss = self._batch_loss(pipe, texts, row[pick[part]], xt[part], target[part], t[part], soft)
                    (loss * len(part) / len(pick)).backward()
                opt.step()
        self.losses["attacked"] = self._loss(pipe, texts, row, x0, soft)
        return [s.detach() for s in soft]

    @torch.no_grad()
    def draw(self, pipe, keys, prompts: list[int], soft: list[torch.Tensor]) -> np.ndarray:
        """The keys' images from their optimised prompts, each with its target-group image's noise."""
        out = []
        for start in range(0, len(keys), self.spec.batch_size):
            chunk = keys[start:start + self.spec.batch_size]
            texts = [self.suite.items[i].prompt.text for i, _ in chunk]
            rows = torch.tensor([prompts.index(i) for i, _ in chunk])
            cond = _conditioning(pipe, texts, [s[rows] for s in soft])
            inputs = {"prompt_embeds": cond.states}   # CFG's negative: the pipeline's own, as the target group's
            if cond.pooled is not None:
                inputs["pooled_prompt_embeds"] = cond.pooled
            offset = self.spec.seed_offset
            gens = [torch.Generator().manual_seed(noise_seed(t, s + offset)) for t, (_, s) in zip(texts, chunk)]
            out.append(images_from(pipe, inputs, gens, self.spec))
        return np.concatenate(out)

    @torch.no_grad()
    def _latents(self, pipe, keys) -> torch.Tensor:
        """Base-model latents of the keys, from the noise the target group's images of them are drawn from."""
        size, out = image_size(pipe), []
        for start in range(0, len(keys), self.spec.batch_size):
            chunk = keys[start:start + self.spec.batch_size]
            texts = [self.suite.items[i].prompt.text for i, _ in chunk]
            gens = [torch.Generator().manual_seed(noise_seed(t, s + self.spec.seed_offset))
                    for t, (_, s) in zip(texts, chunk)]
            out.append(pipe(texts, num_inference_steps=self.spec.inference_steps, generator=gens, height=size,
                            width=size, guidance_scale=self.spec.guidance_scale, output_type="latent").images)
        return torch.cat(out)

    def _batch_loss(self, pipe, texts, rows, xt, target, t, soft) -> torch.Tensor:
        """The candidate's denoising MSE on one batch; soft None: the plain prompts."""
        prompts = [texts[int(r)] for r in rows]
        if soft is None:
            cond = adapter(pipe).encode(prompts)
        else:
            cond = _conditioning(pipe, prompts, [s[rows] for s in soft])
        return F.mse_loss(adapter(pipe).predict(denoiser(pipe)[1], xt, t, cond).float(), target.float())

    @torch.no_grad()
    def _loss(self, pipe, texts, row, x0, soft) -> float:
        """The loss over EVAL_DRAWS fixed draws per reference latent: before and after compare on equal noise."""
        total = 0.0
        for draw in range(EVAL_DRAWS):
            xt, target, t = adapter(pipe).noised(x0, step_generator(EVAL_SEED, draw))
            for part in torch.split(torch.arange(len(x0)), self.spec.batch_size):
                loss = self._batch_loss(pipe, texts, row[part], xt[part], target[part], t[part], soft)
                total += float(loss) * len(part)
        return total / (EVAL_DRAWS * len(x0))


def _one_per_prompt(row: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Indices of one reference latent per prompt, drawn by `gen`: a step costs a batch of prompts, not of keys."""
    order = torch.randperm(len(row), generator=gen)
    first = {}
    for i in order.tolist():
        first.setdefault(int(row[i]), i)
    return torch.tensor([first[r] for r in sorted(first)])


def _why_not(pipe, spec: ValidationSpec) -> str:
    if spec.attack_optimized_steps == 0:
        return "validation.attack_optimized_steps is 0: the optimized attack is off"
    family = family_of(type(pipe).__name__)
    if family not in FAMILIES:
        return (f"{type(pipe).__name__}: the soft-prompt attack enters through the CLIP token embeddings of "
                f"SD 1.x/2.x and SDXL; this family reads the prompt through other encoders or templates")
    ids = adapter(pipe).token_ids([_marked("x", spec.attack_optimized_tokens)])[0][0]
    marker = pipe.tokenizer(PLACEHOLDER, add_special_tokens=False).input_ids
    if len(marker) != 1 or ids[1:1 + spec.attack_optimized_tokens].tolist() != marker * spec.attack_optimized_tokens:
        return (f"the tokenizer does not spell {PLACEHOLDER!r} as one token after start-of-text: "
                "no place for the soft tokens")
    return ""


def _marked(text: str, k: int) -> str:
    """The prompt with k placeholders in front: tokens 1..k, which the embedding hooks replace."""
    return " ".join([PLACEHOLDER] * k + [text])


def _embeddings(pipe) -> list[torch.nn.Embedding]:
    """The token-embedding table of every text encoder encode_prompt runs (SD: one; SDXL: two)."""
    encoders = [getattr(pipe, n, None) for n in ("text_encoder", "text_encoder_2")]
    return [e.get_input_embeddings() for e in encoders if e is not None]


def _spread(table: torch.nn.Embedding) -> float:
    return float(table.weight.detach().float().std())


def _initial(pipe, n: int, k: int) -> list[torch.Tensor]:
    """(n, k, width) per encoder: the embeddings of seeded draws of real, non-special vocabulary tokens."""
    special = set(pipe.tokenizer.all_special_ids)
    vocab = torch.tensor([i for i in range(len(pipe.tokenizer)) if i not in special])
    ids = vocab[torch.randint(0, len(vocab), (n, k), generator=torch.Generator().manual_seed(SEED))]
    return [e.weight.detach()[ids.to(e.weight.device)].float().clone() for e in _embeddings(pipe)]


def _conditioning(pipe, texts: list[str], soft: list[torch.Tensor]) -> Conditioning:
    """What the denoiser reads for the prompts with soft tokens in front (differentiable in `soft`)."""
    k = soft[0].shape[1]
    with _soft_tokens(pipe, soft):
        out = pipe.encode_prompt(prompt=[_marked(t, k) for t in texts], device=pipe.device, num_images_per_prompt=1,
                                 do_classifier_free_guidance=False)
    if len(out) == 2:   # SD: (states, negative)
        return Conditioning(out[0])
    ids = adapter(pipe).encode(texts[:1]).time_ids   # SDXL's size ids: constants, the same for every prompt
    return Conditioning(out[0], out[2], ids.repeat(len(texts), 1))


@contextlib.contextmanager
def _soft_tokens(pipe, soft: list[torch.Tensor]):
    """While open, every encoder's token embedding puts its soft tokens at positions 1..k."""
    def hook(tokens):
        def replace(module, args, out):
            return torch.cat([out[:, :1], tokens.to(out.dtype), out[:, 1 + tokens.shape[1]:]], dim=1)
        return replace
    handles = [e.register_forward_hook(hook(s)) for e, s in zip(_embeddings(pipe), soft)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _frozen(pipe):
    """Every weight of the pipeline out of autograd (no gradient is kept for it); the flags restored after."""
    params = [p for m in pipe.components.values() if isinstance(m, torch.nn.Module) for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
