"""UCE (Gandikota et al., arXiv 2308.14761): a closed-form edit of cross-attention keys and values.

For each K/V projection W: W' = (lam W + s_e sum v* c^T + s_p sum W c_j c_j^T)(lam I + s_e sum c c^T
+ s_p sum c_j c_j^T)^-1, where c are the target prompts' text states at and after the concept's
tokens, v* = W c_guide the same positions in the anchor prompt (the prompt without the concept),
and c_j the states of prompts to preserve (and the target prompts' own words before the concept).

Which W: the Linear maps that read the text encoder's output as it is (jobs.models.targets.
text_projections): attn2's K/V in a UNet (SD, SDXL); Flux's context_embedder (T5 states) and
time_text_embed.text_embedder.linear_1 (pooled CLIP: there c is the target prompts' pooled vectors,
c_guide the anchors', c_j the preserved prompts'); Z-Image's cap_embedder Linear, whose inputs are
the caption states after the embedder's RMSNorm. The catalog says why not SD3.
"""
from __future__ import annotations

import torch

from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models.adapters import adapter
from jobs.models.targets import denoiser, text_projections
from jobs.models.text_embeddings import concept_positions


def closed_form(w: torch.Tensor, c: torch.Tensor, c_guide: torch.Tensor, c_keep: torch.Tensor,
                lam: float, s_e: float, s_p: float) -> torch.Tensor:
    """The UCE update of one projection W (out x d); c, c_guide, c_keep are (n x d) rows. fp64 inside."""
    w64, c, g, k = (t.double() for t in (w, c, c_guide, c_keep))
    v_star = g @ w64.T
    lhs = lam * w64 + s_e * v_star.T @ c + s_p * (k @ w64.T).T @ k
    rhs = lam * torch.eye(w.shape[1], dtype=torch.float64) + s_e * c.T @ c + s_p * k.T @ k
    return torch.linalg.solve(rhs, lhs.T).T.to(w.dtype)  # lhs @ rhs^-1, rhs symmetric


def aligned_pairs(emb_t, emb_a, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c, c_guide, c_before): concept tokens map to the anchor's next token; later tokens shift back."""
    cs, gs, before = [], [], []
    for i in range(emb_t.shape[0]):
        pos = mask[i].nonzero().flatten()
        if len(pos) == 0:
            continue
        p, n = int(pos[0]), len(pos)
        length = emb_t.shape[1]
        for j in range(p, length):
            src = p if j < p + n else j - n
            cs.append(emb_t[i, j])
            gs.append(emb_a[i, min(src, length - 1)])
        before.append(emb_t[i, :p])
    return torch.stack(cs), torch.stack(gs), torch.cat(before)


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp = inputs.hparams
    cp = inputs.prompts
    comp, net = denoiser(pipe)
    fam = adapter(pipe)
    target, anchor = fam.encode(cp.target), fam.encode(cp.anchor)
    preserve = fam.encode(cp.preserve) if cp.preserve else None
    mask = concept_positions(pipe, cp.target, cp.words)
    rows = {"states": aligned_pairs(target.states, anchor.states, mask)}
    c, g, before = rows["states"]
    keep = torch.cat([preserve.states.flatten(0, 1), before]) if preserve is not None else before
    rows["states"] = (c, g, keep)
    if target.pooled is not None:   # one vector per prompt: the prompt as a whole maps to its anchor
        rows["pooled"] = (target.pooled, anchor.pooled, preserve.pooled if preserve is not None else anchor.pooled)
    out, stats = {}, {"erase_vectors": len(c), "preserve_vectors": len(keep)}
    for proj in text_projections(net, tuple(hp["projections"])):
        if proj.reads not in rows:
            continue
        w = proj.linear.weight.detach()
        with torch.no_grad():
            c, g, keep = (proj.prepare(x.to(w.dtype)) for x in rows[proj.reads])
        new = closed_form(w, c, g, keep, hp["lam"], hp["erase_scale"], hp["preserve_scale"])
        out[f"{comp}.{proj.name}.weight"] = new - w
    return MethodOutput("dense", out, stats=stats)
