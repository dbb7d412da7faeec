"""The judge self-check's verdict (erasecore/judge_check.py): rates -> ok, refused or flagged; its one error line
and its table; the campaign key that allows a weak judge."""
from __future__ import annotations

import pytest

from erasecore.contracts import Estimate, JudgeIdentity
from erasecore.errors import ConfigError, JudgeCheckError
from erasecore.judge_check import (
    FLAGGED,
    MIN_HIT,
    OK,
    REFUSED,
    JudgeCheck,
    JudgeRates,
    refusal,
    require,
    table,
    verdict,
)
from jobs.validation.statistics import wilson
from orchestrator.spec import load_spec, spec_hash

JUDGE = JudgeIdentity("toyworld", weights={"evaluator.safetensors": "29edc5ea785bd6167e1f" + "0" * 44})


def rate(k: int, n: int) -> Estimate:
    lo, hi = wilson(k, n, 0.95)
    return Estimate(k / n if n else 0.0, lo, hi, n)


def rates(concept: str, hits: tuple[int, int], false_positives: tuple[int, int]) -> JudgeRates:
    return JudgeRates(concept, rate(*hits), rate(*false_positives))


def check(*verdicts) -> JudgeCheck:
    return JudgeCheck(JUDGE, "toyworld", 1, 0.95, tuple(verdicts))


def test_a_concept_drawn_and_told_apart_is_ok():
    v = verdict(rates("star", (23, 23), (0, 38)), allow_weak=False)
    assert (v.verdict, v.reason) == (OK, "")


def test_a_concept_the_base_model_barely_draws_is_refused():
    v = verdict(rates("outline hourglass", (9, 20), (0, 38)), allow_weak=False)   # lower bound 0.26
    assert v.verdict == REFUSED and "barely draws it" in v.reason and f"< {MIN_HIT}" in v.reason


def test_a_concept_the_judge_cannot_tell_apart_is_refused():
    # drawn (lower bound 0.64 >= 0.5) but seen as often on the other prompts (upper bound 0.71)
    v = verdict(rates("diamond", (18, 22), (15, 30)), allow_weak=False)
    assert v.rates.hit.lower >= MIN_HIT and v.rates.hit.lower <= v.rates.false_positive.upper
    assert v.verdict == REFUSED and "cannot tell it apart" in v.reason


def test_separation_must_be_strict_and_no_prompts_is_refused():
    tied = JudgeRates("x", Estimate(0.9, 0.6, 1.0, 20), Estimate(0.3, 0.0, 0.6, 20))
    assert verdict(tied, allow_weak=False).verdict == REFUSED
    assert "no prompts of the concept" in verdict(JudgeRates("x", rate(0, 0), rate(0, 10)), allow_weak=False).reason
    assert "no prompts of other concepts" in verdict(JudgeRates("x", rate(9, 9), rate(0, 0)), allow_weak=False).reason


def test_allow_weak_judge_flags_instead_of_refusing():
    weak = verdict(rates("outline hourglass", (9, 20), (0, 38)), allow_weak=True)
    assert weak.verdict == FLAGGED and "barely draws it" in weak.reason
    flagged = check(verdict(rates("star", (23, 23), (0, 38)), False), weak)
    assert require(flagged) is flagged and refusal(flagged) == ""
    assert "flagged: the base model barely draws it" in table(flagged)


def test_a_refusal_is_one_line_naming_each_refused_concept_and_the_way_out():
    result = check(verdict(rates("star", (23, 23), (0, 38)), False),
                   verdict(rates("outline hourglass", (9, 20), (0, 38)), False),
                   verdict(rates("diamond", (18, 22), (15, 30)), False))
    with pytest.raises(JudgeCheckError) as e:
        require(result)
    line = str(e.value)
    assert "\n" not in line and "2 concept(s)" in line and "'star'" not in line
    assert "'outline hourglass': the base model barely draws it" in line and "'diamond': the judge cannot" in line
    assert "hit rate 0.45 [0.26, 0.66] n=20" in line and "validation.allow_weak_judge: true" in line


def test_the_table_has_a_row_per_concept_under_its_judge():
    lines = table(check(verdict(rates("star", (23, 23), (0, 38)), False),
                        verdict(rates("round", (56, 58), (0, 24)), False))).splitlines()
    assert lines[0].startswith("judge toyworld (evaluator.safetensors sha256 29edc5ea785b)") and "95%" in lines[0]
    assert lines[1].split() == ["concept", "hit", "rate", "(own", "prompts)", "false", "positives", "(other",
                                "prompts)", "verdict"]
    assert lines[2].split() == ["star", "1.00", "[0.86,", "1.00]", "n=23", "0.00", "[0.00,", "0.09]", "n=38", "ok"]
    assert lines[3].split()[0] == "round" and len(lines) == 4


def test_allow_weak_judge_is_a_validation_key_that_leaves_the_spec_hash_alone():
    base = ["name=c", "concepts=[star]"]
    assert load_spec(None, base).validation.allow_weak_judge is False
    allowed = load_spec(None, [*base, "validation.allow_weak_judge=true"])
    assert allowed.validation.allow_weak_judge is True
    assert spec_hash(allowed) == spec_hash(load_spec(None, base))   # a journal keeps its hash either way
    with pytest.raises(ConfigError, match="validation.allow_weak_judge"):
        load_spec(None, [*base, "validation.allow_weak_judge=sometimes"])


def test_a_journaled_check_is_judged_again_under_the_resumed_campaigns_allow_weak_judge(tmp_path):
    from erasecore.judge_check import reverdict
    from orchestrator.manifest import Manifest

    spec = load_spec("configs/campaigns/toy.yaml", [f"storage_path={tmp_path}", "concepts=[star,hourglass]"])
    manifest = Manifest.create(tmp_path, spec)
    weak = rates("hourglass", (3, 28), (0, 38))
    manifest.record_judge_check(check(verdict(rates("star", (23, 23), (0, 38)), False), verdict(weak, False)))
    again = Manifest.open(tmp_path).history   # as a resumed driver reads it
    record = again.judge_check_for(("star", "hourglass"))
    assert record is not None and again.judge_check_for(("star", "hourglass", "round")) is None
    assert [c.verdict for c in record.check.concepts] == [OK, REFUSED]
    assert record.check.concepts[1].rates == weak   # the rates survive the journal exactly
    assert [c.verdict for c in reverdict(record.check, allow_weak=True).concepts] == [OK, FLAGGED]
    with pytest.raises(JudgeCheckError, match="'hourglass'"):
        require(reverdict(record.check, allow_weak=False))
