"""Ray Jobs client behind `erase submit|status|logs|cancel|list`: each refusal is one ClusterError line.

    jobs = Jobs("http://127.0.0.1:8265")           # checks the address answers, sends the token
    job_id = jobs.submit(Path("campaign.yaml"), ["retry.max_attempts=5"], spec)
    jobs.status(job_id); jobs.logs(job_id); jobs.follow(job_id, write); jobs.cancel(job_id); jobs.list()

A submitted campaign is the job `erase run campaign.yaml [overrides] storage_path=<absolute>`:
the campaign file travels in a small runtime_env working_dir; the code is the `erase` package
installed on the cluster. A job runs once (Ray does not re-run a failed driver): campaign retries
happen inside it, and `erase resume` (or a new submit of the same campaign) continues it.

Token authentication: the token is RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else
~/.ray/auth_token (Ray's own order), sent as `Authorization: Bearer ...` on every request;
RAY_AUTH_MODE=disabled sends none. Sending it explicitly works whether or not this process
has RAY_AUTH_MODE=token set, which Ray's client otherwise needs before it sends anything.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from erasecore.errors import ClusterError
from orchestrator.spec import CampaignSpec

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
CONNECT_TIMEOUT_S = 5.0
AGENT_WAIT_S = 60.0   # a head just started answers HTTP before its job agent is ready
# Environment a campaign's workers need from the submitter (when set): the toy world's weights, W&B, HF.
FORWARDED_ENV = ("ERASE_TOYWORLD_DIR", "WANDB_MODE", "WANDB_PROJECT", "HF_HUB_OFFLINE")


@dataclass(frozen=True)
class JobView:
    """One job as `erase status` / `erase list` show it."""

    id: str
    status: str
    message: str
    entrypoint: str
    start_time: float | None     # seconds since the epoch
    end_time: float | None
    storage_path: str = ""       # the campaign's directory, from the job's metadata (erase submit sets it)


def default_address() -> str:
    """RAY_ADDRESS when it is an HTTP address, else the local dashboard."""
    env = os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS


def auth_token() -> tuple[str, str] | None:
    """(token, where it came from), read as Ray reads it; None when there is none or auth is disabled.

    Like Ray, a RAY_AUTH_TOKEN_PATH that cannot be read is an error, not a reason to look elsewhere.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ClusterError(f"cannot read the Ray token file RAY_AUTH_TOKEN_PATH={path}: "
                               f"{e.strerror or type(e).__name__}") from None
        if not token:
            raise ClusterError(f"the Ray token file RAY_AUTH_TOKEN_PATH={path} is empty")
        return token, str(path)
    path = Path.home() / ".ray" / "auth_token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return (token, str(path)) if token else None


def submission_id(campaign: str, now: float | None = None) -> str:
    """<campaign>-<UTC time>: readable in `erase list`, unique per second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{campaign}-{stamp}"


class Jobs:
    """A connected Ray Jobs client; every failure it knows of is a ClusterError."""

    def __init__(self, address: str | None = None):
        self.address = _normalise(address or default_address())
        _check_reachable(self.address)
        token = auth_token()
        self._token_source = token[1] if token else ""
        headers = {"Authorization": f"Bearer {token[0]}"} if token else {}
        from ray.job_submission import JobSubmissionClient

        _quiet_ray_client()
        with self._errors(), _without_env("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
            # Ray lets those variables override an explicit address; here --address wins.
            self._client = JobSubmissionClient(self.address, headers=headers)

    def submit(self, campaign_file: Path, overrides: list[str], spec: CampaignSpec) -> str:
        """Submit `erase run` for the campaign; returns the submission id."""
        storage = spec.storage_path if os.path.isabs(spec.storage_path) else os.path.abspath(spec.storage_path)
        job_id = submission_id(spec.name)
        args = ["erase", "run", "campaign.yaml", *overrides, f"storage_path={storage}"]
        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        env["PYTHONUNBUFFERED"] = "1"   # progress lines reach `erase logs` as they happen
        with tempfile.TemporaryDirectory(prefix="erase-submit-") as tmp:
            shutil.copyfile(campaign_file, Path(tmp) / "campaign.yaml")
            with self._errors(job_id):
                self._submit(entrypoint=shlex.join(args), submission_id=job_id,
                             runtime_env={"working_dir": tmp, "env_vars": env},
                             metadata={"campaign": spec.name, "storage_path": storage})
        return job_id

    def _submit(self, **job) -> None:
        """submit_job, waiting out a head that has just started and whose job agent is not up yet."""
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                self._client.submit_job(**job)
                return
            except RuntimeError as e:   # HTTP 500 "No available agent to submit job, please try again later"
                if "No available agent" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def status(self, job_id: str) -> JobView:
        with self._errors(job_id):
            return _view(self._client.get_job_info(job_id))

    def logs(self, job_id: str) -> str:
        with self._errors(job_id):
            return self._client.get_job_logs(job_id)

    def follow(self, job_id: str, write: Callable[[str], None]) -> None:
        """Stream the job's logs until it ends."""
        async def tail():
            async for chunk in self._client.tail_job_logs(job_id):
                write(chunk)
        with self._errors(job_id):
            self._client.get_job_info(job_id)   # an unknown id fails here with one line, not mid-stream
            asyncio.run(tail())

    def cancel(self, job_id: str) -> bool:
        """Ask Ray to stop the job; False if it had already ended."""
        with self._errors(job_id):
            return self._client.stop_job(job_id)

    def list(self) -> list[JobView]:
        with self._errors():
            jobs = self._client.list_jobs()
        return sorted((_view(j) for j in jobs), key=lambda v: v.start_time or 0)

    @contextlib.contextmanager
    def _errors(self, job_id: str = "") -> Iterator[None]:
        """Translate what Ray's client raises into one ClusterError line."""
        import requests
        from ray.exceptions import AuthenticationError

        try:
            yield
        except AuthenticationError as e:
            raise ClusterError(self._auth_message(str(e))) from None
        except (ConnectionError, requests.exceptions.RequestException, OSError) as e:
            raise ClusterError(f"cannot reach Ray at {self.address}: {_first_line(e)}") from None
        except RuntimeError as e:
            text = str(e)
            if job_id and ("404" in text or "does not exist" in text):
                raise ClusterError(f"no job {job_id!r} at {self.address} (see `erase list`)") from None
            raise ClusterError(f"Ray at {self.address} refused the request: {_first_line(e)}") from None

    def _auth_message(self, text: str) -> str:
        if "Authentication required" in text or not self._token_source:
            return (f"Ray at {self.address} requires a token and none was sent; set RAY_AUTH_TOKEN (or "
                    f"RAY_AUTH_TOKEN_PATH) to the cluster's token (`ray get-auth-token` on the head)")
        return (f"Ray rejected the token from {self._token_source} at {self.address}; it is not this cluster's "
                f"token (`ray get-auth-token` on the head shows the right one)")


def _quiet_ray_client() -> None:
    """Ray's client logs each upload at INFO on stderr; the CLI's stderr is for the one error line."""
    for name in ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk",
                 "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _normalise(address: str) -> str:
    address = address.strip().rstrip("/")
    return address if re.match(r"^https?://", address) else f"http://{address}"


def _check_reachable(address: str) -> None:
    """A quick TCP connect: the HTTP client would otherwise wait minutes on an address that drops packets."""
    url = urlparse(address)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ClusterError(f"cannot reach Ray at {address}: {reason} (is the head up and the dashboard "
                           "port open? pass --address or set RAY_ADDRESS)") from None


@contextlib.contextmanager
def _without_env(*names: str) -> Iterator[None]:
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _view(info) -> JobView:
    def seconds(ms):
        return ms / 1000.0 if ms else None
    return JobView(id=info.submission_id or info.job_id or "?", status=str(info.status.value if hasattr(
        info.status, "value") else info.status), message=info.message or "", entrypoint=info.entrypoint or "",
        start_time=seconds(info.start_time), end_time=seconds(info.end_time),
        storage_path=str((getattr(info, "metadata", None) or {}).get("storage_path", "")))


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
