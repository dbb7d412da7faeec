"""What a model holds, counted from its configs alone: no weights are read, no memory is allocated.

inventory(model) reads model_index.json and each component's config.json (the embedded toy
world, a local diffusers directory, or a hub id: then from the Hugging Face cache, or the hub
unless HF_HUB_OFFLINE is set), builds every weight-holding component on the meta device (shapes
only) and counts what orchestrator.planning.memory_plan needs:

- parameters per component: the denoiser (unet / transformer), each text encoder, the VAE;
- the denoiser parameters each method trains, found by the catalog's TrainedSet through
  jobs.models.targets.trained_params, the function the methods call;
- LoRA: the sum of (in + out) features of every layer a LoRA targets: rank r trains r x that;
- activations, per method: one forward of the denoiser at its native latent size, batch 1, on
  meta tensors, with only the method's parameters requiring grad, counting the elements autograd
  saves for the backward (attention probabilities left out: memory-efficient attention keeps
  none). On the toy UNet this is 94-97% of what a real CPU forward saves. With diffusers' gradient
  checkpointing (every ResnetBlock2D and *TransformerBlock is checkpointed) what is kept is the
  inputs of every block + what is saved outside blocks + one block's saves, recomputed during
  its backward;
- cross-attention probabilities per sample (heads x queries x text tokens; FMN stores them);
- the largest checkpointed block's parameters (what ZeRO-3 gathers at once).

ModelInventory itself is a core type (erasecore/inventory.py): the pure planner reads it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from jobs.models import targets
from erasecore import catalog
from erasecore.errors import ModelLoadError
from erasecore.inventory import LORA_TARGETS, REFERENCE_INVENTORIES, REFERENCE_MODELS, ModelInventory
from erasecore.models import resolve

# Components a pipeline loads without weights here (load_pipeline passes safety_checker=None).
SKIPPED = ("safety_checker", "feature_extractor")
# Text tokens the denoiser attends to when the pipeline joins several encoders (their defaults).
# Z-Image: ZImagePipeline's max_sequence_length (captions are shorter once padding is dropped; 512 bounds them).
JOINT_TEXT_TOKENS = {"StableDiffusion3Pipeline": 77 + 256, "FluxPipeline": 512, "ZImagePipeline": 512}


def inventory(model: str, lora_targets: tuple[str, ...] | list[str] = LORA_TARGETS) -> ModelInventory:
    """Count `model` (toyworld, a local diffusers directory or a hub id) from its configs; ModelLoadError if unreadable."""
    ref = resolve(model)
    index = _read_json(ref, "model_index.json", model)
    pipeline = index.get("_class_name")
    if not pipeline:
        raise ModelLoadError(f"model {model!r}: {ref}/model_index.json names no pipeline class (_class_name)")
    specs = {}
    for name, entry in index.items():
        if name.startswith("_") or name in SKIPPED or not isinstance(entry, list) or None in entry:
            continue
        library, cls_name = entry
        cls = _component_class(library, cls_name)
        if cls is None:
            continue   # tokenizers, schedulers: no weights
        config = _read_json(ref, f"{name}/config.json", model)
        specs[name] = (library, cls_name, config)
    return inventory_from_configs(model, pipeline, specs, lora_targets)


def inventory_from_configs(model: str, pipeline: str, specs: dict[str, tuple[str, str, dict]],
                           lora_targets=LORA_TARGETS) -> ModelInventory:
    """Count components given as {name: (library, class name, config dict)}, built on the meta device."""
    modules = {name: build_on_meta(*spec) for name, spec in specs.items()}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    denoiser = next((n for n in ("unet", "transformer") if n in modules), None)
    if denoiser is None:
        raise ModelLoadError(f"model {model!r} ({pipeline}) has no unet or transformer component to erase from")
    net = modules[denoiser]
    notes: list[str] = []
    trainable = {method: trainable_count(net, method) for method in catalog.METHOD_NAMES}
    shape = _measure(net, pipeline, modules, notes, tuple(lora_targets))
    return ModelInventory(model=model, pipeline=pipeline, denoiser=denoiser, components=counts, trainable=trainable,
                          lora_targets=list(lora_targets), lora_features=lora_features(net, tuple(lora_targets)),
                          notes=notes, **shape)


# ---- building on the meta device ---------------------------------------------------------------

def build_on_meta(library: str, cls_name: str, config: dict):
    """The component's module with meta tensors (shapes, no storage); tied weights stay tied."""
    from accelerate import init_empty_weights

    cls = _component_class(library, cls_name)
    with init_empty_weights(include_buffers=True):
        if hasattr(cls, "from_config") and library != "transformers":
            module = cls.from_config(config)
        else:
            module = cls(cls.config_class.from_dict(config))
    if hasattr(module, "tie_weights"):
        # init_empty_weights re-registers every parameter, which unties shared embeddings (T5's
        # `shared` and `encoder.embed_tokens`): counted twice, 131M too many for T5-XXL.
        module.tie_weights()
    return module


def _component_class(library: str, cls_name: str):
    """The component's class if it holds weights (a torch Module), else None."""
    import importlib

    import torch

    for where in (library, f"diffusers.pipelines.{library}"):
        try:
            cls = getattr(importlib.import_module(where), cls_name, None)
        except ImportError:
            cls = None
        if cls is not None:
            return cls if isinstance(cls, type) and issubclass(cls, torch.nn.Module) else None
    raise ModelLoadError(f"component class {library}.{cls_name} is not available in this installation")


def _read_json(ref: str, filename: str, model: str) -> dict:
    local = Path(ref)
    looks_local = local.exists() or ref.startswith((".", "/", "~")) or ref.count("/") != 1
    if looks_local:
        path = local / filename
        if not local.is_dir():
            raise ModelLoadError(f"model {model!r}: no such directory {ref}")
        if not path.is_file():
            raise ModelLoadError(f"model {model!r}: {ref} has no {filename} (not a diffusers pipeline directory?)")
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(ref, filename, local_files_only=bool(os.environ.get("HF_HUB_OFFLINE"))))
        except Exception as e:  # hub errors come in many types; the user needs one line
            raise ModelLoadError(f"cannot read {filename} of model {model!r}: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''}") from None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"model {model!r}: cannot read {path}: {e}") from None


# ---- what each method trains (the catalog's TrainedSet, found as the method finds it) -------------

def method_params(net, method: str) -> dict:
    """The denoiser parameters `method` trains (closed forms and LoRA: none; LoRA factors are counted apart)."""
    return targets.trained_params(net, catalog.get(method).trains)


def trainable_count(net, method: str) -> int:
    """Parameters `method` trains at its defaults: its denoiser weights, or its LoRA factors (SPM, MACE: rank x features)."""
    entry = catalog.get(method)
    wrapped = targets.lora_linears(net, entry.trains)
    if wrapped:
        return entry.defaults()["rank"] * lora_features(net, tuple(wrapped))
    return sum(p.numel() for p in method_params(net, method).values())


TRAINED_BY = tuple(m.name for m in catalog.METHODS if not m.closed_form)   # activations measured for these


def lora_features(net, target_modules: tuple[str, ...]) -> int:
    """Sum of (in + out) features over the layers peft would wrap for `target_modules` (its suffix rule)."""
    import torch

    total = 0
    for name, m in net.named_modules():
        if not any(name == t or name.endswith(f".{t}") for t in target_modules):
            continue
        if isinstance(m, torch.nn.Linear):
            total += m.in_features + m.out_features
        elif isinstance(m, torch.nn.Conv2d):   # A: r x in x k x k, B: out x r x 1 x 1
            total += m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels
    return total


# ---- activations: one forward on meta tensors ---------------------------------------------------

def _is_block(module) -> bool:
    """A unit diffusers runs under its gradient checkpointing function."""
    name = type(module).__name__
    return name == "ResnetBlock2D" or name.endswith("TransformerBlock")


def _measure(net, pipeline: str, modules: dict, notes: list[str], lora_targets: tuple[str, ...]) -> dict[str, Any]:
    inputs = _forward_inputs(net, pipeline, modules)
    blocks = [m for m in net.modules() if _is_block(m)]
    largest = max((sum(p.numel() for p in b.parameters()) for b in blocks), default=0) \
        or sum(p.numel() for p in net.parameters())
    shape: dict[str, Any] = {"largest_block": int(largest)}
    if inputs is None:
        notes.append(f"activations not measured for {type(net).__name__}: the estimate counts weights, "
                     f"gradients and optimizer states only")
        return shape
    kwargs, shape["latent"], shape["text_tokens"] = inputs
    full, checkpointed = {}, {}
    for method in TRAINED_BY:
        tally = _Tally(net, trained=_trained_params(net, method, lora_targets))
        tally.run(kwargs)
        full[method], checkpointed[method] = tally.full, min(tally.checkpointed, tally.full)
        shape["attention_probs"] = tally.probs
    return {**shape, "activations": full, "activations_checkpointed": checkpointed}


def _trained_params(net, method: str, lora_targets: tuple[str, ...]) -> list:
    """The parameters whose gradients decide what autograd keeps (LoRA: the wrapped layers' weights)."""
    wrapped = set(targets.lora_linears(net, catalog.get(method).trains))
    if wrapped:
        return [m.weight for n, m in net.named_modules() if n in wrapped]
    if method == "lora":
        return [m.weight for n, m in net.named_modules()
                if any(n == t or n.endswith(f".{t}") for t in lora_targets) and hasattr(m, "weight")]
    return list(method_params(net, method).values())


class _Tally:
    """One meta forward with grad: sums what autograd saves for the backward, split by checkpointed block.

    Saved tensors are counted once per base tensor (views share it); parameters are not activations.
    On meta tensors attention runs the math path, which saves its probabilities: those are left out
    (memory-efficient attention keeps none) and counted apart, for FMN, on cross-attention only.
    """

    SKIPPED_SAVES = ("SafeSoftmaxBackward0", "SoftmaxBackward0")

    def __init__(self, net, trained: list):
        self.net, self.trained = net, trained
        self.outside, self.inside, self.block_inputs, self.probs = 0, [], 0, 0
        # Counted tensors are kept alive until the forward ends, so that no id is reused.
        self._saved: dict[int, Any] = {}
        self._inputs: dict[int, Any] = {}
        self._params = {id(p) for p in net.parameters()}
        self._depth = 0

    @property
    def full(self) -> int:
        return int(self.outside + sum(self.inside))

    @property
    def checkpointed(self) -> int:
        """Block inputs + everything outside blocks + the largest block's internals (recomputed in its backward)."""
        return int(self.outside + self.block_inputs + max(self.inside, default=0))

    def run(self, kwargs: dict) -> None:
        import torch

        handles = []
        for m in self.net.modules():
            if _is_block(m):
                handles += [m.register_forward_pre_hook(self._enter, with_kwargs=True),
                            m.register_forward_hook(self._leave)]
            elif getattr(m, "is_cross_attention", False):
                handles.append(m.register_forward_pre_hook(self._attention, with_kwargs=True))
        before = [p.requires_grad for p in self.net.parameters()]
        try:
            for p in self.net.parameters():
                p.requires_grad_(False)
            for p in self.trained:
                p.requires_grad_(True)
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
                self.net(**kwargs)
        finally:
            for h in handles:
                h.remove()
            for p, rg in zip(self.net.parameters(), before):
                p.requires_grad_(rg)
            self._saved.clear()
            self._inputs.clear()

    def _pack(self, t):
        base = t._base if t._base is not None else t
        if id(base) in self._params or id(base) in self._saved:
            return t
        self._saved[id(base)] = base
        if type(t.grad_fn).__name__ in self.SKIPPED_SAVES:
            return t
        if self._depth:
            self.inside[-1] += base.numel()
        else:
            self.outside += base.numel()
        return t

    def _enter(self, module, args, kwargs):
        if not self._depth:
            for t in _tensors((args, kwargs)):
                if id(t) not in self._inputs:   # inputs shared by blocks (rotary embeddings) count once
                    self._inputs[id(t)] = t
                    self.block_inputs += t.numel()
            self.inside.append(0)
        self._depth += 1

    def _leave(self, module, args, output):
        self._depth -= 1

    def _attention(self, module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        text = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
        if hidden is not None and text is not None and hidden.dim() == 3:
            self.probs += hidden.shape[0] * module.heads * hidden.shape[1] * text.shape[1]


def _tensors(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)
    elif hasattr(obj, "to_tuple"):   # diffusers/transformers output classes
        yield from _tensors(obj.to_tuple())


def _text_tokens(pipeline: str, modules: dict) -> int:
    if pipeline in JOINT_TEXT_TOKENS:
        return JOINT_TEXT_TOKENS[pipeline]
    encoder = modules.get("text_encoder")
    return int(getattr(getattr(encoder, "config", None), "max_position_embeddings", 77) or 77)


def _latent_size(net, modules: dict) -> int:
    size = getattr(net.config, "sample_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0]
    vae = modules.get("vae")
    if size is None and vae is not None:
        size = vae.config.sample_size // 2 ** (len(vae.config.block_out_channels) - 1)
    return int(size or 128)


def _forward_inputs(net, pipeline: str, modules: dict):
    """(kwargs, latent shape per sample, text tokens) for one meta forward, or None for an unknown denoiser."""
    import torch

    def meta(*shape):
        return torch.empty(*shape, device="meta")

    cfg, kind = net.config, type(net).__name__
    tokens, size = _text_tokens(pipeline, modules), _latent_size(net, modules)
    step = torch.ones(1, device="meta")
    if kind == "UNet2DConditionModel":
        width = cfg.encoder_hid_dim or cfg.cross_attention_dim
        width = width[0] if isinstance(width, (list, tuple)) else width
        kwargs = {"sample": meta(1, cfg.in_channels, size, size), "timestep": step,
                  "encoder_hidden_states": meta(1, tokens, width)}
        if cfg.addition_embed_type == "text_time":
            pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            kwargs["added_cond_kwargs"] = {"text_embeds": meta(1, pooled), "time_ids": meta(1, 6)}
        return kwargs, [cfg.in_channels, size, size], tokens
    if kind == "SD3Transformer2DModel":
        kwargs = {"hidden_states": meta(1, cfg.in_channels, size, size), "timestep": step,
                  "encoder_hidden_states": meta(1, tokens, cfg.joint_attention_dim),
                  "pooled_projections": meta(1, cfg.pooled_projection_dim)}
        return kwargs, [cfg.in_channels, size, size], tokens
    if kind == "FluxTransformer2DModel":
        packed = (size // 2) ** 2   # 2x2 latent patches
        kwargs = {"hidden_states": meta(1, packed, cfg.in_channels), "timestep": step,
                  "encoder_hidden_states": meta(1, tokens, cfg.joint_attention_dim),
                  "pooled_projections": meta(1, cfg.pooled_projection_dim),
                  "img_ids": meta(packed, 3), "txt_ids": meta(tokens, 3)}
        if cfg.guidance_embeds:
            kwargs["guidance"] = step
        return kwargs, [packed, cfg.in_channels], tokens
    if kind == "ZImageTransformer2DModel":   # lists: one (C, frames, H, W) latent and one caption per sample
        kwargs = {"x": [meta(cfg.in_channels, 1, size, size)], "t": step,
                  "cap_feats": [meta(tokens, cfg.cap_feat_dim)]}
        return kwargs, [cfg.in_channels, size, size], tokens
    return None


# ---- the reference families ----------------------------------------------------------------------

def reference_inventories(path: Path = REFERENCE_MODELS) -> dict[str, ModelInventory]:
    """Inventories of the hand-written public architectures in configs/models/reference_models.json."""
    doc = json.loads(Path(path).read_text())
    out = {}
    for key, ref in doc["models"].items():
        specs = {name: (c["library"], c["class"], c["config"]) for name, c in ref["components"].items()}
        out[key] = inventory_from_configs(key, ref["pipeline"], specs)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m jobs.models.inventory",
                                description="Print a model's inventory as JSON (no weights are loaded).")
    p.add_argument("model", nargs="?", default="toyworld", help="toyworld, a diffusers directory or a hub id")
    p.add_argument("--reference", action="store_true",
                   help=f"write {REFERENCE_INVENTORIES.relative_to(REFERENCE_MODELS.parents[2])} "
                        f"from {REFERENCE_MODELS.name}")
    args = p.parse_args(argv)
    if args.reference:
        doc = {k: dataclasses.asdict(v) for k, v in reference_inventories().items()}
        REFERENCE_INVENTORIES.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {REFERENCE_INVENTORIES}")
        return 0
    print(inventory(args.model).to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
