"""Placement on a multi-node cluster with fake GPUs: steps go where their resources are, and survive a node loss.

One ray.cluster_utils.Cluster for the module: a head with no GPU and two nodes with 2 fake GPUs
each, told apart by a custom resource (node_a, node_b). Torch sees no CUDA; Ray still accounts
the GPUs and sets CUDA_VISIBLE_DEVICES per task, which is what placement is about.
"""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import ray
from ray.cluster_utils import Cluster

from erasecore.errors import ClusterError
from orchestrator.manifest import Manifest
from orchestrator.ray.driver import run_campaign

pytestmark = pytest.mark.ray

GPU_STEP = {"cpus_per_step": 1, "gpus_per_step": 2, "validation_gpus": 1}


@pytest.fixture(scope="module")
def gpu_cluster(toy_world):
    # Fast node-death detection, so losing a node costs seconds rather than half a minute.
    health = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 4}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "_system_config": health})
    nodes = {name: cluster.add_node(num_cpus=1, num_gpus=2, resources={name: 1}, object_store_memory=80 * 2**20)
             for name in ("node_a", "node_b")}
    ray.init(address=cluster.address, logging_level="WARNING")
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()


def node_names() -> dict[str, str]:
    """Ray node id -> our custom resource name (node_a / node_b), from the cluster's own view."""
    names = {}
    for node in ray.nodes():
        custom = [r for r in node["Resources"] if r in ("node_a", "node_b")]
        names[node["NodeID"]] = custom[0] if custom else "head"
    return names


def placement(spec, step_dir: str) -> dict:
    return json.loads((Path(spec.storage_path) / "steps" / step_dir / "placement.json").read_text())


def test_steps_land_only_where_their_resources_are(gpu_cluster, campaign):
    spec, _ = campaign("placed", ["star"], resources=GPU_STEP)
    outcome = run_campaign(spec, echo=lambda line: None)

    assert outcome.status == "finished"
    names = node_names()
    where = placement(spec, "1-star/attempt-1")
    erase, validate = where["erase"]["placement"], where["validate"]["placement"]
    # Seen from inside the task: a GPU node, never the GPU-less head, with the GPUs it asked for.
    assert names[erase["node_id"]] in ("node_a", "node_b")
    assert names[validate["node_id"]] in ("node_a", "node_b")
    assert len(erase["gpu_ids"]) == 2 and len(erase["cuda_visible_devices"].split(",")) == 2
    assert len(validate["gpu_ids"]) == 1 and len(validate["cuda_visible_devices"].split(",")) == 1
    # A GPU phase gets a fresh worker process, so its device is free for the next phase.
    assert erase["pid"] != validate["pid"]


def test_step_asking_more_gpus_than_any_node_has_fails_fast(gpu_cluster, campaign):
    spec, _ = campaign("greedy", ["star"], resources={**GPU_STEP, "gpus_per_step": 3})
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=r"asks for 1 CPU, 3 GPU but no node .*1 CPU, 2 GPU"):
        run_campaign(spec, echo=lambda line: None, schedule_timeout_s=1)
    assert time.monotonic() - t0 < 30


def test_node_lost_mid_step_reschedules_the_step_elsewhere(gpu_cluster, campaign):
    """Last in the module: it removes a node."""
    cluster, nodes = gpu_cluster
    spec, _ = campaign("nodeloss", ["star"], resources=GPU_STEP)
    log = Path(spec.storage_path) / "steps/1-star/attempt-1/erase.log"
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(out=run_campaign(spec, echo=lambda line: None)), daemon=True)
    thread.start()

    deadline = time.monotonic() + 120
    while not (log.exists() and "--- erase phase" in log.read_text()):
        assert time.monotonic() < deadline, "erase phase never started"
        time.sleep(0.05)
    first_node = re.search(r"node ([0-9a-f]{20,})", log.read_text()).group(1)
    lost = next(name for name, node in nodes.items() if node.node_id == first_node)
    # The node dies at once with the step on it: its raylet and the step's worker together (were the
    # worker left to notice its raylet's death, it could still finish the step and report it).
    worker = next(p for p in psutil.process_iter(["cmdline"])
                  if (p.info["cmdline"] or [""])[0].startswith("ray::erase:nodeloss:1.1"))
    for pid in (worker.pid, nodes[lost].all_processes["raylet"][0].process.pid):
        os.kill(pid, signal.SIGKILL)
    cluster.remove_node(nodes[lost], allow_graceful=False)   # and the rest of its processes
    thread.join(180)

    assert not thread.is_alive() and box["out"].status == "finished"
    rerun = placement(spec, "1-star/attempt-1")["erase"]["placement"]
    survivor = next(node for name, node in nodes.items() if name != lost)
    assert rerun["node_id"] == survivor.node_id and rerun["node_id"] != first_node
    assert log.read_text().count("--- erase phase") == 2
    attempts = Manifest.open(spec.storage_path).history.attempts_for(1)
    assert len(attempts) == 1 and attempts[0].decision.committed
