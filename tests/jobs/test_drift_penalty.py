"""The drift regulariser toward the base weights (drift_l2 / drift_l1, jobs/training/drift_penalty.py).

Off (0, the default) it is no op at all: the same delta bit for bit, even with parents it would have to read.
On, it pulls toward the BASE, before any committed delta, not toward the parent model this step starts from:
in a two-step sequence it shrinks the accumulated change, and B's delta partly undoes A's.
"""
from __future__ import annotations

import pytest
import torch

from erasecore import catalog
from erasecore.contracts import DeltaRef
from erasecore.errors import MethodConfigError
from jobs.deltas import delta as deltas
from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.targets import denoiser
from jobs.training import drift_penalty
from jobs.training.concept_prompts import ConceptPrompts, text_concept_prompts
from tests.fixtures.tiny_pipelines import tiny_sd_pipeline

FAST = {"steps": 4, "batch": 2}
DRIFTING = ("esd-x", "esd-u", "fmn", "ca", "lora", "spm")


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return tiny_sd_pipeline(0)


def prompts(concept: str) -> ConceptPrompts:
    """Two of each: fewer images to generate, a faster test."""
    full = text_concept_prompts(concept, ("heart",))
    return ConceptPrompts(full.words, full.target[:2], full.anchor[:2], full.preserve[:2])


def erased(pipe, method: str, concept: str, hp: dict, parents=()) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)   # what jobs.step.run_erase does before a method runs
    inputs = EraseInputs(concept, prompts(concept), {**FAST, **hp}, seed=0,
                         log=lambda *a: None, parents=tuple(parents))
    return registry.erase(method, pipe, inputs).tensors


def committed(pipe, tensors, tmp_path, concept: str) -> DeltaRef:
    """Save `tensors` as a dense delta and stack it on `pipe`, as a commit and the next step's set-up do."""
    ref = deltas.save_delta(tensors, deltas.DeltaMeta("dense", "esd-x", concept), tmp_path / f"{concept}.safetensors")
    deltas.stack(pipe, [ref])
    return ref


def norm(change: dict[str, torch.Tensor]) -> float:
    return sum(float(v.double().pow(2).sum()) for v in change.values()) ** 0.5


def summed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


@pytest.mark.parametrize("method", ["esd-x", "fmn", "lora"])
def test_weight_zero_is_bit_identical_and_reads_no_parent(pipe, method, tmp_path):
    """One method per place the penalty is wired in: the guided loss, FMN's, the LoRA scaffold."""
    plain = erased(pipe, method, "star", {"steps": 2})
    # a parent that does not exist: off, the penalty must not even look for it
    missing = DeltaRef(str(tmp_path / "missing.safetensors"), "0" * 64)
    off = erased(pipe, method, "star", {"steps": 2, "drift_l2": 0.0, "drift_l1": 0.0}, parents=[missing])
    assert plain.keys() == off.keys() and all(torch.equal(plain[k], off[k]) for k in plain)
    on = erased(pipe, method, "star", {"steps": 2, "drift_l2": 1e3})   # wired in: on, the delta moves
    assert not all(torch.equal(plain[k], on[k]) for k in plain)


def test_weight_zero_returns_the_methods_own_closure():
    def loss_fn(step, model, shard):
        return torch.zeros(())

    inputs = EraseInputs("star", text_concept_prompts("star"), {"drift_l2": 0.0, "drift_l1": 0.0})
    assert drift_penalty.with_drift(loss_fn, {}, "unet", inputs) is loss_fn
    assert drift_penalty.with_lora_drift(loss_fn, {}, "unet", 1.0, inputs) is loss_fn


def test_the_penalty_pulls_toward_the_base_not_the_parent(pipe, tmp_path):
    comp, net = denoiser(pipe)
    change_a = erased(pipe, "esd-x", "star", {})
    ref = committed(pipe, change_a, tmp_path, "star")
    try:
        params = {n: p.requires_grad_(True) for n, p in net.named_parameters() if f"{comp}.{n}" in change_a}
        inputs = EraseInputs("square", text_concept_prompts("square"), {"drift_l2": 3.0, "drift_l1": 0.5},
                             parents=(ref,))
        loss = drift_penalty.with_drift(lambda *a: torch.zeros(()), params, comp, inputs)(0, net, None)
        grads = torch.autograd.grad(loss, list(params.values()))
    finally:
        net.requires_grad_(False)
        deltas.remove_delta(pipe, change_a, deltas.DeltaMeta("dense", "esd-x", "star"))
    # At the parent model the drift from base is A's change: the gradient is that of the penalty at A's change,
    # (2 l2 d + l1 sign d) / n; a pull toward the parent would be 0 here.
    n = sum(p.numel() for p in params.values())
    for (name, _), g in zip(params.items(), grads):
        d = change_a[f"{comp}.{name}"]
        torch.testing.assert_close(g, (2 * 3.0 * d + 0.5 * d.sign()) / n, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(loss, sum(3.0 * d.pow(2).sum() + 0.5 * d.abs().sum() for d in change_a.values()) / n)


def test_a_strong_pull_keeps_the_accumulated_change_of_two_steps_smaller(pipe, tmp_path):
    change_a = erased(pipe, "esd-x", "star", {})
    ref = committed(pipe, change_a, tmp_path, "star")
    try:
        free = erased(pipe, "esd-x", "square", {}, parents=[ref])
        pulled = erased(pipe, "esd-x", "square", {"drift_l2": 1e5}, parents=[ref])
    finally:
        deltas.remove_delta(pipe, change_a, deltas.DeltaMeta("dense", "esd-x", "star"))
    # measured: 0.09 pulled, 0.41 free; a pull toward the parent model instead keeps 0.30 and undoes nothing of A
    assert norm(summed(change_a, pulled)) < 0.5 * norm(summed(change_a, free))
    shared = change_a.keys() & pulled.keys()
    assert shared

    def along_a(change):   # the step's change projected on A's: -|A| undoes A
        return sum(float((change[k].double() * change_a[k].double()).sum()) for k in shared) / norm(change_a)

    assert along_a(pulled) < -0.5 * norm(change_a) < along_a(free)   # measured: -1.2 |A| pulled, 0.00 |A| free


def test_the_lora_penalty_is_on_the_wrapped_weights_accumulated_change(tmp_path):
    """lora/spm: theta - theta_base = the parents' change of the wrapped weight + scale * B @ A."""
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(2, 5)), torch.nn.Parameter(torch.randn(3, 2))
    params = {"blocks.0.to_q.lora_A.erase.weight": a, "blocks.0.to_q.lora_B.erase.weight": b}
    parent = torch.randn(3, 5)
    ref = deltas.save_delta({"unet.blocks.0.to_q.weight": parent}, deltas.DeltaMeta("dense", "esd-x", "star"),
                            tmp_path / "parent.safetensors")
    inputs = EraseInputs("square", text_concept_prompts("square"), {"drift_l2": 2.0, "drift_l1": 0.0},
                         parents=(ref,))
    loss = drift_penalty.with_lora_drift(lambda *x: torch.zeros(()), params, "unet", 0.5, inputs)(0, None, None)
    torch.testing.assert_close(loss, 2.0 * (parent + 0.5 * b.detach() @ a.detach()).pow(2).mean())


@pytest.mark.parametrize("method", DRIFTING)
@pytest.mark.parametrize("key", ["drift_l2", "drift_l1"])
def test_a_negative_weight_is_refused_in_one_line(method, key):
    with pytest.raises(MethodConfigError) as e:
        catalog.get(method).resolve({key: -0.1})
    assert str(e.value) == f"hparams.{method}.{key} must be >= 0, got -0.1"


def test_every_dense_or_lora_fine_tune_has_the_weights_off_by_default():
    for method in DRIFTING:
        assert {k: catalog.get(method).defaults()[k] for k in ("drift_l2", "drift_l1")} == {"drift_l2": 0.0,
                                                                                            "drift_l1": 0.0}
