"""The memory planner: each term of the formula, ZeRO and offload, checkpointing, and what plan() picks or explains."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from erasecore.inventory import REFERENCE_INVENTORIES, REFERENCE_MODELS, ModelInventory
from orchestrator.planning import memory_plan as mp
from erasecore.errors import ConfigError

GIB = mp.GIB
REPO = Path(__file__).resolve().parents[2]
TRAINING = ("esd-x", "esd-u", "fmn", "ca", "lora")

# Round numbers, so that every term can be written down by hand.
INV = ModelInventory(
    model="synthetic", pipeline="StableDiffusionPipeline", denoiser="unet",
    components={"text_encoder": 100_000_000, "unet": 1_000_000_000, "vae": 50_000_000},
    trainable={"uce": 0, "esd-x": 100_000_000, "esd-u": 900_000_000, "fmn": 40_000_000, "ca": 40_000_000, "lora": 0},
    lora_features=1_000_000, latent=[4, 64, 64], text_tokens=77,
    activations={m: 100_000_000 for m in TRAINING}, activations_checkpointed={m: 20_000_000 for m in TRAINING},
    attention_probs=5_000_000, largest_block=50_000_000)


def settings(method="esd-u", **kw) -> mp.StepSettings:
    return mp.StepSettings(method=method, **{"batch": 2, **kw})


def terms(method="esd-u", gb=80.0, **kw) -> dict[str, float]:
    return mp.estimate(INV, settings(method, **kw), gb).terms


ZERO = {s.name: s for s in mp.SHIPPED}


def test_fp32_ddp_one_worker_term_by_term():
    t = terms("esd-u")
    assert t["weights: unet"] == 1e9 * 4
    assert t["weights: frozen unet copy"] == 1e9 * 4          # ESD keeps a frozen copy for its targets
    assert t["weights: text_encoder"] == 1e8 * 4 and t["weights: vae"] == 5e7 * 4
    assert t["gradients"] == 9e8 * 4
    assert t["optimizer"] == 9e8 * 8                           # AdamW m and v, no master copy in fp32
    assert t["buffers"] == 0                                   # no DDP wrapper with one worker
    assert t["activations"] == 2 * 2 * 1e8 * 4                 # batch 2 x 2 graph-holding forwards x A x 4 bytes
    assert t["overhead"] == 1.0 * GIB
    e = mp.estimate(INV, settings("esd-u"), 80)
    assert e.total == sum(t.values()) and e.budget == 0.9 * 80 * GIB and e.fits


def test_frozen_components_in_half_precision_halve_only_their_weights():
    """resources.frozen_precision auto (bf16 on the GPU a plan is for): text encoders and VAE at 2 bytes;
    the trained denoiser and ESD's frozen copy of it stay as the step holds them."""
    half, full = terms("esd-u", frozen_precision="auto"), terms("esd-u")
    assert half["weights: text_encoder"] == 1e8 * 2 and half["weights: vae"] == 5e7 * 2
    frozen = ("weights: text_encoder", "weights: vae")
    assert {k: v for k, v in half.items() if k not in frozen} == {k: v for k, v in full.items() if k not in frozen}
    assert terms("esd-u", frozen_precision="fp16") == terms("esd-u", frozen_precision="bf16") == half


def test_frozen_encoders_in_bf16_make_sd3_plannable_on_24_gb():
    """SD3's T5-XXL alone is 17.7 GiB in fp32: with the frozen parts in bf16 a 24 GB plan exists."""
    inv = ModelInventory(**json.loads(REFERENCE_INVENTORIES.read_text())["sd3-medium"])
    hp = {"batch": 16, "grad_accum": 1, "mixed_precision": "no"}
    fp32 = mp.plan(inv, [mp.step_settings("esd-x", hp, frozen_precision="fp32")], 24)
    bf16 = mp.plan(inv, [mp.step_settings("esd-x", hp, frozen_precision="auto")], 24)
    assert not fp32.fits and "text_encoder_3" in fp32.steps[0].reason
    assert bf16.fits and bf16.steps[0].chosen.total <= 0.9 * 24 * GIB


def test_ddp_mixed_precision_halves_only_activations():
    """Accelerate's autocast keeps the loaded fp32 weights, gradients and optimizer; it computes in half."""
    t, full = terms("esd-u", precision="bf16"), terms("esd-u")
    assert {k: v for k, v in t.items() if k != "activations"} == {k: v for k, v in full.items() if k != "activations"}
    assert t["activations"] == 2 * 2 * 1e8 * 2
    assert terms("esd-u", precision="fp16") == t


def test_deepspeed_half_precision_halves_the_denoiser_and_adds_fp32_masters():
    t = terms("esd-u", precision="bf16", strategy=ZERO["zero1"])
    assert t["weights: unet"] == 1e9 * 2                       # DeepSpeed converts the trained network
    assert t["weights: text_encoder"] == 1e8 * 4 and t["weights: frozen unet copy"] == 1e9 * 4   # loaded fp32
    assert t["gradients"] == 9e8 * 2
    assert t["optimizer"] == 9e8 * 12                          # m, v and the fp32 master weights
    assert t["activations"] == 2 * 2 * 1e8 * 2


def test_method_shapes():
    assert "weights: frozen unet copy" not in terms("fmn") and "weights: frozen unet copy" not in terms("lora")
    fmn = terms("fmn")
    assert fmn["activations"] == 2 * 1 * (1e8 + 5e6) * 4       # one forward, plus the stored attention probabilities
    lora = terms("lora", rank=4)
    assert lora["weights: unet"] == (1e9 + 4 * 1e6) * 4        # the factors live in the denoiser
    assert lora["optimizer"] == 4 * 1e6 * 8
    uce = mp.estimate(INV, settings("uce", strategy=ZERO["zero3"], num_workers=4), 80).terms
    assert uce["gradients"] == uce["optimizer"] == uce["activations"] == uce["buffers"] == 0
    assert uce["weights: unet"] == 1e9 * 4                     # closed form: no ZeRO, the whole model
    assert uce["overhead"] == 1.0 * GIB


def test_gradient_checkpointing_uses_the_checkpointed_activations():
    assert terms("esd-x", gradient_checkpointing=True)["activations"] == 2 * 2 * 2e7 * 4


def test_batch_is_split_over_workers_rounding_up():
    assert terms("esd-u", batch=5, num_workers=2)["activations"] == 3 * 2 * 1e8 * 4
    assert terms("esd-u", batch=5, num_workers=2, grad_accum=8) == terms("esd-u", batch=5, num_workers=2)


def test_ddp_with_workers_adds_gradient_buckets_and_nccl():
    t = terms("esd-u", num_workers=4)
    assert t["buffers"] == 9e8 * 4 and t["overhead"] == 1.5 * GIB
    assert t["optimizer"] == 9e8 * 8 and t["gradients"] == 9e8 * 4   # DDP replicates everything


@pytest.mark.parametrize("name, optimizer_div, grads_div", [("zero1", 4, 1), ("zero2", 4, 4), ("zero3", 4, 4)])
def test_zero_stages_divide_over_workers(name, optimizer_div, grads_div):
    t = terms("esd-u", num_workers=4, strategy=ZERO[name])
    assert t["optimizer"] == 9e8 * 8 / optimizer_div
    assert t["gradients"] == 9e8 * 4 / grads_div
    assert t["buffers"] == min(9e8, mp.REDUCE_BUCKET) * 4
    assert t["weights: frozen unet copy"] == 1e9 * 4            # never sharded
    assert t["weights: text_encoder"] == 1e8 * 4
    if name == "zero3":
        assert t["weights: unet"] == 1e9 * 4 / 4 + 2 * 5e7 * 4  # a shard + two gathered blocks
    else:
        assert t["weights: unet"] == 1e9 * 4


def test_offload_moves_optimizer_and_gradients_and_with_zero3_the_parameters_to_cpu():
    e = mp.estimate(INV, settings("esd-u", num_workers=2, strategy=ZERO["zero2-offload"]), 80)
    assert e.terms["optimizer"] == 0 and e.terms["gradients"] == 0
    assert e.terms["weights: unet"] == 1e9 * 4
    assert e.host == 9e8 * 8 / 2 + 9e8 * 4 / 2
    e3 = mp.estimate(INV, settings("esd-u", num_workers=2, strategy=ZERO["zero3-offload"]), 80)
    assert e3.terms["weights: unet"] == 2 * 5e7 * 4             # only the gathered blocks stay on the GPU
    assert e3.host == e.host + 1e9 * 4 / 2


def test_the_shipped_deepspeed_configs_are_what_the_planner_thinks():
    assert mp.strategy_of("ddp", "configs/deepspeed/zero2.json", {}) == mp.DDP
    for s in mp.SHIPPED:
        config = json.loads((REPO / s.config).read_text())
        assert mp.strategy_of("deepspeed", str(REPO / s.config), config) == \
            dataclasses.replace(s, config=str(REPO / s.config))


def test_a_deepspeed_config_without_a_zero_mapping_is_a_config_error():
    with pytest.raises(ConfigError, match="deepspeed_config"):
        mp.strategy_of("deepspeed", "ds.json", {"zero_optimization": 2})


# ---- plan() ----------------------------------------------------------------------------------------

def gb_between(a: mp.Estimate, b: mp.Estimate) -> float:
    """A GPU size (GB) whose usable memory lies between two totals."""
    return (a.total + b.total) / 2 / GIB / mp.USABLE


def test_the_configured_settings_are_kept_when_they_fit():
    p = mp.plan(INV, [settings("uce"), settings("esd-x")], 80)
    assert p.fits and p.unchanged and p.overrides == []
    assert all(m.chosen.settings == m.configured.settings for m in p.steps)
    assert "nothing to change" in mp.format_plan(p)


def test_checkpointing_is_picked_when_it_is_the_cheapest_change_that_fits():
    s = settings("esd-u", batch=4, tunable_precision=False)
    ckpt = mp.estimate(INV, dataclasses.replace(s, gradient_checkpointing=True), 80)
    p = mp.plan(INV, [s], ckpt.total / GIB / mp.USABLE + 0.01)
    assert not p.steps[0].configured.fits
    assert p.fits and p.overrides == ["resources.gradient_checkpointing=true"]
    assert p.steps[0].chosen.settings.gradient_checkpointing


def test_zero3_is_picked_when_sharding_is_needed():
    s = settings("esd-u", batch=4, num_workers=8, gradient_checkpointing=True)
    z3 = mp.estimate(INV, dataclasses.replace(s, strategy=ZERO["zero3"]), 80)
    z2 = mp.estimate(INV, dataclasses.replace(s, strategy=ZERO["zero2"]), 80)
    assert z3.total < z2.total
    p = mp.plan(INV, [s], gb_between(z3, z2))
    assert p.fits
    assert p.overrides[:2] == ["resources.strategy=deepspeed", "resources.deepspeed_config=configs/deepspeed/zero3.json"]


def test_halving_the_batch_keeps_samples_per_optimizer_step():
    s = settings("esd-x", batch=16, grad_accum=2, gradient_checkpointing=True, strategy=ZERO["zero3-offload"],
                 precision="bf16")
    half = mp.estimate(INV, dataclasses.replace(s, batch=8, grad_accum=4), 80)
    quarter = mp.estimate(INV, dataclasses.replace(s, batch=4, grad_accum=8), 80)
    p = mp.plan(INV, [s], gb_between(quarter, half))
    chosen = p.steps[0].chosen.settings
    assert p.fits and chosen.batch * chosen.grad_accum == 32 and chosen.batch == 4
    assert p.overrides == ["hparams.esd-x.batch=4", "hparams.esd-x.grad_accum=8"]


def test_a_halved_batch_still_splits_evenly_over_the_workers():
    assert mp._halvings(settings("esd-u", batch=16, num_workers=4)) == [0, 1, 2]    # 16, 8, 4
    assert mp._halvings(settings("esd-u", batch=12, num_workers=4)) == [0]          # 6 would not split over 4
    assert mp._halvings(settings("uce", batch=16)) == [0]


def test_bf16_is_proposed_only_for_methods_that_have_mixed_precision():
    s = settings("esd-u", gradient_checkpointing=True, strategy=ZERO["zero3-offload"], batch=1)
    bf16 = mp.estimate(INV, dataclasses.replace(s, precision="bf16"), 80)
    p = mp.plan(INV, [s], bf16.total / GIB / mp.USABLE + 0.01)
    assert p.overrides == ["hparams.esd-u.mixed_precision=bf16"]
    p = mp.plan(INV, [dataclasses.replace(s, tunable_precision=False)], bf16.total / GIB / mp.USABLE + 0.01)
    assert not p.fits


def test_the_configured_strategy_is_never_made_less_partitioned():
    s = settings("esd-u", num_workers=2, strategy=ZERO["zero3"])
    p = mp.plan(INV, [s], 500)
    assert p.unchanged
    for ckpt, st, _ in mp._resource_variants(s):
        assert st.stage == 3


def test_resources_are_shared_and_hparams_are_per_method():
    small, big = settings("esd-x", batch=2), settings("esd-u", batch=4, tunable_precision=False)
    need = mp.estimate(INV, dataclasses.replace(big, gradient_checkpointing=True), 80)
    p = mp.plan(INV, [small, big], need.total / GIB / mp.USABLE + 0.01)
    assert p.fits and p.overrides == ["resources.gradient_checkpointing=true"]
    assert all(m.chosen.settings.gradient_checkpointing for m in p.steps)


def test_nothing_fits_names_the_largest_term():
    p = mp.plan(INV, [settings("uce"), settings("esd-u")], 4)
    assert not p.fits and p.overrides == []
    reason = {m.method: m.reason for m in p.steps}
    assert "largest term: weights: unet" in reason["uce"]
    assert "with every reduction" in reason["esd-u"] and "largest term: weights: frozen unet copy" in reason["esd-u"]
    text = mp.format_plan(p)
    assert "no settings fit 4 GiB GPUs" in text and "largest term" in text


def test_the_table_and_the_json():
    s = settings("esd-u", batch=16)
    p = mp.plan(INV, [settings("uce"), s], 24)
    text = mp.format_plan(p)
    for word in ("weights: unet", "weights: frozen unet copy", "optimizer", "activations", "total", "verdict",
                 "configured", "planned", "add these overrides"):
        assert word in text, word
    doc = json.loads(json.dumps(p.to_dict()))
    assert doc["fits"] and doc["overrides"] == p.overrides
    assert doc["steps"][1]["configured"]["terms_gib"]["weights: unet"] == pytest.approx(4e9 / GIB, abs=1e-4)


def test_a_method_that_finds_nothing_to_train_is_noted():
    inv = dataclasses.replace(INV, trainable={**INV.trainable, "esd-x": 0})
    assert any("esd-x finds nothing to train" in n for n in mp.plan(inv, [settings("esd-x")], 80).notes)


# ---- real scale: the published architectures (configs/models/reference_inventories.json) ---------

REFERENCE = {k: ModelInventory.from_dict(v) for k, v in json.loads(REFERENCE_INVENTORIES.read_text()).items()}
PUBLISHED = json.loads(REFERENCE_MODELS.read_text())["models"]


def test_reference_inventories_carry_the_published_parameter_counts():
    for key, model in PUBLISHED.items():
        assert REFERENCE[key].components == {n: c["params"] for n, c in model["components"].items()}
    assert REFERENCE["sd15"].components["unet"] == 859_520_964
    assert REFERENCE["flux-dev"].components["transformer"] == 11_901_408_320


def test_full_esd_u_on_flux_in_fp32_needs_offload_on_one_80gb_gpu():
    s = mp.StepSettings("esd-u", batch=16, num_workers=1)
    p = mp.plan(REFERENCE["flux-dev"], [s], 80)
    step = p.steps[0]
    assert not step.configured.fits
    assert not any(e.fits for e in step.alternatives.values())          # no single change is enough
    assert p.fits and step.chosen.settings.strategy.offload_optimizer     # only with optimizer offload
    no_offload = [st for st in (mp.DDP, *mp.SHIPPED) if not st.offload_optimizer]
    for st in no_offload:   # even with every other reduction
        most = dataclasses.replace(mp._most_reduced(s), strategy=st)
        assert not mp.estimate(REFERENCE["flux-dev"], most, 80).fits


def test_full_esd_u_on_flux_over_8_gpus_needs_zero3_or_offload():
    s = mp.StepSettings("esd-u", batch=16, num_workers=8)
    p = mp.plan(REFERENCE["flux-dev"], [s], 80)
    st = p.steps[0].chosen.settings.strategy
    assert p.fits and (st.stage == 3 or st.offload_optimizer)


def test_lora_on_sd15_fits_24gb():
    s = mp.StepSettings("lora", batch=4, rank=8, precision="bf16")
    e = mp.estimate(REFERENCE["sd15"], s, 24)
    assert e.fits and e.total < 12 * GIB
    # At the method's defaults (batch 16, fp32) it needs a change, and one without ZeRO is found.
    p = mp.plan(REFERENCE["sd15"], [mp.StepSettings("lora", batch=16, rank=8)], 24)
    assert p.fits and p.steps[0].chosen.settings.strategy == mp.DDP


def test_uce_fits_everywhere_it_should():
    for key, gb in (("sd15", 24), ("sdxl", 24), ("sd3-medium", 80), ("flux-dev", 80)):
        assert mp.estimate(REFERENCE[key], mp.StepSettings("uce"), gb).fits, key
    # Flux's weights alone in fp32 (17 GB for T5-XXL, 44 for the transformer) exceed a 48 GB GPU.
    assert not mp.plan(REFERENCE["flux-dev"], [mp.StepSettings("uce")], 48).fits
