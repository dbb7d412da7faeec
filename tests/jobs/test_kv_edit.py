"""The K/V closed forms UCE and RECE share: RECE's regenerating embedding is the minimiser it claims to be,
and RECE's rounds make the edit resist it."""
import pytest
import torch

from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.training import kv_edit
from jobs.training.concept_prompts import text_concept_prompts
from tests.fixtures.tiny_pipelines import tiny_sd_pipeline


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return tiny_sd_pipeline(0)


def _random(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_the_regenerating_map_minimises_the_ridge_objective():
    original = [_random((8, 6), i) for i in range(3)]
    edited = [w + 0.3 * _random((8, 6), 10 + i) for i, w in enumerate(original)]
    c, reg = _random((5, 6), 20), 1e-2
    adv = c @ kv_edit.regenerating_map(edited, original, reg).T

    def objective(x):
        return sum(((x @ n.T - c @ o.T) ** 2).sum() for n, o in zip(edited, original)) + reg * (x ** 2).sum()

    x = adv.clone().requires_grad_(True)
    objective(x).backward()
    assert x.grad.abs().max() < 1e-9                       # stationary, and the objective is convex
    assert objective(adv) < objective(adv + 1e-3 * _random((5, 6), 30))


def test_an_unedited_model_regenerates_the_concept_from_the_concept_itself():
    original = [_random((8, 6), i) for i in range(2)]
    m = kv_edit.regenerating_map(original, original, 1e-9)
    assert torch.allclose(m, torch.eye(6, dtype=torch.float64), atol=1e-6)
    c = _random((4, 6), 5)
    assert kv_edit.regeneration_error(original, original, c, c) < 1e-12


def test_rece_rounds_make_the_edit_resist_its_own_attack(pipe):
    """After UCE's edit alone an embedding still regenerates the concept's keys/values closely; each
    round of RECE erases it, so the embedding derived from the final edit regenerates it worse."""
    prompts = text_concept_prompts("star", preserve=("heart",))
    runs = {r: registry.erase("rece", pipe, EraseInputs("star", prompts, {"rounds": r}, log=lambda *a: None))
            for r in (0, 2)}
    assert runs[0].stats["erase_vectors"] < runs[2].stats["erase_vectors"]
    assert runs[2].stats["regeneration_error_0"] == pytest.approx(runs[0].stats["regeneration_error_0"])
    assert runs[2].stats["regeneration_error_2"] > 1.5 * runs[0].stats["regeneration_error_0"], runs[2].stats


def test_rece_with_no_rounds_is_uce_with_the_same_settings(pipe):
    prompts = text_concept_prompts("star", preserve=("heart",))
    hp = {"lam": 0.5, "erase_scale": 1.0, "preserve_scale": 1.0}
    rece = registry.erase("rece", pipe, EraseInputs("star", prompts, {**hp, "rounds": 0}, log=lambda *a: None))
    uce = registry.erase("uce", pipe, EraseInputs("star", prompts, hp, log=lambda *a: None))
    assert rece.tensors.keys() == uce.tensors.keys()
    assert all(torch.equal(rece.tensors[k], uce.tensors[k]) for k in uce.tensors)


def test_mace_fusion_carries_the_lora_on_its_rows_and_keeps_the_rest():
    w = _random((8, 6), 0)
    lora = 0.2 * _random((8, 1), 1) @ _random((1, 6), 2)
    c = torch.cat([_random((3, 4), 3), torch.zeros(3, 2, dtype=torch.float64)], 1)   # rows span the first 4 axes
    fused = kv_edit.fit(w, c, c @ (w + lora).T, lam=1e-6)
    assert torch.allclose(c @ fused.T, c @ (w + lora).T, atol=1e-5)   # on the rows: CFR + LoRA
    off = torch.zeros(1, 6, dtype=torch.float64)
    off[0, 5] = 1.0
    assert torch.allclose(off @ fused.T, off @ w.T)                    # orthogonal to them: unchanged


def test_concept_masks_follow_where_the_concept_tokens_are_attended(pipe):
    from jobs.models import attention_probe
    from jobs.models.adapters import adapter
    from jobs.models.targets import cross_attention_modules
    from jobs.models.text_embeddings import concept_positions

    prompts = ["a red star", "a blue star"]
    fam, modules, store = adapter(pipe), cross_attention_modules(pipe.unet), []
    tokens = concept_positions(pipe, prompts, ("star",))
    previous = attention_probe.install(modules, store)
    try:
        x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        fam.predict(pipe.unet, x, torch.tensor([500, 500]), fam.encode(prompts))
    finally:
        attention_probe.restore(modules, previous)
    maps = attention_probe.concept_maps(store, tokens, 8)
    masks = attention_probe.threshold_masks(maps, 0.7)
    assert maps.shape == masks.shape == (2, 8, 8) and 0.2 <= masks.float().mean() <= 0.35
    for m, k in zip(maps, masks):
        assert m[k].min() >= m[~k].max()                               # each mask is the top of its map
    loss = attention_probe.masked_attention(store, tokens, masks)
    assert loss > 0 and attention_probe.masked_attention(store, tokens, torch.zeros_like(masks)) == 0


def test_the_null_space_edit_leaves_every_protected_direction_as_it_maps():
    w, c, g = _random((8, 6), 40), _random((5, 6), 41), _random((5, 6), 42)
    keep = _random((3, 6), 43)                                  # rank 3: energy 1 protects all of it
    basis = kv_edit.protected_basis(keep, 1.0)
    assert basis.shape == (6, 3)
    new = kv_edit.null_space_form(w, c, g, keep, basis, lam=0.5, s_e=1.0, s_p=1.0)
    assert ((new - w) @ keep.T).abs().max() < 1e-10             # the preserved rows map exactly as before
    assert ((new - w) @ c.T).abs().max() > 1e-2                 # while the erase rows moved


def test_with_nothing_protected_the_null_space_edit_is_uce():
    w, c, g, keep = _random((8, 6), 50), _random((5, 6), 51), _random((5, 6), 52), _random((4, 6), 53)
    none = kv_edit.protected_basis(keep, 0.0)
    assert none.shape == (6, 0)
    ours = kv_edit.null_space_form(w, c, g, keep, none, lam=0.5, s_e=2.0, s_p=0.7)
    uce = kv_edit.closed_form(w, c, g, keep, lam=0.5, s_e=2.0, s_p=0.7)
    assert torch.allclose(ours, uce, atol=1e-12)


def test_the_protected_basis_is_the_fewest_directions_holding_the_energy():
    scales = torch.tensor([10.0, 3.0, 1.0, 0.1], dtype=torch.float64)
    keep = torch.diag(scales)                                    # energy 100, 9, 1, 0.01 on the axes
    assert kv_edit.protected_basis(keep, 0.9).shape[1] == 1      # 100/110.01 >= 0.9
    assert kv_edit.protected_basis(keep, 0.95).shape[1] == 2
    assert kv_edit.protected_basis(keep, 0.99995).shape[1] == 4


def _moved(pipe, out, rows: torch.Tensor) -> float:
    """How far an edit moves what `rows` give through the edited projections, relative to what they gave."""
    weights = kv_edit.kv_weights(pipe, ["to_k", "to_v"])
    num = sum(float((rows.double() @ out.tensors[k].double().T).norm() ** 2) for k in weights)
    den = sum(float((rows.double() @ w.double().T).norm() ** 2) for w in weights.values())
    return (num / den) ** 0.5


def test_speed_keeps_what_the_other_object_of_a_composition_reads(pipe):
    """The words after the concept in "<target> and <preserved>" are what the other object reads; UCE moves
    them with the concept (the erased object's attributes then land on the other one), SPEED's context keeps them."""
    prompts = text_concept_prompts("star", preserve=("heart", "moon"))
    ctx = kv_edit.context_rows(pipe, prompts, 12)
    assert len(ctx) >= 12 * 4                     # "and a photo of a heart": every word after "star"
    quiet = {"log": lambda *a: None}
    uce = registry.erase("uce", pipe, EraseInputs("star", prompts, {}, **quiet))
    plain = registry.erase("speed", pipe, EraseInputs("star", prompts, {"context": 0, "protect_energy": 0.0}, **quiet))
    kept = registry.erase("speed", pipe, EraseInputs("star", prompts, {"context": 12}, **quiet))
    assert all(torch.allclose(plain.tensors[k], uce.tensors[k], atol=1e-6) for k in uce.tensors)   # nothing kept: UCE
    assert _moved(pipe, kept, ctx) < 0.5 * _moved(pipe, uce, ctx), (_moved(pipe, kept, ctx), _moved(pipe, uce, ctx))
    assert kept.stats["protected_dims"] > 0
    exact = registry.erase("speed", pipe, EraseInputs("star", prompts, {"context": 12, "protect": "context",
                                                                        "protect_energy": 1.0}, **quiet))
    assert _moved(pipe, exact, ctx) < 1e-5 < _moved(pipe, exact, kv_edit.concept_rows(pipe, prompts).erase)


def test_a_guide_word_takes_the_concepts_place_token_for_token(pipe):
    prompts = text_concept_prompts("star")
    anchors, tokens = kv_edit.guided_anchors(pipe, prompts, "moon")
    assert anchors[0] == prompts.target[0].replace("star", "moon") and (tokens >= 1).all()
    assert kv_edit.guided_anchors(pipe, prompts, "") == (prompts.anchor, None)


def test_the_protected_share_must_be_a_share():
    from erasecore import catalog
    from erasecore.errors import MethodConfigError

    with pytest.raises(MethodConfigError, match=r"hparams.speed.protect_energy must be <= 1, got 1.5"):
        catalog.get("speed").resolve({"protect_energy": 1.5})
