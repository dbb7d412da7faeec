"""resources.schedule: auto picks the scheduler bench's best pipelining on more than one GPU, serial otherwise;
settings that ask for pipelining, or an explicit schedule, win."""
import pytest

from erasecore.errors import ConfigError
from orchestrator import schedule
from orchestrator.spec import load_spec, spec_hash


def spec(*overrides):
    return load_spec(None, ["name=t", "concepts=[star]", *overrides])


def test_auto_is_serial_on_one_gpu_or_none_and_the_bench_best_on_more():
    s = spec()
    for gpus in (0, 1):
        chosen = schedule.choose(s, gpus)
        assert not chosen.pipelined and chosen.spec == s and "serial (auto" in chosen.why
    chosen = schedule.choose(s, 8)
    res = chosen.spec.resources
    assert chosen.pipelined and "auto: 8 GPUs" in chosen.why
    assert (res.speculative, res.speculation_depth, res.parallel_attempts, res.prefetch_baselines) == (True, 2, 3, 6)
    assert chosen.spec.validation.shards == 0 and spec_hash(chosen.spec) == spec_hash(s)   # same results


def test_what_the_campaign_says_wins():
    assert not schedule.choose(spec("resources.schedule=serial"), 8).pipelined
    asked = schedule.choose(spec("resources.parallel_attempts=2"), 8)
    assert asked.pipelined and asked.spec.resources.parallel_attempts == 2 and not asked.spec.resources.speculative
    kept = schedule.choose(spec("validation.shards=2"), 8)
    assert kept.spec.validation.shards == 2
    assert schedule.choose(spec("resources.schedule=pipelined"), 1).pipelined


def test_plan_states_both_cases_and_a_bad_schedule_is_one_line():
    assert "serial on one GPU or none; pipelined on a cluster with more" in schedule.describe(spec())
    with pytest.raises(ConfigError, match="resources.schedule must be one of auto, serial, pipelined"):
        spec("resources.schedule=fast")
