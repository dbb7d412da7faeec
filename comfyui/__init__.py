"""concept-erase's guard as ComfyUI custom nodes: the forgetting controller and the output audit.

Install: make this project importable from ComfyUI's Python (`pip install -e /path/to/concept-erase`), link this
folder into ComfyUI/custom_nodes/ (`ln -s /path/to/concept-erase/comfyui ComfyUI/custom_nodes/concept_erase`),
and write a serving bundle for the campaign (`erase guard runs/<campaign> --prepare-only` prints its path).

    Load Checkpoint -> Concept-erase controller (bundle, prompt) -> CLIP Text Encode -> KSampler -> VAE Decode
                                                                                       -> Concept-erase audit -> Save

Nodes (comfyui/nodes.py): EraseGuardController (prompt -> which per-concept LoRAs, at what strength, through
ComfyUI's own LoRA loader; blocks a matching prompt by policy) and EraseGuardAudit (the campaign's judge on the
decoded images, at the gates' thresholds; withholds or flags; appends the JSONL audit log).
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
