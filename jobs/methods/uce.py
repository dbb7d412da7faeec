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

The closed form and the aligned rows are jobs/training/kv_edit.py's (RECE shares them). Two row sets
("rows"): "from_concept" (the project's, variant tuned) as above; "last_token" (the official script's,
variant published): the last real token of each prompt guided to the empty prompt, nothing preserved
(UNet K/V only; on the toy world it erases nothing).
"""
from __future__ import annotations

import torch

from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models.adapters import adapter
from jobs.models.targets import denoiser, text_projections
from jobs.models.text_embeddings import concept_positions
from jobs.training import kv_edit


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp = inputs.hparams
    if hp["rows"] == "last_token":   # the official script's rows (variant published): UNet K/V only
        rows = kv_edit.last_token_rows(pipe, inputs.prompts)
        out = kv_edit.edit(kv_edit.kv_weights(pipe, hp["projections"]), rows, hp["lam"], hp["erase_scale"],
                           hp["preserve_scale"])
        return MethodOutput("dense", out, stats={"erase_vectors": len(rows.erase), "preserve_vectors": len(rows.keep)})
    cp = inputs.prompts
    comp, net = denoiser(pipe)
    fam = adapter(pipe)
    target, anchor = fam.encode(cp.target), fam.encode(cp.anchor)
    preserve = fam.encode(cp.preserve) if cp.preserve else None
    mask = concept_positions(pipe, cp.target, cp.words)
    rows = {"states": kv_edit.aligned_pairs(target.states, anchor.states, mask)}
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
        new = kv_edit.closed_form(w, c, g, keep, hp["lam"], hp["erase_scale"], hp["preserve_scale"])
        out[f"{comp}.{proj.name}.weight"] = new - w
    return MethodOutput("dense", out, stats=stats)
