"""resources.schedule: auto picks the scheduler bench's best pipelining on more than one GPU, serial otherwise;
settings that ask for pipelining, or an explicit schedule, win."""
import pytest

from erasecore.errors import ConfigError
from orchestrator import schedule
from orchestrator.spec import load_spec, spec_hash


def spec(*overrides):
    return load_spec(None, ["name=t", "concepts=[star]", "resources.gpus_per_step=1", "resources.validation_gpus=1",
                            *overrides])


def test_auto_is_serial_without_room_for_two_erase_and_gate_pairs_and_the_bench_best_with_it():
    s = spec()
    for gpus in (0, 1, 3):
        chosen = schedule.choose(s, gpus)
        assert not chosen.pipelined and chosen.spec == s and "serial (auto" in chosen.why
    chosen = schedule.choose(s, 8)
    res = chosen.spec.resources
    assert chosen.pipelined and "auto: 8 GPUs" in chosen.why
    assert (res.speculative, res.speculation_depth, res.parallel_attempts, res.prefetch_baselines) == (True, 2, 3, 6)
    assert chosen.spec.validation.shards == 0 and spec_hash(chosen.spec) == spec_hash(s)   # same results
    assert schedule.choose(spec(), 4).pipelined
    assert not schedule.choose(spec("resources.gpus_per_step=2"), 4).pipelined   # 2 + 1 per pair: needs 6
    assert not schedule.choose(spec("resources.gpus_per_step=0", "resources.validation_gpus=0"), 8).pipelined


def test_what_the_campaign_says_wins():
    assert not schedule.choose(spec("resources.schedule=serial"), 8).pipelined
    asked = schedule.choose(spec("resources.parallel_attempts=2"), 8)
    assert asked.pipelined and asked.spec.resources.parallel_attempts == 2 and not asked.spec.resources.speculative
    kept = schedule.choose(spec("validation.shards=2"), 8)
    assert kept.spec.validation.shards == 2
    assert schedule.choose(spec("resources.schedule=pipelined"), 1).pipelined


def test_plan_states_both_cases_and_a_bad_schedule_is_one_line():
    assert "serial on fewer than 4 GPUs; pipelined on a cluster with at least 4" in schedule.describe(spec())
    assert "steps ask for no GPU" in schedule.describe(spec("resources.gpus_per_step=0", "resources.validation_gpus=0"))
    with pytest.raises(ConfigError, match="resources.schedule must be one of auto, serial, pipelined"):
        spec("resources.schedule=fast")
