"""The toy campaign's deltas byte for byte: under the lock (constraints.txt), the requests `make run` builds for
star and square (attempt 1, UCE, every hyperparameter resolved into request.json and the delta's header) write
deltas with the sha256 recorded here and in docs/campaigns.md.

UCE is a closed form solved in float64 (its noise floor across thread counts is 0: tests/jobs/test_golden_deltas.py),
so the bytes are a function of the toy model, the code and the locked libraries. A change to any of them that
moves a bit shows here; re-record after an intended one (and update docs/campaigns.md and docs/watching.md).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from erasecore.contracts import DeltaRef
from jobs.step import run_erase
from orchestrator.campaign import RunAttempt, step_request
from orchestrator.preflight import preflight
from orchestrator.spec import load_spec

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RECORDED = (("star", "88b2ed572347e9ab77fd07e01c37da349647fe31f9f8594a5c84d1df5ecdea96"),
            ("square", "a9d57533fa49e743ee0ff08eedd92a34b61945c39bbc29b6a6b3a6d24eac4b2e"))


def test_the_toy_campaigns_committed_deltas_have_their_recorded_sha256(tmp_path):
    spec = load_spec(str(REPO / "configs" / "campaigns" / "toy.yaml"),
                     [f"storage_path={tmp_path}", "tracking.mode=disabled"])
    settled = preflight(spec, run=False)
    erased, parents, got = (), (), []
    for step, (concept, _) in enumerate(RECORDED, 1):
        request = step_request(RunAttempt(step, concept, 1, spec.method, {}, erased, parents), settled)
        ref = run_erase(request, log=lambda *a: None)
        got.append((concept, ref.sha256))
        erased += (concept,)
        parents += (DeltaRef(f"steps/{step}-{concept}/attempt-1/delta.safetensors", ref.sha256),)
    assert tuple(got) == RECORDED
