"""Which loop a campaign runs, and with what pipelining: `resources.schedule`. Pure.

"serial": one attempt at a time (orchestrator/loop.py). "pipelined": the settings under resources
(speculative, parallel_attempts, prefetch_baselines; orchestrator/pipeline.py). "auto" (the default): what
the resources ask for when they ask for pipelining; otherwise, on a cluster with room for two erase-and-gate
pairs of GPUs (what speculation runs at once: the head's and the next step's), the schedule the scheduler bench
measured best on one 8-GPU node (docs/scaling.md: sharded gates, speculation
two steps deep, three parallel attempts of a rejected concept, baselines drawn six steps ahead: 1.28x the
ideal against 8.26x for serial), and serial on one GPU or none, where nothing runs beside a step.
The commits are the serial loop's in every schedule; only the wall time changes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from orchestrator.spec import CampaignSpec, Resources

# The scheduler bench's best mode (bench-results/scheduler.json, mode "prefetch").
BENCH_BEST = {"speculative": True, "speculation_depth": 2, "parallel_attempts": 3, "prefetch_baselines": 6}


@dataclass(frozen=True)
class Schedule:
    spec: CampaignSpec      # the campaign with the settings the loop runs with
    pipelined: bool
    why: str                # one line for the progress output and `erase plan`


def asks_for_pipelining(res: Resources) -> bool:
    return res.speculative or res.parallel_attempts > 1 or res.prefetch_baselines > 0


def choose(spec: CampaignSpec, gpus: float) -> Schedule:
    """The schedule for `spec` on a cluster with `gpus` GPUs in all."""
    res, mode = spec.resources, spec.resources.schedule
    if mode == "serial":
        return Schedule(spec, False, "schedule: serial (resources.schedule)")
    if mode == "pipelined" or asks_for_pipelining(res):
        return Schedule(spec, True, f"schedule: pipelined as the resources say ({_settings(res)})")
    pair = res.gpus_per_step + res.validation_gpus   # one erase and its gate
    if gpus <= 1 or pair <= 0 or gpus < 2 * pair:
        count = "no GPU" if gpus <= 0 else "one GPU" if gpus <= 1 else f"{gpus:g} GPUs"
        why = "nothing to run beside a step" if gpus <= 1 or pair <= 0 else \
            f"no room for a second erase and gate ({pair:g} GPUs each pair)"
        return Schedule(spec, False, f"schedule: serial (auto: {count}, {why})")
    best = dataclasses.replace(res, **BENCH_BEST)
    validation = spec.validation
    if validation.shards == 1:   # the default: a gate on one GPU; 0 shards it over every GPU free
        validation = dataclasses.replace(validation, shards=0)
    tuned = dataclasses.replace(spec, resources=best, validation=validation)
    return Schedule(tuned, True, f"schedule: pipelined (auto: {gpus:g} GPUs; the scheduler bench's best: "
                                 f"{_settings(best)}, gates sharded over free GPUs)")


def _settings(res: Resources) -> str:
    return (f"speculation {'depth ' + str(res.speculation_depth) if res.speculative else 'off'}, "
            f"{res.parallel_attempts} parallel attempts, baselines {res.prefetch_baselines} steps ahead")


def describe(spec: CampaignSpec) -> str:
    """What `choose` will pick, before the cluster is known (erase plan)."""
    if spec.resources.schedule != "auto" or asks_for_pipelining(spec.resources):
        return choose(spec, 1).why
    res = spec.resources
    pair = res.gpus_per_step + res.validation_gpus
    if pair <= 0:
        return "schedule: serial (auto: steps ask for no GPU, nothing to run beside a step)"
    best = choose(spec, 2 * pair).spec.resources
    return (f"schedule: auto: serial on fewer than {2 * pair:g} GPUs; pipelined on a cluster with at least "
            f"{2 * pair:g} (the scheduler bench's best: {_settings(best)}, gates sharded over free GPUs)")
