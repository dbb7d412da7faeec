"""RECE (Gong et al., ECCV 2024, arXiv 2407.12383): UCE's closed-form edit, then rounds of erasing the
embeddings that still regenerate the concept.

Round 0 is UCE on the concept's rows (jobs/training/kv_edit.py). Each later round derives, in closed
form, the embedding c' = M c that through the edited K/V projections best reproduces what the original
projections gave for each erase row c (M = (reg I + sum W'^T W')^-1 sum W'^T W, over every edited
projection at once), adds those rows to the erase set, guided like the rows they came from, and
re-edits from the original weights. Defaults as published: reg 1e-3 (the official script's
"regzero" embedding, regularised toward zero), lam 0.1; rounds 1-3 ("epochs").
Differences from the official script: it re-edits the already-edited weights with only the newest
embeddings; here every round edits the original weights with the whole set (the concept's rows and
all embeddings so far), so the delta is one closed form of the union, and the rows are the project's
(every position from the concept on, guided to the prompt without the concept, preserve prompts kept).
"""
from __future__ import annotations

import torch

from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.training import kv_edit
from jobs.training.kv_edit import EditRows


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp = inputs.hparams
    base = kv_edit.kv_weights(pipe, hp["projections"])
    concept = kv_edit.concept_rows(pipe, inputs.prompts)
    rows, stats = concept, {}
    delta = kv_edit.edit(base, rows, hp["lam"], hp["erase_scale"], hp["preserve_scale"])
    for r in range(hp["rounds"] + 1):
        adv, stats[f"regeneration_error_{r}"] = regenerating_rows(base, delta, concept.erase, hp["reg"])
        if r == hp["rounds"]:
            break   # the last derivation only measures how well the final edit resists it
        rows = EditRows(torch.cat([rows.erase, adv]), torch.cat([rows.guide, concept.guide]), rows.keep)
        delta = kv_edit.edit(base, rows, hp["lam"], hp["erase_scale"], hp["preserve_scale"])
    return MethodOutput("dense", delta, stats={**stats, "erase_vectors": len(rows.erase),
                                               "preserve_vectors": len(rows.keep)})


def regenerating_rows(base: dict[str, torch.Tensor], delta: dict[str, torch.Tensor], c: torch.Tensor,
                      reg: float) -> tuple[torch.Tensor, float]:
    """(c', error): the embeddings that regenerate rows c through base + delta, and how closely they do."""
    original = list(base.values())
    edited = [base[k] + delta[k] for k in base]
    adv = (c.double() @ kv_edit.regenerating_map(edited, original, reg).T).to(c.dtype)
    return adv, kv_edit.regeneration_error(edited, original, adv, c)
