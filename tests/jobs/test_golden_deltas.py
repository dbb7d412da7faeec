"""Golden numbers of each method's delta on the toy pipeline at seed 0: a refactor that changes the math shows.

Each method runs briefly (4 target / anchor / preserve prompts of `square`; fine-tunes 3 optimizer steps at
batch 4, everything else the catalog's defaults) and its delta is reduced to a few numbers: how many tensors
and which (a hash of their sorted names: exact), the Frobenius norm of the whole delta, and the largest
tensor's norm. They are compared with tests/jobs/golden_deltas.json.

The tolerance comes from a noise floor measured here, not from one machine. The recorded numbers are those
of a single-threaded run; the test runs the method twice, with torch.set_num_threads(1) and (2): the same
math with the BLAS and reductions splitting their sums another way, which is the kind of rounding another
CPU gives. The floor is the largest relative difference of the two runs' numbers, and a number passes when

    |got - golden| <= max(FACTOR x floor, GUARD) x |golden|       FACTOR = 10

GUARD is 1e-6 for the closed forms (UCE, RECE, SPEED: solved in float64 from float32 text states) and 1e-4 for
everything with an optimizer (ESD, FMN, CA, LoRA, SPM, and MACE, whose rank-1 LoRA is trained between its
closed-form refinement and fusion): Adam moves an entry whose gradient sits near zero by about lr whichever
sign rounding gave it, so a fine-tune amplifies float32 rounding (eps 1.2e-7) by far more than its step
count. Floors measured on the 2-core dev machine: 0 for UCE, RECE and SPEED; esd-x 1.2e-7, esd-u 4.8e-7, fmn 1.8e-8,
ca 1.2e-6, lora 3.4e-9, spm 4.5e-9, mace 1.0e-10: every bound is its GUARD, far under what a changed
hyperparameter moves (esd-x's lr 5e-4 -> 6e-4 moves its norm by 19%).

Re-record after an intended change of a method's math or defaults:

    GOLDEN_RECORD=1 .venv/bin/pytest tests/jobs/test_golden_deltas.py
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from jobs.toyworld.concept_prompts import toy_concept_prompts
from jobs.toyworld.world import load_world
from jobs.training.concept_prompts import ConceptPrompts
from erasecore import catalog

GOLDEN = Path(__file__).with_name("golden_deltas.json")
RECORD = os.environ.get("GOLDEN_RECORD") == "1"
CONCEPT, PROMPTS, SEED = "square", 4, 0
_FT = {"steps": 3, "batch": 4}
HPARAMS = {"uce": {}, "rece": {}, "esd-x": _FT, "esd-u": _FT, "fmn": _FT, "ca": _FT, "lora": _FT, "spm": _FT,
           "mace": _FT, "speed": {}}
FACTOR = 10.0
GUARD = {"closed_form": 1e-6, "optimizer": 1e-4}
FLOATS = ("norm", "max_tensor_norm")


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("toyworld")


@pytest.fixture(scope="module")
def prompts():
    full = toy_concept_prompts(load_world(), CONCEPT)
    return ConceptPrompts(full.words, full.target[:PROMPTS], full.anchor[:PROMPTS], full.preserve[:PROMPTS])


def numbers(pipe, prompts, method: str, threads: int) -> dict:
    """The delta's numbers for `method` run with `threads` torch threads, from the seeded state."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(SEED)   # what jobs.step.run_erase does before a method runs
        out = registry.erase(method, pipe, EraseInputs(CONCEPT, prompts, dict(HPARAMS[method]), seed=SEED,
                                                       log=lambda *a: None))
    finally:
        torch.set_num_threads(saved)
    norms = {k: float(v.double().norm()) for k, v in out.tensors.items()}
    return {"kind": out.kind, "tensors": len(norms),
            "keys_sha256": hashlib.sha256("\n".join(sorted(norms)).encode()).hexdigest()[:16],
            "norm": sum(n * n for n in norms.values()) ** 0.5, "max_tensor_norm": max(norms.values())}


def _guard(method: str) -> float:
    return GUARD["closed_form" if method in ("uce", "rece", "speed") else "optimizer"]


def _record(method: str, got: dict) -> None:
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    golden[method] = got
    ordered = {m: golden[m] for m in catalog.METHOD_NAMES if m in golden}
    GOLDEN.write_text(json.dumps(ordered, indent=1) + "\n")


def test_every_method_has_golden_numbers():
    assert set(HPARAMS) == set(catalog.METHOD_NAMES)
    if not RECORD:
        assert set(json.loads(GOLDEN.read_text())) == set(catalog.METHOD_NAMES), f"re-record {GOLDEN.name}"


@pytest.mark.parametrize("method", list(HPARAMS))
def test_the_delta_matches_its_golden_numbers(pipe, prompts, method):
    got = numbers(pipe, prompts, method, threads=1)
    if RECORD:
        _record(method, got)
        return
    other = numbers(pipe, prompts, method, threads=2)
    floor = max(abs(got[k] - other[k]) / abs(got[k]) for k in FLOATS)
    bound = max(FACTOR * floor, _guard(method))
    print(f"{method}: floor {floor:.3g}, bound {bound:.3g}")   # shown with -s
    golden = json.loads(GOLDEN.read_text())[method]
    for key in ("kind", "tensors", "keys_sha256"):
        assert got[key] == golden[key], (method, key, got[key], golden[key])
    for key in FLOATS:
        rel = abs(got[key] - golden[key]) / abs(golden[key])
        assert rel <= bound, (f"{method}: {key} {got[key]!r} is {rel:.3g} from the golden {golden[key]!r} "
                              f"(bound {bound:.3g}: floor {floor:.3g} from 1 vs 2 threads); an intended change "
                              f"re-records with GOLDEN_RECORD=1")
