"""The measure phase's campaign views on the real toy world: drift of real UCE deltas per layer group,
the capability bench, and the base-vs-erased attention maps (jobs/validation/gate_views.py)."""
from __future__ import annotations

import json

import pytest
import torch

from jobs.deltas import delta as deltas
from jobs.deltas.drift import layer_groups, parameter_drift
from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from jobs.training import distributed
from jobs.training.concept_prompts import concept_prompts
from jobs.validation.attention_maps import ATTENTION_JSON, ATTENTION_PNG, no_maps_reason
from jobs.validation.gate_views import GateViews
from jobs.validation.validator import for_request
from erasecore.contracts import Estimate, GateReport, ParallelSpec, StepRequest, ValidationSpec
from tests.fixtures.tiny_pipelines import tiny_sd3_pipeline

torch.set_num_threads(1)
KV = ("attn2.to_k.weight", "attn2.to_v.weight")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy pipeline and two real UCE deltas: star, then square on top of it."""
    out = tmp_path_factory.mktemp("deltas")
    pipe = load_pipeline("toyworld", device="cpu")
    refs = []
    for concept in ("star", "square"):
        deltas.stack(pipe, refs)
        inputs = EraseInputs(concept, concept_prompts(concept, (), "toyworld"), {}, 0, lambda *_: None,
                             distributed.Parallel(ParallelSpec(), None), None)
        output = registry.erase("uce", pipe, inputs)
        meta = deltas.DeltaMeta(kind=output.kind, method="uce", concept=concept)
        for ref in reversed(refs):
            deltas.remove_delta(pipe, *deltas.load_delta(ref.path))
        refs.append(deltas.save_delta(output.tensors, meta, out / f"{concept}.safetensors"))
    return pipe, refs


def _norm(tensors) -> float:
    return sum(float(t.double().pow(2).sum()) for t in tensors) ** 0.5


def test_groups_follow_where_the_prompt_enters(toy):
    pipe, _ = toy
    groups = layer_groups(pipe)
    kv = [k for k in groups if k.endswith(KV)]
    assert kv and all(groups[k] == "text_kv" for k in kv)
    assert {groups[k] for k in groups if ".attn1." in k or k.endswith("attn2.to_q.weight")} == {"attention"}
    assert {groups[k] for k in groups if ".ff." in k} == {"feed_forward"}
    assert {groups[k] for k in groups if k.startswith("text_encoder.")} == {"text_encoder"}
    assert groups["unet.conv_in.weight"] == "other"


def test_drift_is_the_norm_of_what_the_stacked_deltas_moved_relative_to_the_base(toy):
    pipe, refs = toy
    base = {n: p.detach().clone() for n, p in pipe.unet.named_parameters() if n.endswith(KV)}
    one, both = parameter_drift(pipe, refs[:1]), parameter_drift(pipe, refs)
    deltas.stack(pipe, refs)
    try:
        moved = {n: p.detach() - base[n] for n, p in pipe.unet.named_parameters() if n in base}
    finally:
        for ref in reversed(refs):
            deltas.remove_delta(pipe, *deltas.load_delta(ref.path))
    assert both["text_kv"].norm == pytest.approx(_norm(moved.values()), rel=1e-4)
    assert both["text_kv"].relative == pytest.approx(both["text_kv"].norm / _norm(base.values()), rel=1e-6)
    assert 0 < one["text_kv"].norm < both["text_kv"].norm            # UCE edits keys/values only, and they add up
    assert {g: d.norm for g, d in both.items() if g != "text_kv"} == \
        {"attention": 0.0, "feed_forward": 0.0, "other": 0.0, "text_encoder": 0.0}


def test_the_views_draw_maps_and_measure_capability_on_the_toy_world(toy, tmp_path):
    pipe, refs = toy
    request = StepRequest(campaign="toy", step=2, attempt=1, concept="square", method="uce", hparams={},
                          model="toyworld", parents=(refs[0],), out_dir=str(tmp_path / "attempt"),
                          erased_before=("star",), validation=ValidationSpec(judge="toyworld"),
                          cache_dir=str(tmp_path / "cache"))
    validator, _ = for_request(request, "toyworld", log=lambda *_: None)
    views = GateViews(request, refs[1], pipe, validator, log=lambda *_: None)
    views.draw_base(pipe)
    deltas.stack(pipe, refs)
    try:
        e = Estimate(0.0, 0.0, 0.0, 0)
        empty = GateReport("square", e, e, 0.0, {}, e, {}, e, 0.0, 0.0, {}, 0, False, 0.0)
        report = views.finish(pipe, empty, tmp_path / "attempt")
    finally:
        for ref in reversed(refs):
            deltas.remove_delta(pipe, *deltas.load_delta(ref.path))
    assert report.param_drift["text_kv"].norm == pytest.approx(parameter_drift(pipe, refs)["text_kv"].norm)
    cap = report.capability
    assert cap.bench == "toy-objects-v1" and cap.images == 30 and set(cap.erased) >= {"star", "square"}
    assert cap.base["square"] == 1.0 and cap.drawn["square"] < cap.base["square"]   # erased: drawn less
    assert cap.score >= 0.8                                                          # the rest still drawn
    meta = json.loads((tmp_path / "attempt" / ATTENTION_JSON).read_text())
    assert (meta["skipped"], meta["tokens"]) == ("", ["square", "red"])
    assert (tmp_path / "attempt" / ATTENTION_PNG).read_bytes().startswith(b"\x89PNG")


def test_a_family_without_cross_attention_says_why_it_has_no_maps(toy):
    assert no_maps_reason(toy[0]) == ""
    assert "has no cross-attention" in no_maps_reason(tiny_sd3_pipeline())
