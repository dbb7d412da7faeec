"""Which judge answers a campaign's gates. Pure; preflight settles it once per campaign.

"auto" is the toy world's evaluator for the toy model, else the judge the campaign's concept set
names; "toyworld" also for another pipeline that draws the toy world (e.g. an SDXL trained on it);
"nudenet" the NudeNet detector (jobs/validation/judges/nudenet.py); "clip" zero-shot CLIP and "vqa" a
BLIP-VQA model asking yes/no questions, both from validation.judge_model.
"""
from __future__ import annotations

from orchestrator.core.models import TOY

JUDGES = ("auto", "toyworld", "nudenet", "clip", "vqa")
NEEDS_MODEL = ("clip", "vqa")   # judges whose weights validation.judge_model names
DEFAULT_SET = {"toyworld": "toyworld", "nudenet": "nudity"}   # a judge's own concept set (configs/concepts/)


def judge_for(model: str, judge: str, set_judge: str = "") -> str | None:
    """The judge a campaign's gates use, or None when this build has none for the model.

    "auto" is the toy world's evaluator for the toy model, else the concept set's own judge when this
    build has it (`set_judge`, from configs/concepts/<set>.yaml).
    """
    if judge != "auto":
        return judge
    if model == TOY:
        return "toyworld"
    return set_judge if set_judge in JUDGES[1:] else None
