"""MACE (Lu et al., CVPR 2024, arXiv 2403.06135): closed-form refinement, a masked-attention LoRA, fusion.

For one concept (a progressive campaign's step):
1. closed-form refinement (CFR) of cross-attention K/V: UCE's closed form on the concept's rows
   (jobs/training/kv_edit.py), the concept's tokens mapped to the prompt without the concept;
2. a rank-1 LoRA on the refined K/V trained to minimise MACE's attention loss: the Frobenius norm of the
   concept tokens' cross-attention inside the concept's image region, on noised images of the concept.
   The regions are thresholded cross-attention maps of the concept's tokens in the unedited model
   (jobs/models/attention_probe.py), averaged over a few noise draws: generated images carry no object
   masks, so this is what runs on every model, the toy world included (the authors use Grounded-SAM);
3. the closed-form fusion: the K/V that, on every token of the concept's prompts, give what CFR + LoRA
   gives and stay at the CFR weights elsewhere (kv_edit.fit, weight fuse_lam). With several LoRAs (a
   one-shot arm) their rows are stacked; a progressive step fuses one.
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
from jobs.training import kv_edit, lora_adapter
from jobs.training.finetune import batch_index, finetune, finetune_config, step_generator
from jobs.training.latent_pool import generate_latents

PROJECTIONS = ("to_k", "to_v")
MASK_DRAWS = 4   # noise draws whose attention maps are averaged into one mask per image


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp, cp = inputs.hparams, inputs.prompts
    comp, net = denoiser(pipe)
    base = {k: w.clone() for k, w in kv_edit.kv_weights(pipe, PROJECTIONS).items()}
    cfr = kv_edit.edit(base, kv_edit.concept_rows(pipe, cp), hp["lam"], hp["erase_scale"], hp["preserve_scale"])
    x0 = generate_latents(pipe, cp.target, inputs.seed)
    tokens = concept_positions(pipe, cp.target, cp.words)
    masks = _concept_masks(pipe, x0, cp.target, tokens, hp["mask_quantile"], inputs.seed)
    live = dict(net.named_parameters())
    refined = {k: base[k] + cfr[k] for k in base}
    try:
        _assign(live, comp, refined)
        lora = _train_lora(pipe, inputs, x0, tokens, masks)
    finally:
        _assign(live, comp, base)
    fused = _fuse(pipe, cp.target, refined, lora, hp)
    return MethodOutput("dense", {k: fused[k] - base[k] for k in base},
                        stats={"mask_fraction": float(masks.float().mean()), **lora.stats})


class _Lora:
    def __init__(self, factors: dict[str, torch.Tensor], scale: float, stats: dict):
        self.factors, self.scale, self.stats = factors, scale, stats

    def change(self, key: str) -> torch.Tensor:
        """alpha / rank * B @ A of the projection whose weight is `key` ("<comp>.<module>.weight")."""
        module = key[: -len(".weight")]
        return self.scale * self.factors[f"{module}.lora_B.weight"] @ self.factors[f"{module}.lora_A.weight"]


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


def _train_lora(pipe, inputs: EraseInputs, x0, tokens, masks) -> _Lora:
    """The rank-r LoRA on cross-attention K/V that moves the concept's attention out of its regions."""
    hp, cp = inputs.hparams, inputs.prompts
    comp, net = denoiser(pipe)
    fam = adapter(pipe)
    cond = fam.encode(cp.target)
    modules = cross_attention_modules(net)
    params = lora_adapter.attach(net, hp["rank"], hp["alpha"], text_kv_linears(net), init=True)
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
        trained = finetune(net, params, loss_fn, finetune_config(hp, inputs.seed, log_every=10), inputs.parallel,
                           inputs.log)
    finally:
        attention_probe.restore(modules, previous)
        lora_adapter.detach(net)
    return _Lora(lora_adapter.factors(trained.values, comp), hp["alpha"] / hp["rank"], trained.stats)


def _fuse(pipe, prompts, refined: dict[str, torch.Tensor], lora: _Lora, hp) -> dict[str, torch.Tensor]:
    """MACE's fusion of one LoRA: on every token state of the concept's prompts, what CFR + LoRA gives."""
    c = encode(pipe, prompts).flatten(0, 1)
    out = {}
    for key, w in refined.items():
        edited = w + lora.change(key)
        out[key] = kv_edit.fit(w, c, c.double() @ edited.double().T, hp["fuse_lam"])
    return out
