"""Which judge answers a campaign's gates. Pure; preflight settles it once per campaign.

"auto" is the toy world's evaluator for the toy model and none for any other model; "toyworld"
also for another pipeline that draws the toy world (e.g. an SDXL trained on it).
"""
from __future__ import annotations

from orchestrator.core.models import TOY

JUDGES = ("auto", "toyworld")


def judge_for(model: str, judge: str) -> str | None:
    """The judge a campaign's gates use ("toyworld"), or None when this build has none for the model."""
    if judge == "auto":
        return "toyworld" if model == TOY else None
    return judge
