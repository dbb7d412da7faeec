"""A fine-tune step as a Ray Train worker group (TorchTrainer on gloo): same delta as one worker, resumes after a
worker dies, runs inside a campaign and leaves nothing behind.

Layouts agree up to rounding, and how far six Adam steps carry rounding depends on the CPU: each comparison's
bound is FACTOR x the floor this module measures on this machine (the single-worker fine-tune with its global
batch's loss summed as halves and as quarters, tests/fixtures/noise_floor.py) + GUARD, never a fixed number."""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch

from erasecore.contracts import ParallelSpec, StepRequest, ValidationSpec
from jobs.deltas.delta import load_delta
from launch import cluster
from tests.fixtures.noise_floor import Floor, finetune_floors, max_rel_diff, rel_fro

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
# Short ESD-x steps: the test is about equality between layouts, not about erasing well.
HPARAMS = {"steps": 6, "batch": 8}
RESUMED = {"steps": 40, "batch": 8}   # checkpoints every 10 steps, a kill after the first, 30 steps to replay


@pytest.fixture(scope="module", autouse=True)
def local_ray(toy_world):
    import ray

    cluster.start(num_cpus=2)
    yield
    ray.shutdown()


def request(out: Path, workers: int, strategy: str = "ddp", hparams=HPARAMS, every: int = 50,
            ds_file: str = "zero2.json") -> StepRequest:
    ds = json.loads((REPO / "configs" / "deepspeed" / ds_file).read_text()) if strategy == "deepspeed" else {}
    return StepRequest(campaign="dist", step=1, attempt=1, concept="star", method="esd-x", hparams=dict(hparams),
                       model="toyworld", parents=(), out_dir=str(out), validation=ValidationSpec(judge="toyworld"),
                       parallel=ParallelSpec(num_workers=workers, strategy=strategy, deepspeed_config=ds,
                                             checkpoint_every=every, cpus_per_worker=1.0))


def fit(req: StepRequest) -> dict[str, torch.Tensor]:
    from orchestrator.ray.train import fit_erase

    ref = fit_erase(req)
    assert ref.path == str(Path(req.out_dir) / "delta.safetensors")
    return load_delta(ref.path)[0]


@pytest.fixture(scope="module")
def floors(tmp_path_factory) -> dict[int, Floor]:
    """This machine's floors of the 6-step fit and the 40-step one, in one in-process step (its latents drawn
    once). At 6 steps also a wrong slice, which the bound must tell apart from rounding."""
    found = finetune_floors(request(tmp_path_factory.mktemp("floor"), 1), lengths=(HPARAMS["steps"], RESUMED["steps"]),
                            fault_at=HPARAMS["steps"])
    short = found[HPARAMS["steps"]]
    assert short.fault > short.bound(), f"the bound would not catch a worker on the wrong slice: {short}"
    return found


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """The 1-worker fit of HPARAMS per strategy, fitted once per module (the ZeRO-3 test reuses DDP's)."""
    fits: dict[str, dict[str, torch.Tensor]] = {}

    def get(strategy: str) -> dict[str, torch.Tensor]:
        if strategy not in fits:
            fits[strategy] = fit(request(tmp_path_factory.mktemp(f"one-{strategy}"), 1, strategy))
        return fits[strategy]
    return get


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed"])
def test_two_workers_train_the_same_delta_as_one(tmp_path, strategy, floors, one_worker):
    one = one_worker(strategy)
    two = fit(request(tmp_path / "two", 2, strategy))
    # Same global batch; only the gradient all-reduce order differs: as far as another order on one worker goes.
    floor = floors[HPARAMS["steps"]]
    assert max_rel_diff(one, two) <= floor.bound(), f"{max_rel_diff(one, two):.3g} vs {floor}"
    logs = [(tmp_path / "two" / f"erase.rank{r}.log").read_text() for r in (0, 1)]
    for r, text in enumerate(logs):
        assert f"rank {r}/2 LOCAL_RANK='{r}'" in text and "CUDA_VISIBLE_DEVICES=" in text and "device=cpu" in text
        assert ("DEEPSPEED" if strategy == "deepspeed" else "MULTI_CPU") in text
        assert "global batch 8 = 2 x 4" in text
    assert not (tmp_path / "two" / "erase.rank1.log").read_text().count("delta.safetensors")


def test_zero3_partitions_the_weights_and_still_trains_the_same_delta(tmp_path, floors, one_worker):
    """ZeRO-3 holds a shard of each weight per worker: the delta is gathered before it is written."""
    one = one_worker("ddp")
    zero3 = fit(request(tmp_path / "zero3", 2, "deepspeed", ds_file="zero3.json"))
    floor = floors[HPARAMS["steps"]]
    assert max_rel_diff(one, zero3) <= floor.bound(), f"{max_rel_diff(one, zero3):.3g} vs {floor}"
    assert "DEEPSPEED" in (tmp_path / "zero3" / "erase.rank1.log").read_text()


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed"])
def test_a_worker_killed_mid_step_resumes_from_the_steps_checkpoint(tmp_path, strategy, floors):
    """Ray Train restarts the group; the workers load the last checkpoint (Accelerate's save_state: weights and
    optimizer state, under ZeRO-2 each rank's optimizer partition) and the delta matches an unbroken run."""
    hp = RESUMED
    whole = fit(request(tmp_path / "whole", 2, strategy, hparams=hp, every=10))
    out = tmp_path / "broken"
    killer = threading.Thread(target=kill_rank1_after_first_checkpoint, args=(out,), daemon=True)
    killer.start()
    broken = fit(request(out, 2, strategy, hparams=hp, every=10))
    killer.join(5)
    log = (out / "erase.rank0.log").read_text()
    resumed = re.findall(r"resumed from checkpoint at step (\d+)", log)
    assert resumed and int(resumed[0]) >= 9, log[-2000:]
    ckpt = out / "train" / registered_checkpoints(out)[0]
    assert (ckpt / "finetune_step.json").is_file() and not list(ckpt.rglob("finetune_state.pt"))
    if strategy == "deepspeed":   # every rank's ZeRO optimizer partition was kept in the one checkpoint
        assert len(list(ckpt.rglob("zero_pp_rank_*_optim_states.pt"))) == 2, sorted(ckpt.rglob("*"))
    # Restored Adam moments (also ZeRO's partitions) make the resumed run replay the unbroken one, within the
    # 40-step floor; restarted moments move the weights differently after the resume (at 60 steps 0.17 of the
    # delta's largest entry on the toy model, >1000x the bound).
    floor = floors[RESUMED["steps"]]
    assert max_rel_diff(whole, broken) <= floor.bound(), f"{max_rel_diff(whole, broken):.3g} vs {floor}"


def registered_checkpoints(out: Path) -> list[str]:
    """The checkpoint directories Ray Train's controller registered (a directory exists before that: the
    workers upload, then the controller collects every rank's report when it next polls them)."""
    try:
        state = json.loads((out / "train" / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):
        return []
    return [c["checkpoint_dir_name"] for c in state.get("checkpoint_results", [])]


def kill_rank1_after_first_checkpoint(out: Path, timeout: float = 120) -> None:
    """Kill rank 1 once the first checkpoint is registered (so the restarted group resumes from it)."""
    deadline = time.time() + timeout
    log = out / "erase.rank1.log"
    while time.time() < deadline:
        if registered_checkpoints(out) and log.is_file():
            pid = re.search(r"rank 1/2 .* pid=(\d+)", log.read_text())
            if pid:
                psutil.Process(int(pid.group(1))).kill()
                return
        time.sleep(0.05)


def test_a_campaign_runs_its_fine_tune_steps_as_worker_groups(campaign, tmp_path):
    from orchestrator.manifest import Manifest
    from orchestrator.ray.driver import run_campaign

    spec, _ = campaign("group", concepts=("star",), method="esd-x",
                       hparams={"esd-x": {"steps": 40, "batch": 8, "lr": 3e-3}},
                       resources={"num_workers": 2, "cpus_per_step": 2})
    outcome = run_campaign(spec, echo=lambda line: None)
    assert outcome.status == "finished" and tuple(outcome.committed) == ("star",)
    attempt = _attempt_dir(spec)
    assert (attempt / "erase.rank1.log").is_file()
    assert "launching 2 workers (ddp)" in (attempt / "erase.log").read_text()
    assert [Path(ref.path).parent for ref in Manifest.open(spec.storage_path).committed_deltas()] == [attempt]


def _attempt_dir(spec) -> Path:
    logs = list(Path(spec.storage_path).rglob("erase.rank0.log"))
    assert len(logs) == 1, logs
    return logs[0].parent


def test_a_step_in_a_reused_worker_releases_what_an_earlier_one_left(tmp_path, monkeypatch):
    """A leftover process group (as a crashed distributed step would leave) is found and torn down."""
    from jobs.training import distributed

    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert any("process group" in x for x in distributed.leftovers())
    from jobs.step import _check_released
    lines = []
    _check_released(lines.append)
    assert not torch.distributed.is_initialized()
    assert any("process group" in line for line in lines)


BF16 = {**HPARAMS, "mixed_precision": "bf16"}
BF16_FACTOR = 5.0   # in bf16 the norm-wise distance barely depends on the order (halves 0.021, quarters 0.022)


@pytest.fixture(scope="module")
def bf16_floor(tmp_path_factory) -> Floor:
    """The floor in bf16 on this GPU, norm-wise: in bf16 many gradient entries round across zero, and Adam moves
    each of them by about lr, so the largest entry of the difference is as large for a reordering (0.47 of the
    delta's largest entry under CPU autocast) as for a wrong slice (1.5); the norm tells them apart."""
    found = finetune_floors(request(tmp_path_factory.mktemp("floor-bf16"), 1, hparams=BF16), lengths=(BF16["steps"],),
                            metric=rel_fro, fault_at=BF16["steps"], factor=BF16_FACTOR)[BF16["steps"]]
    assert found.fault > found.bound(), f"the bound would not catch a worker on the wrong slice: {found}"
    return found


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA GPUs: NCCL and bf16 only run on GPUs "
                    "(this machine has none; the same test runs DDP/ZeRO-2 on gloo above)")
@pytest.mark.parametrize("strategy", ["ddp", "deepspeed"])
def test_gpu_workers_on_nccl_in_bf16_match_one(tmp_path, strategy, bf16_floor):
    n = min(2, torch.cuda.device_count())

    def gpu_request(out, workers):
        return dataclass_replace(request(out, workers, strategy, BF16), gpus_per_worker=1.0)
    one = fit(gpu_request(tmp_path / "one", 1))
    many = fit(gpu_request(tmp_path / "many", n))
    assert rel_fro(one, many) <= bf16_floor.bound(), f"{rel_fro(one, many):.3g} vs {bf16_floor}"   # bf16 rounding
    assert "on cuda" in (tmp_path / "many" / "erase.rank0.log").read_text()


def dataclass_replace(req: StepRequest, **parallel) -> StepRequest:
    import dataclasses

    return dataclasses.replace(req, parallel=dataclasses.replace(req.parallel, **parallel))
