"""The guard's ComfyUI nodes: EraseGuardController and EraseGuardAudit (the node interface ComfyUI documents:
INPUT_TYPES, RETURN_TYPES, RETURN_NAMES, FUNCTION, CATEGORY, and the NODE_CLASS_MAPPINGS of the package).

Both read a serving bundle (a per-concept export with guard.json: erasecore/serving.py), never the campaign's
journal. The controller runs the pre-filter on the prompt (erasecore/prompt_filter.py; the words the concept set
does not list are read by the checkpoint's own CLIP when one is connected) and applies the adapters of the
concepts it touches (policy "touched") or of all of them ("all") with ComfyUI's own LoRA loader,
comfy.sd.load_lora_for_models, at `strength` (1.0: the committed step's delta). The per-concept files are
diffusers (peft) LoRAs; their keys are renamed to kohya's, which every ComfyUI version maps, with alpha = rank
(the scale is folded into lora_up). A prompt the filter matches, with on_detect "block", stops the workflow
(PromptBlocked) and is logged. The audit judges the decoded images with the campaign's judge at the gates'
thresholds (jobs/serving/guarded.py's Audit); a withheld image comes out black. Every decision is one line of
the JSONL audit log (erasecore/audit_log.py).

torch, ComfyUI's modules and this project's worker code are imported when a node runs, not when ComfyUI loads
the package.
"""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path

from erasecore.serving import GUARD_FILE, ON_DETECT, POLICIES

CATEGORY = "concept-erase"
LOG = "audit.jsonl"   # default audit log: in the bundle


class PromptBlocked(Exception):
    """The pre-filter matched an erased concept and the controller blocks: ComfyUI stops the workflow here."""


def _key(bundle: str) -> tuple[str, float]:
    path = Path(bundle).expanduser().resolve()
    guard = path / GUARD_FILE
    return str(path), guard.stat().st_mtime if guard.is_file() else 0.0


@functools.lru_cache(maxsize=8)
def _spec(bundle: str, mtime: float):
    from erasecore.concepts import load_concept_set
    from erasecore.serving import read_guard_spec

    spec = read_guard_spec(bundle)
    return spec, load_concept_set(spec.concepts_from)


@functools.lru_cache(maxsize=8)
def _filter(bundle: str, mtime: float, clip=None):
    from erasecore.prompt_filter import PromptFilter

    spec, concept_set = _spec(bundle, mtime)
    return PromptFilter.build(concept_set, spec.erased, embedder=clip_embedder(clip) if clip is not None else None)


@functools.lru_cache(maxsize=4)
def _audit(bundle: str, mtime: float):
    from jobs.serving.guarded import Audit

    spec, concept_set = _spec(bundle, mtime)
    return Audit(spec, concept_set)


def clip_embedder(clip):
    """A ComfyUI CLIP as the pre-filter's Embedder: its pooled output per text (mean of its states without one)."""
    def embed(texts):
        out = []
        for text in texts:
            cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
            vector = pooled[0] if pooled is not None else cond[0].mean(0)
            out.append(vector.float().cpu().tolist())
        return out
    return embed


def comfy_lora(state: dict) -> dict:
    """A per-concept diffusers (peft) LoRA under kohya's names: lora_down/lora_up, and alpha = rank (the file's
    lora_B already carries alpha/rank), so ComfyUI applies exactly the step's delta at strength 1."""
    import torch

    from jobs.deltas.lora_export import kohya_name

    out = {}
    for key, tensor in state.items():
        for suffix, kind in ((".lora_A.weight", "lora_down"), (".lora_B.weight", "lora_up")):
            if key.endswith(suffix):
                name = kohya_name(key[:-len(suffix)])
                out[f"{name}.{kind}.weight"] = tensor
                if kind == "lora_down":
                    out[f"{name}.alpha"] = torch.tensor(float(tensor.shape[0]))
    return out


def _log(bundle: str, log: str):
    from erasecore.audit_log import AuditLog

    return AuditLog(Path(log).expanduser() if log else Path(bundle) / LOG)


class EraseGuardController:
    """Prompt -> the per-concept adapters to apply (and at what strength), or a block."""

    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL", "CLIP", "STRING", "STRING")
    RETURN_NAMES = ("model", "clip", "negative", "guard")
    DESCRIPTION = ("Pre-filter the prompt against the campaign's erased concepts and apply the per-concept LoRAs "
                   "of the concepts it touches (or all) through ComfyUI's LoRA loader.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "bundle": ("STRING", {"default": "", "tooltip": "serving bundle: erase guard RUNS "
                                                                             "--prepare-only prints it"}),
                             "prompt": ("STRING", {"multiline": True, "default": ""}),
                             "policy": (list(POLICIES), {"default": "touched"}),
                             "on_detect": (list(ON_DETECT), {"default": "block"}),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 4.0, "step": 0.05})},
                "optional": {"clip": ("CLIP",),
                             "log": ("STRING", {"default": "", "tooltip": "JSONL audit log (default: in the bundle)"})}}

    def apply(self, model, bundle: str, prompt: str, policy: str = "touched", on_detect: str = "block",
              strength: float = 1.0, clip=None, log: str = ""):
        from jobs.serving.guarded import adapter_paths, audit_record, check_policy

        check_policy(policy, on_detect)
        t0 = time.perf_counter()
        key = _key(bundle)
        spec, _ = _spec(*key)
        filtered = _filter(*key, clip).check(prompt)
        if filtered.touched and on_detect == "block":
            _log(key[0], log).append(audit_record(spec, _audit(*key), prompt, None, filtered, policy, on_detect, None,
                                                  "", None, "blocked_prompt", time.perf_counter() - t0))
            raise PromptBlocked(f"the prompt asks for {', '.join(filtered.concepts)}, erased by campaign "
                                f"{spec.campaign!r}: blocked")
        import comfy.sd  # ComfyUI's own modules: on its path when the node runs inside it
        import comfy.utils

        concepts = spec.erased if policy == "all" else filtered.concepts
        paths = adapter_paths(Path(key[0]), spec)
        active = []
        for c in spec.concepts:
            if c.concept in concepts:
                state = comfy.utils.load_torch_file(str(paths[c.adapter] / "pytorch_lora_weights.safetensors"),
                                                    safe_load=True)
                model, clip = comfy.sd.load_lora_for_models(model, clip, comfy_lora(state), strength, strength)
                active.append(c.adapter)
        negative = ", ".join(c.concept for c in spec.concepts if c.adapter in active)
        guard = {"prompt_sha256": _sha(prompt), "touched": list(filtered.concepts), "policy": policy,
                 "on_detect": on_detect, "adapters_active": active, "strength": strength, "negative": negative,
                 "concepts_matched": [{"concept": m.concept, "wording": m.wording, "kind": m.kind, "how": m.how,
                                       "span": [m.start, m.end], "score": m.score} for m in filtered.matches]}
        return model, clip, negative, json.dumps(guard)


class EraseGuardAudit:
    """Decoded images -> the campaign's judge on each erased concept; withheld (black) or flagged; logged."""

    CATEGORY = CATEGORY
    FUNCTION = "audit"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "verdicts")
    DESCRIPTION = "Judge the images with the campaign's judge at its gates' thresholds; block or flag; log."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "bundle": ("STRING", {"default": ""}),
                             "prompt": ("STRING", {"multiline": True, "default": ""}),
                             "on_detect": (list(ON_DETECT), {"default": "block"})},
                "optional": {"guard": ("STRING", {"forceInput": True}), "seed": ("INT", {"default": 0}),
                             "log": ("STRING", {"default": ""})}}

    def audit(self, images, bundle: str, prompt: str, on_detect: str = "block", guard: str = "", seed: int = 0,
              log: str = ""):
        import torch

        from erasecore.prompt_filter import FilterVerdict, Match
        from jobs.serving.guarded import audit_record, verdict_of

        t0 = time.perf_counter()
        key = _key(bundle)
        spec, _ = _spec(*key)
        audit = _audit(*key)
        controller = json.loads(guard) if guard else {}
        matches = tuple(Match(m["concept"], m["wording"], m["kind"], m["how"], *m["span"], "", m["score"])
                        for m in controller.get("concepts_matched", []))
        filtered = FilterVerdict(prompt, matches)
        pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        seen = audit.see(pixels)
        writer = _log(key[0], log)
        out, verdicts = images.clone(), []
        for i, row in enumerate(seen):
            verdict = verdict_of(filtered.touched, row, on_detect)
            if verdict == "blocked_image":
                out[i] = 0
            writer.append(audit_record(spec, audit, prompt, seed, filtered, controller.get("policy", ""), on_detect,
                                       tuple(controller.get("adapters_active", ())), controller.get("negative", ""),
                                       row, verdict, (time.perf_counter() - t0) / max(len(seen), 1)))
            verdicts.append({"verdict": verdict, "seen": [s.concept for s in row if s.seen]})
        return out, json.dumps(verdicts)


def _sha(prompt: str) -> str:
    from erasecore.audit_log import prompt_sha256

    return prompt_sha256(prompt)


NODE_CLASS_MAPPINGS = {"EraseGuardController": EraseGuardController, "EraseGuardAudit": EraseGuardAudit}
NODE_DISPLAY_NAME_MAPPINGS = {"EraseGuardController": "Concept-erase controller",
                              "EraseGuardAudit": "Concept-erase audit"}
