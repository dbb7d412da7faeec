"""Every test module: the test process ends with pytest's own exit status once its report is printed.

After 580 passed tests, the interpreter's own shutdown (atexit handlers of the native libraries the suite
loads: torch, Ray, gloo) has segfaulted once in a fresh-clone `make test`, turning a green run red. What
runs after the last hook is only that teardown, so the process leaves with os._exit(status) instead.
"""
from __future__ import annotations

import os
import sys

import pytest

_SESSION: list = []


def pytest_sessionfinish(session) -> None:
    _SESSION.append(session)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    if _SESSION and not hasattr(config, "workerinput"):   # the main process, after the session ran
        config.get_terminal_writer().flush()               # the report pytest printed, to the end
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(_SESSION[-1].exitstatus))
