"""Ray for `erase run`/`erase resume`: the cluster a Ray job runs in, or an embedded one on loopback.

    with cluster.session(num_cpus=None):     # RAY_ADDRESS set (inside `erase submit`'s job): join it;
        run_campaign(spec)                    # else start a private single-machine Ray, shut down at exit

The embedded Ray:
- Loopback only. Ray binds its servers to the node IP; RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes
  that 127.0.0.1 (Ray's own default on macOS and Windows), so nothing listens on the network.
  Ray reads it when it is imported, so configure() must run before the first `import ray`.
- Token authentication left on (Ray's default for local clusters since 2.59). RAY_AUTH_MODE=token
  is set explicitly unless the user chose a mode, which only spares Ray's warning; the token is
  RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (Ray writes the last if none exists).
- No dashboard (saves ~1 GB and a port); CPUs from the machine unless num_cpus is given; a small
  object store, since only paths, hashes and reports cross it.
- Workers inherit this process's environment (ERASE_TOYWORLD_DIR, WANDB_*, HF_*).
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

OBJECT_STORE_BYTES = 512 * 1024 * 1024
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def session(num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[str]:
    """Connect to Ray for the duration of the block; yields "cluster" or "embedded"."""
    kind = start(num_cpus, num_gpus)
    try:
        yield kind
    finally:
        import ray

        ray.shutdown()


def configure() -> None:
    """Settle the embedded Ray's environment; call before anything imports ray (idempotent)."""
    if os.environ.get("RAY_ADDRESS"):
        return   # joining a cluster: its own settings apply
    _bind_loopback()
    if "ray" not in sys.modules:   # read once at import: set later, the client and the GCS would disagree
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    # Ray Train's print patch echoes every worker line a second time into the phase's log file.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")


def start(num_cpus: int | None = None, num_gpus: int | None = None) -> str:
    """Join RAY_ADDRESS's cluster if set (a Ray job), else start the embedded local Ray."""
    configure()
    import ray

    if os.environ.get("RAY_ADDRESS"):
        # The job's runtime_env (working_dir, env_vars) applies; passing another here would replace it.
        ray.init(address=os.environ["RAY_ADDRESS"], logging_level="WARNING")
        return "cluster"
    # Workers' output goes to each phase's log file; forwarding it would also bring Ray Train's
    # complaints that the State API (which needs the dashboard) is off.
    # address="local": a Ray of its own; without it ray.init() joins any Ray already running on this
    # machine (another user's, another campaign's) and then refuses num_cpus.
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus, include_dashboard=False,
             object_store_memory=OBJECT_STORE_BYTES, logging_level="WARNING", log_to_driver=False)
    return "embedded"


def _bind_loopback() -> None:
    if "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
        return
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:
        print(f"warning: ray was imported before the embedded Ray was configured; it may listen on all "
              f"interfaces (set {LOOPBACK_ENV}=0 before importing ray)", file=sys.stderr)
