"""Shared by the Ray tests: which trained toy world to use, and a FAST campaign that runs in seconds.

The tests assert orchestration (commits, retries, placement, hashes), never metric values, so
any trained toy world will do: the shipped weights when they exist, else ERASE_TOYWORLD_DIR,
else the smoke-trained world in /tmp/tw. Gate thresholds are set so the decision is the one
a test needs (FORCE_COMMIT passes any measured candidate).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "jobs" / "toyworld" / "weights"
SMOKE = Path("/tmp/tw")

FORCE_COMMIT = {"min_forgetting": 0.0, "min_retain": 0.0, "max_leakage": 1.0, "max_drift": 1.0,
                "max_cumulative_acc": 1.0}
FAST = {
    "model": "toyworld",
    "method": "uce",                 # closed form: about a second
    "ladder": [],
    "gate": FORCE_COMMIT,
    "retry": {"max_attempts": 2, "on_exhausted": "skip"},
    "validation": {"seeds": 1, "inference_steps": 5, "max_prompts_per_group": 4},
    "tracking": {"mode": "disabled"},
}


def _world_dir() -> Path | None:
    """ERASE_TOYWORLD_DIR if set, else the shipped weights, else /tmp/tw; None when none is trained."""
    for candidate in (os.environ.get("ERASE_TOYWORLD_DIR"), SHIPPED, SMOKE):
        if candidate and (Path(candidate) / "pipeline").is_dir() and (Path(candidate) / "evaluator").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="module", autouse=True)
def toy_world():
    """Point this process, its Ray workers and its subprocesses at a trained toy world (or skip).

    Module-scoped, so nothing leaks into the test directories that run after this one.
    """
    world = _world_dir()
    if world is None:
        pytest.skip("no trained toy world: neither jobs/toyworld/weights nor /tmp/tw (erase toyworld train)")
    if world == SHIPPED and not os.environ.get("ERASE_TOYWORLD_DIR"):
        yield world   # the shipped weights need no variable
        return
    saved = os.environ.get("ERASE_TOYWORLD_DIR")
    os.environ["ERASE_TOYWORLD_DIR"] = str(world)
    yield world
    if saved is None:
        os.environ.pop("ERASE_TOYWORLD_DIR", None)
    else:
        os.environ["ERASE_TOYWORLD_DIR"] = saved


@pytest.fixture(scope="session")
def baseline_cache(tmp_path_factory) -> Path:
    """One base-model baseline cache for every test campaign (keyed by content, so sharing is safe)."""
    return tmp_path_factory.mktemp("baselines")


def merged(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def campaign(tmp_path, baseline_cache):
    """make(name, concepts, **sections) -> (spec, yaml_path): a FAST campaign under tmp_path."""
    from orchestrator.spec import load_spec

    def make(name: str, concepts=("star",), **sections):
        storage = tmp_path / "runs" / name
        storage.mkdir(parents=True)
        (storage / "cache").symlink_to(baseline_cache, target_is_directory=True)
        doc = merged(FAST, {"name": name, "concepts": list(concepts), "storage_path": str(storage), **sections})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return load_spec(str(path)), path

    return make


@pytest.fixture(scope="module")
def local_ray(toy_world):
    """A Ray of its own (address="local", even when another runs on this machine), 2 CPUs, for one module."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024,
             logging_level="WARNING")
    yield
    ray.shutdown()
