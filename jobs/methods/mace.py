"""MACE (Lu et al., CVPR 2024, arXiv 2403.06135): closed-form refinement, a masked-attention LoRA, fusion.

For one concept (a progressive campaign's step), or several at once (a one-shot arm: inputs.prompts from
jobs/training/concept_prompts.py `merged`, whose `parts` are each concept's own prompts):
1. closed-form refinement (CFR) of cross-attention K/V: UCE's closed form on all the concepts' rows
   (jobs/training/kv_edit.py), the concepts' tokens mapped to the prompts without them;
2. a rank-1 LoRA on the refined K/V trained to minimise MACE's attention loss: the Frobenius norm of the
   concept tokens' cross-attention inside the concept's image region, on noised images of the concept.
   The regions are thresholded cross-attention maps of the concept's tokens in the unedited model
   (jobs/models/attention_probe.py), averaged over a few noise draws: generated images carry no object
   masks, so this is what runs on every model, the toy world included (the authors use Grounded-SAM);
   One LoRA per concept, each trained alone on the CFR weights with its own concept's masks;
3. the closed-form fusion: the K/V that, on every token of each concept's prompts, give what CFR + that
   concept's LoRA gives and stay at the CFR weights elsewhere (kv_edit.fit, weight fuse_lam): the LoRAs'
   rows stacked in one solve, as the paper fuses many concepts; a progressive step fuses one.
The artifact is the dense K/V change (MACE ships a fused pipeline). Published: rank 1, 50 steps at lr 1e-5,
batch 1, lamb 1e3, no preservation, timesteps importance-sampled around 200-400 (here uniform).
UNet families only: the probe reads attn2 (the catalog says why not SD3).
"""
from __future__ import annotations

import torch

from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models import attention_probe
from jobs.models.adapters import adapter
from jobs.models.targets import cross_attention_modules, denoiser, text_kv_linears
from jobs.models.text_embeddings import concept_positions, encode
from jobs.training import kv_edit
from jobs.training.finetune import batch_index, step_generator
from jobs.training.latent_pool import generate_latents
from jobs.training.lora_finetune import TrainedLora, train_lora

PROJECTIONS = ("to_k", "to_v")
MASK_DRAWS = 4   # noise draws whose attention maps are averaged into one mask per image


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp, cp = inputs.hparams, inputs.prompts
    comp, net = denoiser(pipe)
    concepts = cp.parts or (cp,)
    base = {k: w.clone() for k, w in kv_edit.kv_weights(pipe, PROJECTIONS).items()}
    cfr = kv_edit.edit(base, kv_edit.concept_rows(pipe, cp), hp["lam"], hp["erase_scale"], hp["preserve_scale"])
    live = dict(net.named_parameters())
    refined = {k: base[k] + cfr[k] for k in base}
    regions = []   # per concept, from the unedited model: (latents, token mask, image-region masks)
    for part in concepts:
        x0 = generate_latents(pipe, part.target, inputs.seed)
        tokens = concept_positions(pipe, part.target, part.words)
        regions.append((x0, tokens, _concept_masks(pipe, x0, part.target, tokens, hp["mask_quantile"], inputs.seed)))
    try:
        _assign(live, comp, refined)
        loras = [_train_lora(pipe, inputs, part.target, *r) for part, r in zip(concepts, regions)]
    finally:
        _assign(live, comp, base)
    fused = _fuse(pipe, [part.target for part in concepts], refined, loras, hp)
    return MethodOutput("dense", {k: fused[k] - base[k] for k in base},
                        stats=_stats([float(r[2].float().mean()) for r in regions], loras))


def _stats(fractions: list[float], loras: list[TrainedLora]) -> dict[str, float]:
    """The mask fraction and the LoRA loop's stats (over several concepts: means, seconds summed) and how
    many concepts' LoRAs were fused."""
    stats = {k: (sum if k == "train_seconds" else _mean)([lo.stats[k] for lo in loras]) for k in loras[0].stats}
    return {"mask_fraction": _mean(fractions), **stats, "fused_concepts": float(len(loras))}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _change(lora: TrainedLora, key: str) -> torch.Tensor:
    """alpha / rank * B @ A of the projection whose weight is `key` ("<comp>.<module>.weight")."""
    module = key[: -len(".weight")]
    return lora.scale * lora.factors[f"{module}.lora_B.weight"] @ lora.factors[f"{module}.lora_A.weight"]


def _assign(live: dict, comp: str, weights: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, w in weights.items():
            live[key[len(comp) + 1:]].copy_(w)


def _concept_masks(pipe, x0, prompts, tokens, quantile: float, seed: int) -> torch.Tensor:
    """Thresholded cross-attention maps of the concept's tokens in the model as it is now."""
    fam, (_, net) = adapter(pipe), denoiser(pipe)
    cond, modules, store = fam.encode(prompts), cross_attention_modules(net), []
    previous = attention_probe.install(modules, store)
    maps = torch.zeros(x0.shape[0], x0.shape[-1], x0.shape[-1])
    try:
        with torch.no_grad():
            for draw in range(MASK_DRAWS):
                store.clear()
                xt, _, t = fam.noised(x0, torch.Generator().manual_seed(seed * 7919 + draw))
                fam.predict(net, xt, t, cond)
                maps += attention_probe.concept_maps(store, tokens, x0.shape[-1])
    finally:
        attention_probe.restore(modules, previous)
    return attention_probe.threshold_masks(maps, quantile)


def _train_lora(pipe, inputs: EraseInputs, prompts, x0, tokens, masks) -> TrainedLora:
    """The rank-r LoRA on cross-attention K/V that moves one concept's attention out of its regions."""
    hp = inputs.hparams
    comp, net = denoiser(pipe)
    fam = adapter(pipe)
    cond = fam.encode(prompts)
    modules = cross_attention_modules(net)
    store: list[torch.Tensor] = []
    previous = attention_probe.install(modules, store)

    def loss_fn(step: int, model, shard) -> torch.Tensor:
        store.clear()
        gen = step_generator(inputs.seed, step)
        i = batch_index(len(cond), hp["batch"], gen)
        xt, _, t = fam.noised(x0[i], gen)
        xt, t, c, m, r = (shard.take(v) for v in (xt, t, cond[i], tokens[i], masks[i]))
        fam.predict(model, xt, t, c)
        return attention_probe.masked_attention(store, m, r)

    try:
        return train_lora(net, comp, text_kv_linears(net), loss_fn, inputs, init=True, log_every=10)
    finally:
        attention_probe.restore(modules, previous)


def _fuse(pipe, prompts: list, refined: dict[str, torch.Tensor], loras: list[TrainedLora], hp) -> dict[str, torch.Tensor]:
    """MACE's fusion: on every token state of each concept's prompts, what CFR + that concept's LoRA gives;
    all concepts' rows stacked in one closed form per projection."""
    cs = [encode(pipe, p).flatten(0, 1) for p in prompts]
    c = torch.cat(cs)
    out = {}
    for key, w in refined.items():
        v = torch.cat([ci.double() @ (w + _change(lora, key)).double().T for ci, lora in zip(cs, loras)])
        out[key] = kv_edit.fit(w, c, v, hp["fuse_lam"])
    return out
