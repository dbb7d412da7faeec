"""A real Ray Jobs round trip: a head started here with token auth, `erase submit`, status to SUCCEEDED, logs.

The head is `ray start --head --block` in its own temp dir, dashboard on loopback, its token given
as RAY_AUTH_TOKEN (so nothing is written to ~/.ray). It is stopped by signalling that one
process, whose reaper takes down the processes it started: `ray stop` would stop every Ray
on the machine, other people's included.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Head:
    address: str
    env: dict[str, str]    # what a client of this head needs (the token among it)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head(toy_world):
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")   # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}   # the job's `erase` is this venv's
    env.pop("RAY_ADDRESS", None)
    dashboard = free_port()
    log = open(Path(temp) / "head.log", "w")
    # Every port chosen here: a fixed default (the job agent's 52365, the client server's 10001) may
    # still be held by another Ray on this machine, and the head would then take no jobs.
    ports = [f"--{name}={free_port()}" for name in ("port", "dashboard-agent-listen-port",
                                                     "ray-client-server-port", "metrics-export-port")]
    proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", *ports, "--dashboard-host=127.0.0.1",
                             f"--dashboard-port={dashboard}", "--num-cpus=2", "--include-dashboard=true",
                             f"--temp-dir={temp}", "--disable-usage-stats"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=temp)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for(address, env["RAY_AUTH_TOKEN"], proc, Path(temp) / "head.log")
        yield Head(address, env)
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for(address: str, token: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ray start exited:\n{log.read_text()[-3000:]}"
        try:
            auth = {"Authorization": f"Bearer {token}"}
            if requests.get(f"{address}/api/jobs/", headers=auth, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the head's dashboard did not come up:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the head we started: SIGTERM to `ray start --block`, then to what it left, by pid."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    _, alive = psutil.wait_procs(children, timeout=15)
    for p in alive:
        p.kill()


def erase(head: Head, *args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=REPO, env=env or head.env,
                          capture_output=True, text=True, check=False, timeout=timeout)


def test_submit_poll_to_succeeded_and_read_logs(head, campaign):
    spec, path = campaign("jobbed", ["star"])
    sub = erase(head, "submit", str(path), "--address", head.address)
    assert sub.returncode == 0, sub.stdout + sub.stderr
    job_id = sub.stdout.split()[1]
    assert job_id.startswith("jobbed-")

    deadline = time.monotonic() + 240
    while True:
        status = erase(head, "status", job_id, "--address", head.address)
        assert status.returncode == 0, status.stderr
        state = status.stdout.split()[1]
        if state in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        assert time.monotonic() < deadline, "job did not end in time"
        time.sleep(2)
    logs = erase(head, "logs", job_id, "--address", head.address)
    assert state == "SUCCEEDED", logs.stdout
    assert "finished: 1 committed" in logs.stdout and "committed model" in logs.stdout
    followed = erase(head, "logs", job_id, "--follow", "--address", head.address)   # ends with the job
    assert followed.returncode == 0 and "committed model" in followed.stdout
    listed = erase(head, "list", "--address", head.address)
    assert job_id in listed.stdout and "SUCCEEDED" in listed.stdout
    local = erase(head, "status", spec.storage_path)           # the journal the job wrote, read here
    assert local.returncode == 0 and "committed" in local.stdout
    assert f"storage_path: {spec.storage_path}" in status.stdout   # where `erase watch` finds the job's journal
    watched = erase(head, "watch", job_id, "--address", head.address)   # the job's storage_path is mounted here
    assert watched.returncode == 0 and "star" in watched.stdout and "committed" in watched.stdout, watched.stderr


def test_wrong_or_missing_token_is_one_line(head, tmp_path):
    wrong = erase(head, "list", "--address", head.address, env={**head.env, "RAY_AUTH_TOKEN": "0" * 32})
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: Ray rejected the token")
    # No token anywhere: not in the environment, and a home without ~/.ray/auth_token.
    none = {**{k: v for k, v in head.env.items() if k != "RAY_AUTH_TOKEN"}, "HOME": str(tmp_path)}
    missing = erase(head, "list", "--address", head.address, env=none)
    assert missing.returncode == 2 and missing.stderr.startswith("error: Ray at")
    assert "requires a token" in missing.stderr
    unreadable = erase(head, "list", "--address", head.address, env={**none, "RAY_AUTH_TOKEN_PATH": "/nonexistent"})
    assert unreadable.returncode == 2 and unreadable.stderr.startswith("error: cannot read the Ray token file")
    for result in (wrong, missing, unreadable):
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stdout + result.stderr


def test_unknown_job_is_one_line(head):
    result = erase(head, "status", "no-such-job", "--address", head.address)
    assert result.returncode == 2 and result.stderr.startswith("error: no job 'no-such-job'")


def test_cancel_stops_a_running_job(head, campaign):
    _, path = campaign("cancelled", ["star", "square"])
    job_id = erase(head, "submit", str(path), "--address", head.address).stdout.split()[1]
    cancel = erase(head, "cancel", job_id, "--address", head.address)
    assert cancel.returncode == 0 and f"stop requested for {job_id}" in cancel.stdout
    deadline = time.monotonic() + 60
    while (state := erase(head, "status", job_id, "--address", head.address).stdout.split()[1]) != "STOPPED":
        assert state in ("PENDING", "RUNNING") and time.monotonic() < deadline, state
        time.sleep(1)
