"""UCE (Gandikota et al., arXiv 2308.14761): a closed-form edit of cross-attention keys and values.

The closed form and the rows are jobs/training/kv_edit.py's. Two row sets ("rows"):
- "from_concept" (the project's, variant tuned): the target prompts' text states at and after the
  concept's tokens, guided to the same positions of the prompt without the concept; preserved: the
  preserve prompts and the target prompts' own words before the concept.
- "last_token" (the official script's, variant published): the last real token of each prompt, guided
  to the empty prompt; with preserve_scale 0 nothing is preserved. On the toy world it erases nothing.
UNet families only (SD, SDXL: there the states enter attn2's K/V as they are); the catalog says
why not SD3.
"""
from __future__ import annotations

from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.training import kv_edit


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp = inputs.hparams
    pick = kv_edit.last_token_rows if hp["rows"] == "last_token" else kv_edit.concept_rows
    rows = pick(pipe, inputs.prompts)
    out = kv_edit.edit(kv_edit.kv_weights(pipe, hp["projections"]), rows, hp["lam"], hp["erase_scale"],
                       hp["preserve_scale"])
    return MethodOutput("dense", out, stats={"erase_vectors": len(rows.erase), "preserve_vectors": len(rows.keep)})
