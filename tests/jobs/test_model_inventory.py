"""The inventory counted on the meta device equals what real models built from the same configs hold."""
from __future__ import annotations

import json

import pytest
import torch

from jobs.models import inventory as mi
from jobs.methods import registry
from jobs.models import targets
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from tests.fixtures.tiny_pipelines import tiny_sd_pipeline


def real_counts(pipe) -> dict[str, int]:
    return {name: sum(p.numel() for p in getattr(pipe, name).parameters())
            for name in ("unet", "text_encoder", "vae")}


@pytest.fixture(scope="module")
def toy():
    torch.set_num_threads(1)
    return load_pipeline("toyworld"), mi.inventory("toyworld")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny SD-layout pipeline, saved as a diffusers directory, and its inventory from that directory."""
    pipe = tiny_sd_pipeline(0)
    where = tmp_path_factory.mktemp("tiny") / "pipeline"
    pipe.save_pretrained(where)
    return pipe, mi.inventory(str(where))


def test_toy_counts_equal_the_loaded_weights(toy):
    pipe, inv = toy
    assert inv.pipeline == "StableDiffusionPipeline" and inv.denoiser == "unet"
    assert inv.components == real_counts(pipe)
    assert inv.latent == [4, 8, 8] and inv.text_tokens == pipe.text_encoder.config.max_position_embeddings


def test_tiny_pipeline_counts_from_its_directory(tiny):
    pipe, inv = tiny
    assert inv.components == real_counts(pipe)
    unet = pipe.unet
    assert inv.trainable["esd-x"] == sum(p.numel() for p in targets.cross_attention_params(unet).values())
    assert inv.trainable["esd-u"] == sum(p.numel() for p in targets.non_cross_attention_params(unet).values())
    kv = sum(p.numel() for p in targets.cross_attention_params(unet, projections=("to_k", "to_v")).values())
    assert inv.trainable["fmn"] == inv.trainable["ca"] == kv and inv.trainable["uce"] == 0


def test_lora_features_times_rank_is_what_peft_adds(tiny):
    from peft import LoraConfig

    _, inv = tiny
    unet = tiny_sd_pipeline(0).unet
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=list(mi.LORA_TARGETS)))
    added = sum(p.numel() for n, p in unet.named_parameters() if ".lora_" in n)
    assert added == 4 * inv.lora_features > 0


class _Trained(Exception):
    """Raised by the stand-in training loop: carries how many parameters the method asked to train."""


@pytest.mark.parametrize("method", mi.TRAINED_BY)
def test_the_inventory_counts_what_each_method_really_trains(tiny, monkeypatch, method):
    """Run the method up to its training loop and count the parameters it hands over."""
    from jobs.training.concept_prompts import text_concept_prompts

    _, inv = tiny

    def stand_in(net, params, *args, **kwargs):
        values = params.values() if isinstance(params, dict) else params
        raise _Trained(sum(p.numel() for p in values))

    from jobs.methods import fmn
    from jobs.training import guided, lora_finetune

    for module in (guided, fmn, lora_finetune):   # every module that runs the fine-tune loop (lora, spm, mace: the scaffold)
        monkeypatch.setattr(module, "finetune", stand_in)
    hp = {"steps": 1, "batch": 2} | ({"rank": 4} if method == "lora" else {})
    with pytest.raises(_Trained) as caught:
        registry.erase(method, tiny_sd_pipeline(0), EraseInputs("star", text_concept_prompts("star", preserve=("heart",)),
                                                                 hp, seed=0, log=lambda *a: None))
    expected = 4 * inv.lora_features if method == "lora" else inv.trainable[method]
    assert caught.value.args[0] == expected


def saved_on_cpu(unet, trained: list, checkpointing: bool) -> int:
    """Elements autograd really saves in one CPU forward (batch 1) with `trained` requiring grad."""
    unet.train()
    (unet.enable_gradient_checkpointing if checkpointing else unet.disable_gradient_checkpointing)()
    params = {p.untyped_storage().data_ptr() for p in unet.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes() // t.element_size())
        return t

    for p in unet.parameters():
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    text = torch.randn(1, 24, unet.config.cross_attention_dim, generator=g)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            unet(x, torch.tensor([10]), encoder_hidden_states=text)
    finally:
        unet.disable_gradient_checkpointing()
        unet.eval().requires_grad_(False)
    return sum(seen.values())


@pytest.mark.parametrize("method", ["esd-x", "esd-u", "fmn"])
def test_measured_activations_match_a_real_forward(toy, method):
    """The meta count is within 10% of what a real CPU forward saves (memory-efficient attention)."""
    pipe, inv = toy
    trained = list(mi.method_params(pipe.unet, method).values())
    real = saved_on_cpu(pipe.unet, trained, checkpointing=False)
    assert abs(inv.activations[method] - real) <= 0.1 * real, (inv.activations[method], real)
    # With checkpointing, the forward keeps only block inputs and what lies outside blocks; the
    # estimate adds one block's recomputation on top, and stays below the full count.
    kept = saved_on_cpu(pipe.unet, trained, checkpointing=True)
    assert kept <= inv.activations_checkpointed[method] < inv.activations[method]


def test_tied_text_encoder_weights_are_counted_once():
    import transformers

    cfg = {"vocab_size": 320, "d_model": 64, "d_kv": 8, "d_ff": 128, "num_layers": 2, "num_heads": 4,
           "feed_forward_proj": "gated-gelu"}
    real = transformers.T5EncoderModel(transformers.T5Config(**cfg))
    meta = mi.build_on_meta("transformers", "T5EncoderModel", cfg)
    assert sum(p.numel() for p in meta.parameters()) == sum(p.numel() for p in real.parameters())
    assert next(meta.parameters()).device.type == "meta"


def test_missing_or_broken_models_are_one_line_errors(tmp_path):
    from erasecore.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="no such directory"):
        mi.inventory(str(tmp_path / "absent"))
    with pytest.raises(ModelLoadError, match="model_index.json"):
        mi.inventory(str(tmp_path))


@pytest.fixture(scope="module")
def reference():
    return mi.reference_inventories()


@pytest.mark.slow
def test_reference_architectures_have_the_published_parameter_counts(reference):
    published = json.loads(mi.REFERENCE_MODELS.read_text())["models"]
    for key, model in published.items():
        assert reference[key].components == {n: c["params"] for n, c in model["components"].items()}, key


@pytest.mark.slow
def test_the_stored_reference_inventories_are_up_to_date(reference):
    stored = json.loads(mi.REFERENCE_INVENTORIES.read_text())
    fresh = json.loads(json.dumps({k: v.__dict__ for k, v in reference.items()}))
    assert stored == fresh, "regenerate with: .venv/bin/python -m jobs.models.inventory --reference"
