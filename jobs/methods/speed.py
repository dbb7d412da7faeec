"""A null-space closed form for long lists (in the spirit of SPEED, Li et al., ICLR 2026, arXiv 2503.07392).

UCE trades erasing against preserving inside one least-squares solve, so each edit moves the preserved
concepts' keys a little and a long campaign adds those moves up. Here the preserved rows fix a subspace
span(U), the fewest eigen-directions holding `protect_energy` of their energy, and UCE's solve runs only
on its complement: an update Delta with Delta U = 0 (kv_edit.null_space_form), so what the preserved rows
give through K/V stays exactly as it was; outside span(U) UCE's soft preserve term still holds.

The preserved rows: the preserve prompts, the target prompts' words before the concept (kv_edit's concept
rows), and the context: in `context` compositions "<target> and <preserved>", the words after the concept
(kv_edit.context_rows). Those are what the other object of a composition reads; UCE moves them with the
concept (on the toy world by half their norm), and the erased object's colour then lands on the other one.
`guide`: the concept mapped to a word instead of removed (UCE's guided concepts).

Differences from the paper: no influence-based filtering or augmentation of the retain set (its IPF and
DPA); the protected subspace is cut by an energy share instead of an eigenvalue threshold, so one value
serves every projection whatever its scale; the context rows are this project's.
"""
from __future__ import annotations

import torch

from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.training import kv_edit


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp = inputs.hparams
    rows = kv_edit.concept_rows(pipe, inputs.prompts, hp["guide"])
    context = kv_edit.context_rows(pipe, inputs.prompts, hp["context"])
    rows = kv_edit.EditRows(rows.erase, rows.guide, torch.cat([rows.keep, context.to(rows.keep.dtype)]))
    hard = context if hp["protect"] == "context" else rows.keep   # "context": the preserve prompts stay soft (UCE's)
    basis = kv_edit.protected_basis(hard.to(rows.keep.dtype), hp["protect_energy"])
    out = {}
    for key, w in kv_edit.kv_weights(pipe, hp["projections"]).items():
        new = kv_edit.null_space_form(w, rows.erase, rows.guide, rows.keep, basis, hp["lam"], hp["erase_scale"],
                                      hp["preserve_scale"])
        out[key] = new - w
    return MethodOutput("dense", out, stats={"erase_vectors": len(rows.erase), "preserve_vectors": len(rows.keep),
                                             "protected_dims": basis.shape[1]})
