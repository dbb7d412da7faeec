"""What a gate measures besides the gate's own inputs: the campaign views of issue 13.

    views = GateViews(request, candidate, pipe, validator, log)
    views.draw_base(pipe)                         # base pipeline: drift, capability and maps (cached)
    ...stack parents + candidate, validate...
    report = views.finish(pipe, report, out_dir)  # + drift and capability; attention.png

Drift (jobs/deltas/drift.py) is read from the delta files and the base weights; capability
(jobs/validation/capability.py, on the judge's provider's bench: only the toy world has one) and the
attention maps (jobs/validation/attention_maps.py, on the provider's scene or a generic one) draw a few
images per gate. None of them is a gate input and none fails the gate: a failure is a log line and
the field stays empty.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from jobs.deltas.drift import parameter_drift
from jobs.validation import providers
from jobs.validation.attention_maps import AttentionProbe, generic_prompt
from jobs.validation.capability import CapabilityProbe
from erasecore.concepts import step_members
from erasecore.contracts import DeltaRef, GateReport, StepRequest


class GateViews:
    def __init__(self, request: StepRequest, candidate: DeltaRef, pipe, validator, log=print):
        self.request, self.validator, self.log = request, validator, log
        self.refs = tuple(request.parents) + (candidate,)
        provider = providers.get(request.validation.judge)   # the judge's own views, if it has them
        bench = provider.capability_bench()
        self.capability = CapabilityProbe(bench, validator) if bench is not None else None
        first = step_members(request.concept)[0]   # a group step's maps: its first member's
        prompt = provider.attention_prompt(first) or generic_prompt(first)
        self.attention = AttentionProbe(pipe, prompt, validator.spec, log)
        self.drift: dict = {}
        self.seconds = 0.0

    def draw_base(self, pipe) -> None:
        """On the base pipeline, before any delta is stacked."""
        t0 = time.time()
        # Drift needs the base weights, which are only here; the candidate's file is written already.
        self.drift = self._guard("drift", lambda: parameter_drift(pipe, self.refs)) or {}
        if self.capability is not None:
            self._guard("capability", lambda: self.capability.draw_base(pipe, self.request.model))
        self._guard("attention maps", lambda: self.attention.draw_base(pipe, self.validator.cache, self.request.model))
        self.seconds += time.time() - t0

    def finish(self, pipe, report: GateReport, out_dir) -> GateReport:
        """The candidate's views: attention.png in out_dir, and the report with drift and capability."""
        t0 = time.time()
        capability = None
        if self.capability is not None and self.capability.base is not None:
            erased = tuple(self.request.erased_before) + step_members(self.request.concept)
            capability = self._guard("capability", lambda: self.capability.measure(pipe, erased))
        self._guard("attention maps", lambda: self.attention.finish(pipe, Path(out_dir)))
        self.seconds += time.time() - t0
        self.log(f"views: drift {len(self.drift)} groups, capability "
                 f"{'%.2f' % capability.score if capability else 'not measured'}, {self.seconds:.1f}s")
        return replace(report, param_drift=self.drift, capability=capability)

    def _guard(self, what: str, fn):
        try:
            return fn()
        except Exception as e:   # noqa: BLE001 - a view is a picture or a curve, not a gate input
            self.log(f"views: {what} failed ({type(e).__name__}: {e})")
            return None
