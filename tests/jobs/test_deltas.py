"""Delta files: deterministic bytes, verified loads, exact apply/remove/stack, merged checkpoints."""
from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from jobs.deltas import delta as deltas
from erasecore.contracts import DeltaRef
from jobs.deltas.delta import (DeltaError, DeltaMeta, apply_delta, content_sha256, dense_delta, load_delta,
                         merge_to_checkpoint, remove_delta, save_delta, snapshot, stack)
from tests.fixtures.tiny_pipelines import text_output, tiny_sd_pipeline, unet_output

torch.set_num_threads(1)

KV = ("attn2.to_k.weight", "attn2.to_v.weight")
DENSE = DeltaMeta("dense", "esd-x", "star", {"lr": 1e-4, "steps": 3, "targets": ["attn2"]})


def cross_attention_keys(pipe) -> list[str]:
    return [f"unet.{n}" for n, _ in pipe.unet.named_parameters() if n.endswith(KV)]


@torch.no_grad()
def perturb(pipe, keys, seed: int, size: float = 0.05) -> None:
    """What an erasure method does, in miniature: move some parameters."""
    g = torch.Generator().manual_seed(seed)
    params = {f"{c}.{n}": p for c in ("unet", "text_encoder") for n, p in getattr(pipe, c).named_parameters()}
    for key in keys:
        params[key].add_(size * torch.randn(params[key].shape, generator=g))


def erased_delta(seed: int = 1) -> dict[str, torch.Tensor]:
    """A dense delta on cross-attention K/V, computed the way a method would."""
    pipe = tiny_sd_pipeline()
    keys = cross_attention_keys(pipe)
    base = snapshot(pipe, keys)
    perturb(pipe, keys, seed)
    return dense_delta(base, pipe)


def lora_delta(pipe, seed: int = 2, rank: int = 4, alpha: float = 8.0):
    """Random LoRA factors on UNet to_q and text-encoder q_proj modules."""
    g = torch.Generator().manual_seed(seed)
    mods = {f"unet.{n}": m for n, m in pipe.unet.named_modules() if n.endswith("attn2.to_q")}
    mods |= {f"text_encoder.{n}": m for n, m in pipe.text_encoder.named_modules() if n.endswith("self_attn.q_proj")}
    tensors = {}
    for name, m in mods.items():
        tensors[f"{name}.lora_A.weight"] = 0.1 * torch.randn(rank, m.in_features, generator=g)
        tensors[f"{name}.lora_B.weight"] = 0.1 * torch.randn(m.out_features, rank, generator=g)
    return tensors, DeltaMeta("lora", "lora-reverse", "circle", {"r": rank}, rank=rank, alpha=alpha)


def params(pipe) -> dict[str, torch.Tensor]:
    return {f"{c}.{n}": p.detach().clone() for c in ("unet", "text_encoder")
            for n, p in getattr(pipe, c).named_parameters()}


def assert_one_line(err: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and msg, msg
    for w in words:
        assert w in msg, msg


# ---------------------------------------------------------------- computing

def test_dense_delta_keeps_only_touched_parameters():
    pipe = tiny_sd_pipeline()
    keys = cross_attention_keys(pipe)
    base = snapshot(pipe, keys)
    perturb(pipe, keys[:3], seed=1)
    delta = dense_delta(base, pipe)
    assert sorted(delta) == sorted(keys[:3])
    now = params(pipe)
    for k, d in delta.items():
        assert d.dtype == torch.float32
        torch.testing.assert_close(base[k] + d, now[k], rtol=0, atol=1e-7)
    assert dense_delta(base, pipe, atol=1.0) == {}  # moves are ~0.05: all below atol


def test_snapshot_defaults_to_trainable_parameters_and_rejects_unknown_names():
    pipe = tiny_sd_pipeline()
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.requires_grad_(True)
    assert list(snapshot(pipe)) == ["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"]
    with pytest.raises(DeltaError) as err:
        snapshot(pipe, ["unet.no.such.weight"])
    assert_one_line(err, "unet.no.such.weight")


# ---------------------------------------------------------------- the file

def test_save_load_round_trip_is_byte_identical(tmp_path):
    delta = erased_delta()
    a = save_delta(delta, DENSE, tmp_path / "a.safetensors")
    b = save_delta(dict(reversed(list(delta.items()))), DENSE, tmp_path / "b" / "delta.safetensors")
    assert a.sha256 == b.sha256 == content_sha256(a.path)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b" / "delta.safetensors").read_bytes()
    tensors, meta = load_delta(a.path, a.sha256)
    assert meta == DENSE
    assert tensors.keys() == delta.keys() and all(torch.equal(tensors[k], delta[k]) for k in delta)
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors", "b"]  # no temp file left behind


def test_file_bytes_are_stable_across_processes_and_versions(tmp_path):
    """A golden hash: safetensors' own writer orders metadata by a per-process random seed."""
    meta = DeltaMeta("lora", "m", "c", {"b": [1, 2], "a": 0.5}, parent_sha256="ab" * 32, rank=1, alpha=2.0)
    tensors = {"unet.x.lora_A.weight": torch.arange(3.0)[None].half(), "unet.x.lora_B.weight": torch.ones(2, 1)}
    ref = save_delta(tensors, meta, tmp_path / "d.safetensors")
    assert ref.sha256 == "5f73f24371fc05d627619f7fd958056b63183eee5d0fc8081b041e532adc5429"
    assert load_file(ref.path)["unet.x.lora_A.weight"].dtype == torch.float16


def test_the_file_is_plain_safetensors_with_readable_metadata(tmp_path):
    delta = erased_delta()
    ref = save_delta(delta, DENSE, tmp_path / "d.safetensors")
    assert load_file(ref.path).keys() == delta.keys()
    with safe_open(ref.path, "pt") as f:
        header = f.metadata()
    assert header["kind"] == "dense" and header["concept"] == "star" and header["delta_format"] == "1"
    assert json.loads(header["config"]) == DENSE.config


def test_lora_delta_round_trip(tmp_path):
    tensors, meta = lora_delta(tiny_sd_pipeline())
    ref = save_delta(tensors, meta, tmp_path / "l.safetensors")
    back, meta_back = load_delta(ref.path, ref.sha256)
    assert meta_back == meta and meta_back.scale == 2.0
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)


def test_a_crash_while_writing_leaves_no_file(tmp_path, monkeypatch):
    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(deltas.os, "replace", crash)   # os itself: the core's atomic write renames with it
    with pytest.raises(DeltaError, match=f"cannot write {tmp_path / 'd.safetensors'}: disk gone"):
        save_delta(erased_delta(), DENSE, tmp_path / "d.safetensors")
    assert os.listdir(tmp_path) == []


def test_save_refuses_malformed_deltas(tmp_path):
    with pytest.raises(DeltaError, match="unknown delta kind"):
        save_delta({"unet.w": torch.ones(1)}, DeltaMeta("full", "m", "c"), tmp_path / "d.safetensors")
    tensors, meta = lora_delta(tiny_sd_pipeline())
    with pytest.raises(DeltaError, match="lacks its lora_B"):
        save_delta({k: v for k, v in tensors.items() if "lora_A" in k}, meta, tmp_path / "d.safetensors")
    with pytest.raises(DeltaError, match="rank=3"):
        save_delta(tensors, DeltaMeta("lora", "m", "c", rank=3, alpha=3.0), tmp_path / "d.safetensors")
    with pytest.raises(DeltaError, match="must end in .safetensors"):
        save_delta({"unet.w": torch.ones(1)}, DENSE, tmp_path / "d.bin")


# ---------------------------------------------------------------- refusing bad files

@pytest.fixture
def saved(tmp_path) -> DeltaRef:
    return save_delta(erased_delta(), DENSE, tmp_path / "steps" / "1-star" / "attempt-1" / "delta.safetensors")


def test_truncated_file_is_refused(saved):
    data = open(saved.path, "rb").read()
    with open(saved.path, "wb") as f:
        f.write(data[: len(data) - 100])
    with pytest.raises(DeltaError) as err:
        load_delta(saved.path)
    assert_one_line(err, saved.path, "corrupt", "truncated")


def test_truncated_header_is_refused(saved):
    data = open(saved.path, "rb").read()
    with open(saved.path, "wb") as f:
        f.write(data[:50])
    with pytest.raises(DeltaError) as err:
        load_delta(saved.path)
    assert_one_line(err, "corrupt")


def test_garbage_bytes_are_refused(tmp_path):
    path = tmp_path / "delta.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(DeltaError) as err:
        load_delta(path)
    assert_one_line(err, str(path), "corrupt")


def test_garbage_header_of_plausible_length_is_refused(tmp_path):
    path = tmp_path / "delta.safetensors"
    path.write_bytes(struct.pack("<Q", 16) + b"\xff" * 16 + b"\0" * 64)
    with pytest.raises(DeltaError) as err:
        load_delta(path)
    assert_one_line(err, "not JSON")


@pytest.mark.parametrize("name", ["delta.bin", "delta.pt", "delta.ckpt"])
def test_pickle_files_are_refused_unread(tmp_path, name, monkeypatch):
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"unet.w": [1.0]}))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(DeltaError) as err:
        load_delta(path)
    assert_one_line(err, str(path), "not a safetensors file")


def test_sha_mismatch_is_refused(saved):
    with pytest.raises(DeltaError) as err:
        load_delta(saved.path, expected_sha256="0" * 64)
    assert_one_line(err, saved.path, "sha256")


def test_one_flipped_data_byte_is_caught_by_the_sha(saved):
    data = bytearray(open(saved.path, "rb").read())
    data[-1] ^= 0xFF
    open(saved.path, "wb").write(bytes(data))
    load_delta(saved.path)  # still well formed ...
    with pytest.raises(DeltaError, match="sha256"):
        load_delta(saved.path, saved.sha256)  # ... but not what was committed


def test_safetensors_without_delta_metadata_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"unet.w": torch.ones(2)}, str(path))
    with pytest.raises(DeltaError) as err:
        load_delta(path)
    assert_one_line(err, "not a delta file")


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(DeltaError) as err:
        load_delta(tmp_path / "nope.safetensors")
    assert_one_line(err, "cannot be read")


# ---------------------------------------------------------------- applying

def test_apply_reproduces_the_erased_model_and_remove_returns_the_base():
    erased = tiny_sd_pipeline()
    keys = cross_attention_keys(erased)
    base_state = snapshot(erased, keys)
    perturb(erased, keys, seed=1)
    delta = dense_delta(base_state, erased)

    pipe = tiny_sd_pipeline()
    before = params(pipe)
    apply_delta(pipe, delta, DENSE)
    torch.testing.assert_close(unet_output(pipe), unet_output(erased), rtol=0, atol=1e-6)
    remove_delta(pipe, delta, DENSE)
    for k, v in params(pipe).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=1e-6)


def test_lora_apply_adds_scaled_product_and_remove_undoes_it():
    pipe = tiny_sd_pipeline()
    tensors, meta = lora_delta(pipe)
    before = params(pipe)
    text_before = text_output(pipe)
    apply_delta(pipe, tensors, meta)
    module = next(k for k in tensors if "text_encoder" in k).removesuffix(".lora_A.weight")
    a, b = tensors[module + ".lora_A.weight"], tensors[module + ".lora_B.weight"]
    expected = before[module + ".weight"] + 2.0 * b @ a  # alpha / rank = 8 / 4
    torch.testing.assert_close(params(pipe)[module + ".weight"], expected, rtol=0, atol=1e-6)
    assert not torch.allclose(text_output(pipe), text_before)
    remove_delta(pipe, tensors, meta)
    for k, v in params(pipe).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=1e-6)


def test_apply_names_a_missing_key_and_changes_nothing():
    pipe = tiny_sd_pipeline()
    before = params(pipe)
    delta = erased_delta() | {"unet.down_blocks.9.attn2.to_k.weight": torch.ones(2, 2)}
    with pytest.raises(DeltaError) as err:
        apply_delta(pipe, delta, DENSE)
    assert_one_line(err, "unet.down_blocks.9.attn2.to_k.weight")
    assert all(torch.equal(v, before[k]) for k, v in params(pipe).items())
    with pytest.raises(DeltaError) as err:
        apply_delta(pipe, {"transformer.x.weight": torch.ones(1)}, DENSE)
    assert_one_line(err, "no component 'transformer'")


def test_stack_of_two_deltas_equals_the_sum(tmp_path):
    pipe = tiny_sd_pipeline()
    before = params(pipe)
    dense = erased_delta(seed=1)
    lora, lmeta = lora_delta(pipe)
    r1 = save_delta(dense, DENSE, tmp_path / "1.safetensors")
    r2 = save_delta(lora, DeltaMeta(**{**lmeta.__dict__, "parent_sha256": r1.sha256}), tmp_path / "2.safetensors")
    metas = stack(pipe, [r1, r2])
    assert [m.kind for m in metas] == ["dense", "lora"] and metas[1].parent_sha256 == r1.sha256
    expected = dict(before)
    for k, d in (dense | deltas.dense_change(lora, lmeta)).items():
        expected[k] = expected[k] + d
    for k, v in params(pipe).items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=1e-6)


def test_stack_rolls_back_when_a_later_delta_is_bad(tmp_path):
    pipe = tiny_sd_pipeline()
    before = params(pipe)
    r1 = save_delta(erased_delta(), DENSE, tmp_path / "1.safetensors")
    bad = DeltaRef(path=r1.path, sha256="f" * 64)
    with pytest.raises(DeltaError, match="sha256"):
        stack(pipe, [r1, bad])
    for k, v in params(pipe).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=1e-6)


def test_merge_to_checkpoint_loads_back_with_identical_outputs(tmp_path):
    from diffusers import DiffusionPipeline

    pipe = tiny_sd_pipeline()
    lora, lmeta = lora_delta(pipe)
    refs = [save_delta(erased_delta(), DENSE, tmp_path / "1.safetensors"),
            save_delta(lora, lmeta, tmp_path / "2.safetensors")]
    out = merge_to_checkpoint(pipe, refs, tmp_path / "merged")
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(out.parent.glob(".merged*"))
    loaded = DiffusionPipeline.from_pretrained(out, safety_checker=None, feature_extractor=None,
                                               requires_safety_checker=False)
    assert torch.equal(unet_output(loaded), unet_output(pipe))
    assert torch.equal(text_output(loaded), text_output(pipe))
    with pytest.raises(DeltaError, match="already exists"):
        merge_to_checkpoint(pipe, refs, out)


def test_text_encoder_keys_apply_across_transformers_versions():
    """transformers 5 dropped CLIPTextModel's "text_model." level; deltas name either form."""
    pipe = tiny_sd_pipeline()
    native = {n for n, _ in pipe.text_encoder.named_parameters()}
    name = next(n for n in sorted(native) if n.endswith("self_attn.q_proj.weight"))
    other = name.removeprefix("text_model.") if name.startswith("text_model.") else "text_model." + name
    shape = dict(pipe.text_encoder.named_parameters())[name].shape
    a, b = tiny_sd_pipeline(), tiny_sd_pipeline()
    apply_delta(a, {f"text_encoder.{name}": torch.ones(shape)}, DENSE)
    apply_delta(b, {f"text_encoder.{other}": torch.ones(shape)}, DENSE)
    assert torch.equal(text_output(a), text_output(b))
    assert not torch.equal(text_output(a), text_output(pipe))
