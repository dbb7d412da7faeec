"""A fine-tune step as a Ray Train worker group: TorchTrainer, N workers packed on one node.

Each worker runs the same jobs.step.run_erase as a single-process step; the process group Ray Train
sets up (gloo on CPU, NCCL on GPU) is what Accelerate's DDP or DeepSpeed ZeRO uses inside
(jobs/training/finetune.py). A worker that dies makes Ray Train restart the group (FailureConfig), and the
restarted workers resume from the step's own last checkpoint; the campaign's retry policy only
sees the step if every restart failed. Rank 0 writes the candidate delta and candidate.json.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pyarrow.fs
import ray.train
import ray.util
from ray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from jobs.step import run_erase
from jobs.training import distributed
from erasecore.codec import from_json, to_json
from erasecore.contracts import DeltaRef, StepRequest

MAX_FAILURES = 2        # restarts of a worker group within one attempt
CANDIDATE = "candidate.json"


def fit_erase(request: StepRequest) -> DeltaRef:
    """Run the erase phase of `request` on request.parallel.num_workers workers; the candidate's DeltaRef."""
    par = request.parallel
    gpu = par.gpus_per_worker > 0
    per_worker = {"CPU": par.cpus_per_worker, **({"GPU": par.gpus_per_worker} if gpu else {})}
    out = Path(request.out_dir).resolve()
    (out / CANDIDATE).unlink(missing_ok=True)
    trainer = TorchTrainer(
        _worker, train_loop_config={"request": to_json(request)},
        scaling_config=ScalingConfig(num_workers=par.num_workers, use_gpu=gpu, resources_per_worker=per_worker,
                                     placement_strategy="STRICT_PACK"),   # one step's group on one node
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        run_config=RunConfig(name="train", storage_path=str(out), failure_config=FailureConfig(MAX_FAILURES)))
    before = set(ray.util.placement_group_table())
    trainer.fit()
    _await_release(set(ray.util.placement_group_table()) - before)
    if not (out / CANDIDATE).is_file():
        raise RuntimeError(f"the worker group finished without writing {out / CANDIDATE}")
    return from_json(DeltaRef, (out / CANDIDATE).read_text())


def _await_release(groups: set[str], timeout_s: float = 30.0) -> None:
    """The next step must find the devices free: wait for this group's placement groups to be removed."""
    deadline = time.monotonic() + timeout_s
    while True:
        table = ray.util.placement_group_table()
        held = [g for g in groups if table.get(g, {}).get("state") not in (None, "REMOVED")]
        if not held:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker group finished but still holds placement group(s) {', '.join(held)} "
                               f"after {timeout_s:.0f} s; its devices are not free for the next step")
        time.sleep(0.5)


class _RayCheckpoints:
    """jobs.training.distributed.Checkpoints on Ray Train: report() persists, get_checkpoint() restores after a restart.

    Every worker reports its own directory: Ray Train (V2) gives all ranks of one report the same checkpoint
    directory name (broadcast from rank 0), copies each worker's files into it, and registers the checkpoint
    once every worker has reported, so each rank's files (e.g. its ZeRO optimizer partition) are kept."""

    def latest(self) -> Path | None:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        if isinstance(ckpt.filesystem, pyarrow.fs.LocalFileSystem):
            return Path(ckpt.path)   # read in place: to_directory() would copy the whole state to /tmp and leave it
        return Path(ckpt.to_directory())

    def save(self, step: int, directory: Path, metrics: dict) -> None:
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(directory)))


def _worker(config: dict) -> None:
    request = from_json(StepRequest, config["request"])
    rank = ray.train.get_context().get_world_rank()
    log_path = Path(request.out_dir) / f"erase.rank{rank}.log"
    with open(log_path, "a", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"--- erase worker {distributed.describe()}", flush=True)
        ref = run_erase(request, lambda *a: print(*a, flush=True), _RayCheckpoints())
        if ref is not None:
            (Path(request.out_dir) / CANDIDATE).write_text(to_json(ref))
        distributed.release()   # barrier, then destroy the group: without it 2-process runs abort at exit
