"""LoRA export: SVD factors, and files that diffusers' load_lora_weights and kohya readers reproduce."""
from __future__ import annotations

import functools

import pytest
import torch
from safetensors.torch import load_file

from jobs.deltas.delta import LORA_A, LORA_B, DeltaMeta, apply_delta, dense_change, dense_delta, snapshot
from jobs.deltas.lora_export import (DIFFUSERS_WEIGHT_NAME, LoraFormatError, combine, dense_to_lora,
                              export_diffusers_lora, export_kohya_lora, kohya_name, read_kohya_lora)
from tests.fixtures.noise_floor import FACTOR, in_float64, product_rounding
from tests.fixtures.tiny_pipelines import text_output, tiny_sd_pipeline, unet_output

torch.set_num_threads(1)

DENSE = DeltaMeta("dense", "esd-x", "star", {"lr": 1e-4})
# out_proj too: diffusers 0.42 cannot load a kohya text-encoder LoRA without it (it sniffs the
# format by looking for "to_out_lora" and raises "Could not automatically infer state dict type").
TEXT_MODULES = ("self_attn.q_proj", "self_attn.out_proj")


def dense_erasure(seed: int = 1, size: float = 0.05) -> dict[str, torch.Tensor]:
    """A dense delta on every cross-attention K/V weight, computed as a method would."""
    pipe = tiny_sd_pipeline()
    kv = ("attn2.to_k.weight", "attn2.to_v.weight")
    keys = [f"unet.{n}" for n, _ in pipe.unet.named_parameters() if n.endswith(kv)]
    base = snapshot(pipe, keys)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in pipe.unet.named_parameters():
            if f"unet.{n}" in base:
                p.add_(size * torch.randn(p.shape, generator=g))
    return dense_delta(base, pipe)


def lora_delta(seed: int = 2, rank: int = 4, alpha: float = 8.0, unet_suffix: str = "attn2.to_q"):
    """Random LoRA factors on UNet cross-attention and text-encoder attention, alpha != rank."""
    pipe = tiny_sd_pipeline()
    g = torch.Generator().manual_seed(seed)
    mods = {f"unet.{n}": m for n, m in pipe.unet.named_modules() if n.endswith(unet_suffix)}
    mods |= {f"text_encoder.{n}": m for n, m in pipe.text_encoder.named_modules() if n.endswith(TEXT_MODULES)}
    tensors = {}
    for name, m in mods.items():
        tensors[name + LORA_A] = 0.1 * torch.randn(rank, m.in_features, generator=g)
        tensors[name + LORA_B] = 0.1 * torch.randn(m.out_features, rank, generator=g)
    return tensors, DeltaMeta("lora", "lora-reverse", "circle", rank=rank, alpha=alpha)


def applied(*deltas):
    pipe = tiny_sd_pipeline()
    for tensors, meta in deltas:
        apply_delta(pipe, tensors, meta)
    return pipe


@functools.cache
def output_floor() -> float:
    """What float32 rounding does to the probes (UNet and text encoder outputs) of the tiny model on this
    machine: |fp32 - fp64|. A LoRA and the dense change it carries are the same model summed in another order."""
    pipe = tiny_sd_pipeline()
    fp32 = unet_output(pipe), text_output(pipe)
    in_float64(pipe.unet, pipe.text_encoder)
    fp64 = unet_output(pipe), text_output(pipe)
    return max((x.double() - y).abs().max().item() for x, y in zip(fp32, fp64))


def assert_same_model(a, b):
    """The same model up to float32 rounding: within FACTOR x this machine's output_floor()."""
    atol = FACTOR * output_floor()
    torch.testing.assert_close(unet_output(a), unet_output(b), rtol=0, atol=atol)
    torch.testing.assert_close(text_output(a), text_output(b), rtol=0, atol=atol)


# ---------------------------------------------------------------- SVD

def test_full_rank_svd_is_exact():
    delta = dense_erasure()
    fit = dense_to_lora(delta, rank=64)
    assert fit.rank == 64 and fit.alpha == 64.0 and fit.max_rel_error < 1e-6
    meta = DeltaMeta("lora", "m", "c", rank=fit.rank, alpha=fit.alpha)
    for key, d in dense_change(fit.tensors, meta).items():
        module = key.removesuffix(".weight")
        bound = product_rounding(fit.tensors[module + LORA_B], fit.tensors[module + LORA_A], meta.scale)
        assert ((d.double() - delta[key].double()).abs() <= bound).all(), key   # float32 rounding, elementwise


def test_truncated_svd_reports_its_true_error():
    delta = dense_erasure()
    fit = dense_to_lora(delta, rank=4)
    meta = DeltaMeta("lora", "m", "c", rank=fit.rank, alpha=fit.alpha)
    for key, approx in dense_change(fit.tensors, meta).items():
        module = key.removesuffix(".weight")
        s = torch.linalg.svdvals(delta[key].double())
        expected = (s[4:].square().sum() / s.square().sum()).sqrt().item()  # Eckart-Young
        actual = ((approx - delta[key]).norm() / delta[key].norm()).item()
        assert fit.rel_error[module] == pytest.approx(expected, rel=1e-6)
        assert actual == pytest.approx(expected, rel=1e-4)
        assert 0.1 < expected < 1  # random changes are far from rank 4: the test means something


def test_non_2d_changes_are_refused_or_skipped_by_name():
    delta = dense_erasure() | {"unet.conv_in.weight": torch.ones(32, 4, 3, 3), "unet.conv_in.bias": torch.ones(32)}
    with pytest.raises(LoraFormatError) as err:
        dense_to_lora(delta, rank=4)
    assert "unet.conv_in.bias" in str(err.value) and "\n" not in str(err.value)
    fit = dense_to_lora(delta, rank=4, skip_non_2d=True)
    assert fit.skipped == ("unet.conv_in.bias", "unet.conv_in.weight")
    assert len(fit.modules) == len(delta) - 2


def test_dense_delta_needs_a_rank():
    with pytest.raises(LoraFormatError, match="give a rank"):
        combine([(dense_erasure(), DENSE)])


# ---------------------------------------------------------------- diffusers format

def test_diffusers_lora_reproduces_a_dense_change_at_full_rank(tmp_path):
    delta = dense_erasure()
    out = export_diffusers_lora([(delta, DENSE)], tmp_path, rank=64)
    assert out.path == str(tmp_path / DIFFUSERS_WEIGHT_NAME)
    keys = load_file(out.path)
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight" in keys
    want = applied((delta, DENSE))

    pipe = tiny_sd_pipeline()
    pipe.load_lora_weights(str(tmp_path))
    assert_same_model(pipe, want)
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    assert_same_model(pipe, want)


def test_diffusers_lora_at_low_rank_is_off_by_exactly_the_svd_error(tmp_path):
    delta = dense_erasure()
    out = export_diffusers_lora([(delta, DENSE)], tmp_path, rank=4)
    base = dict(tiny_sd_pipeline().unet.named_parameters())
    pipe = tiny_sd_pipeline()
    pipe.load_lora_weights(str(tmp_path))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = dict(pipe.unet.named_parameters())
    for key, d in delta.items():
        name = key.removeprefix("unet.")
        err = ((fused[name] - base[name] - d).norm() / d.norm()).item()
        assert err == pytest.approx(out.fit.rel_error[key.removesuffix(".weight")], rel=1e-3)


def test_diffusers_lora_keeps_the_scale_when_alpha_is_not_rank(tmp_path):
    delta = lora_delta(rank=4, alpha=8.0)
    out = export_diffusers_lora([delta], tmp_path)
    assert out.fit.rank == 4 and out.fit.max_rel_error == 0.0
    assert any(k.startswith("text_encoder.text_model.encoder.layers.") for k in load_file(out.path))
    pipe = tiny_sd_pipeline()
    pipe.load_lora_weights(str(tmp_path))
    assert_same_model(pipe, applied(delta))
    pipe.set_adapters([pipe.get_active_adapters()[0]], adapter_weights=[0.0])
    assert_same_model(pipe, tiny_sd_pipeline())  # switchable: weight 0 is the base model


def test_stacked_lora_deltas_concatenate_exactly(tmp_path):
    first = lora_delta(seed=2, rank=4, alpha=8.0, unet_suffix="attn2.to_q")
    second = lora_delta(seed=3, rank=2, alpha=1.0, unet_suffix="attn2.to_k")
    out = export_diffusers_lora([first, second], tmp_path)
    assert out.fit.rank == 6
    pipe = tiny_sd_pipeline()
    pipe.load_lora_weights(str(tmp_path))
    assert_same_model(pipe, applied(first, second))


def test_dense_and_lora_deltas_stack_through_svd(tmp_path):
    deltas = [(dense_erasure(), DENSE), lora_delta()]
    export_diffusers_lora(deltas, tmp_path, rank=64)
    pipe = tiny_sd_pipeline()
    pipe.load_lora_weights(str(tmp_path))
    assert_same_model(pipe, applied(*deltas))


# ---------------------------------------------------------------- kohya format

def test_kohya_names_match_diffusers_own_converter():
    from diffusers.utils import convert_state_dict_to_kohya

    tensors, _ = lora_delta()
    ours = {kohya_name(k.removesuffix(LORA_A)) for k in tensors if k.endswith(LORA_A)}
    peft_style = {k.replace("text_encoder.", "text_encoder.text_model."): v for k, v in tensors.items()}
    theirs = {k.split(".")[0].replace("lora_te1_", "lora_te_")
              for k in convert_state_dict_to_kohya(peft_style)}
    assert ours == theirs
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q" in ours
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" in ours


def test_kohya_lora_writes_the_true_alpha_and_round_trips(tmp_path):
    delta = lora_delta(rank=4, alpha=8.0)
    out = export_kohya_lora([delta], tmp_path / "erase.safetensors")
    raw = load_file(out.path)
    alphas = {k: v for k, v in raw.items() if k.endswith(".alpha")}
    assert alphas and all(v.ndim == 0 and v.item() == 8.0 for v in alphas.values())  # not rank (4)
    back = read_kohya_lora(out.path, tiny_sd_pipeline())
    assert_same_model(applied(back), applied(delta))


def test_kohya_lora_loads_in_diffusers(tmp_path):
    delta = lora_delta(rank=4, alpha=8.0)
    export_kohya_lora([delta], tmp_path / "erase.safetensors")
    pipe = tiny_sd_pipeline()
    pipe.load_lora_weights(str(tmp_path), weight_name="erase.safetensors")
    assert_same_model(pipe, applied(delta))


def test_kohya_export_of_a_dense_change(tmp_path):
    delta = dense_erasure()
    export_kohya_lora([(delta, DENSE)], tmp_path / "erase.safetensors", rank=64)
    pipe = tiny_sd_pipeline()
    pipe.load_lora_weights(str(tmp_path), weight_name="erase.safetensors")
    assert_same_model(pipe, applied((delta, DENSE)))


def test_kohya_refuses_components_it_cannot_name(tmp_path):
    tensors = {"prior.blocks.0.attn.to_k" + LORA_A: torch.ones(1, 2),
               "prior.blocks.0.attn.to_k" + LORA_B: torch.ones(2, 1)}
    with pytest.raises(LoraFormatError, match="'prior'"):
        export_kohya_lora([(tensors, DeltaMeta("lora", "m", "c", rank=1, alpha=1.0))], tmp_path / "x.safetensors")


def test_an_spm_membrane_exports_as_diffusers_and_kohya_lora(tmp_path):
    """SPM's rank-1 factors on attn1/attn2/ff linears load back through both formats as the same model."""
    from jobs.methods import registry
    from jobs.methods.interface import EraseInputs
    from jobs.training.concept_prompts import text_concept_prompts

    out = registry.erase("spm", tiny_sd_pipeline(), EraseInputs("star", text_concept_prompts("star", ("heart",)),
                                                              {"steps": 2, "batch": 2}, log=lambda *a: None))
    delta = (out.tensors, DeltaMeta("lora", "spm", "star", rank=out.rank, alpha=out.alpha))
    assert out.rank == 1 and any(".ff.net.0.proj." in k for k in out.tensors) and any(".attn1." in k for k in out.tensors)
    want = applied(delta)
    assert not torch.allclose(unet_output(want), unet_output(tiny_sd_pipeline()))
    export_diffusers_lora([delta], tmp_path)
    pipe = tiny_sd_pipeline()
    pipe.load_lora_weights(str(tmp_path))
    assert_same_model(pipe, want)
    kohya = export_kohya_lora([delta], tmp_path / "spm.safetensors")
    assert kohya.fit.rank == 1 and kohya.fit.max_rel_error == 0.0
    assert_same_model(applied(read_kohya_lora(kohya.path, tiny_sd_pipeline())), want)
