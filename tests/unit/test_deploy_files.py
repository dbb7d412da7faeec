"""Deployment files, checked without an engine: YAML fields, pinned versions, and the Slurm script run
against fake srun/scontrol/ray/erase commands (start vs resume, requeue on USR1)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
SBATCH = REPO / "launch" / "slurm" / "erase.sbatch"
RAY_VERSION = version("ray")
JOB_ID = "4242"
# Each fake appends its name and argv to $FAKE_LOG. scontrol also answers `show hostnames`; erase
# stays up for $FAKE_ERASE_SECONDS (a running driver), leaving at once on TERM.
FAKES = {
    "srun": "",
    "ray": "",
    "scontrol": 'if [ "$1 $2" = "show hostnames" ]; then printf "%s\\n" $FAKE_NODES; fi\n',
    "erase": 'trap \'echo "erase got TERM" >> "$FAKE_LOG"; kill $pid; exit 143\' TERM\nsleep "${FAKE_ERASE_SECONDS:-0}" & pid=$!\nwait $pid\n',
}


# ---- static checks ---------------------------------------------------------------------------

def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


def test_dockerfile_runs_as_a_non_root_user_on_a_cuda_base():
    users = re.findall(r"^USER\s+(\S+)", dockerfile(), re.MULTILINE)
    assert users and users[-1] not in ("root", "0", "0:0")
    assert re.search(r"nvidia/cuda:12\.[0-9.]+-runtime-ubuntu", dockerfile())
    assert re.search(r"^WORKDIR\s+/", dockerfile(), re.MULTILINE)


def test_dockerfile_pins_python_311_and_the_ray_version_the_project_uses():
    assert re.search(r"^ARG PYTHON_VERSION=3\.11\.\d+$", dockerfile(), re.MULTILINE)
    assert re.findall(r"^ARG RAY_VERSION=(\S+)$", dockerfile(), re.MULTILINE) == [RAY_VERSION]
    assert '"ray[default,train]==${RAY_VERSION}"' in dockerfile()
    assert '".[deepspeed]"' in dockerfile()     # the project with its extras


def test_dockerfile_bakes_in_no_secret():
    instructions = "\n".join(line for line in dockerfile().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"TOKEN|API_KEY|PASSWORD|SECRET", instructions.upper())


def test_hadolint_if_available():
    if shutil.which("hadolint") is None:
        pytest.skip("hadolint not on PATH")
    out = subprocess.run(["hadolint", str(DOCKER / "Dockerfile")], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_has_a_head_and_two_workers_sharing_storage():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"head", "worker"} and services["worker"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        assert service["shm_size"], name
        assert "storage:/data" in service["volumes"], name
        assert service["environment"]["RAY_AUTH_MODE"] == "token", name
        assert service["env_file"] == ["ray-auth.env"], name     # the token, never in the file itself
        assert "RAY_AUTH_TOKEN" not in service["environment"], name
    assert "storage" in compose["volumes"]
    assert "--address=head:6379" in services["worker"]["command"]
    (port,) = services["head"]["ports"]
    assert port.startswith("${RAY_DASHBOARD_BIND:-127.0.0.1}:")   # loopback unless the user says otherwise
    assert "ray-auth.env" in (DOCKER / ".gitignore").read_text()


def test_kuberay_rayjob_runs_erase_on_gpu_workers_with_a_pvc():
    docs = {d["kind"]: d for d in yaml.safe_load_all((DOCKER / "kuberay-rayjob.yaml").read_text())}
    job, pvc = docs["RayJob"], docs["PersistentVolumeClaim"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("erase run configs/campaigns/")
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == RAY_VERSION and cluster["authOptions"]["mode"] == "token"
    assert (REPO / spec["entrypoint"].split()[2]).is_file()           # the campaign file it names exists
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [pvc["metadata"]["name"]]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    workers = cluster["workerGroupSpecs"][0]["template"]["spec"]
    assert workers["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_sbatch_header_and_syntax():
    text = SBATCH.read_text()
    for directive in ("#SBATCH --signal=B:USR1@120", "#SBATCH --requeue"):
        assert directive in text
    assert subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, check=False).returncode == 0
    if shutil.which("shellcheck"):
        out = subprocess.run(["shellcheck", str(SBATCH)], capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout


# ---- the Slurm script, run on a fake allocation ----------------------------------------------

def fake_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text(f'#!/bin/bash\necho "{name} $*" >> "$FAKE_LOG"\n{body}')
        path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", HOME=str(tmp_path / "home"), FAKE_LOG=str(tmp_path / "calls.log"),
               FAKE_NODES="gpu-a gpu-b", SLURM_JOB_ID=JOB_ID, SLURM_JOB_NODELIST="gpu-[a-b]", SLURM_NNODES="2",
               SLURM_RESTART_COUNT="0", CAMPAIGN="configs/campaigns/toy.yaml",
               STORAGE_PATH=str(tmp_path / "campaign"), STOP_GRACE_S="5")
    env.update(extra)
    return env


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def run_sbatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SBATCH), *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_new_campaign_starts_ray_everywhere_and_runs(tmp_path):
    out = run_sbatch(fake_env(tmp_path), "validation.seeds=4")
    assert out.returncode == 0, out.stdout + out.stderr
    log = calls(tmp_path)
    storage = tmp_path / "campaign"
    assert f"erase run configs/campaigns/toy.yaml storage_path={storage} validation.seeds=4" in log
    assert not any(line.startswith("erase resume") for line in log)
    assert "srun --nodes=1 --ntasks=1 -w gpu-a ray start --head --port=6379 --dashboard-host=127.0.0.1 --block" in log
    assert "srun --nodes=1 --ntasks=1 -w gpu-b ray start --address=gpu-a:6379 --block" in log
    assert any(line.startswith("srun --overlap --nodes=2") and line.endswith("ray stop --force") for line in log)
    assert not any(line.startswith("scontrol requeue") for line in log)
    token = tmp_path / "home" / ".ray" / "erase_auth_token"
    assert token.is_file() and token.stat().st_mode & 0o077 == 0   # made private on first use


def test_an_existing_campaign_is_resumed(tmp_path):
    (tmp_path / "campaign").mkdir()
    (tmp_path / "campaign" / "manifest.json").write_text("{}")
    out = run_sbatch(fake_env(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    erase_calls = [line for line in calls(tmp_path) if line.startswith("erase")]
    assert erase_calls == [f"erase resume {tmp_path / 'campaign'}"]


def test_the_driver_exit_status_is_the_job_status(tmp_path):
    env = fake_env(tmp_path)
    (tmp_path / "bin" / "erase").write_text('#!/bin/bash\necho "erase $*" >> "$FAKE_LOG"\nexit 3\n')
    assert run_sbatch(env).returncode == 3


def signalled_run(tmp_path: Path, **extra: str) -> tuple[int, list[str], str]:
    """Start the script with a driver that stays up, send USR1 once it runs, return (rc, calls, output)."""
    env = fake_env(tmp_path, FAKE_ERASE_SECONDS="30", **extra)
    proc = subprocess.Popen(["bash", str(SBATCH)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while not any(line.startswith("erase run") for line in calls(tmp_path)):
        assert proc.poll() is None and time.monotonic() < deadline, "the driver never started"
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGUSR1)
    output, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10, "the driver was not stopped promptly"
    return proc.returncode, calls(tmp_path), output


def test_usr1_stops_ray_and_requeues(tmp_path):
    rc, log, output = signalled_run(tmp_path)
    assert rc == 0, output
    assert log[-3:] == ["erase got TERM", "srun --overlap --nodes=2 --ntasks-per-node=1 ray stop --force",
                        f"scontrol requeue {JOB_ID}"]   # driver first, then Ray, then the requeue
    assert "USR1 received" in output


def test_no_requeue_after_max_requeues(tmp_path):
    rc, log, output = signalled_run(tmp_path, SLURM_RESTART_COUNT="3", MAX_REQUEUES="3")
    assert rc == 1 and not any(line.startswith("scontrol requeue") for line in log), output
    assert "not requeueing" in output
