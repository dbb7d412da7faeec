"""Run the `erase` CLI as a user would (a subprocess) and check its one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def erase(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2, no traceback, exactly one `error:` line on stderr naming each of `words`."""
    shown = result.stdout + result.stderr
    assert result.returncode == 2, shown
    assert "Traceback" not in shown, shown
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, shown
    for word in words:
        assert word in result.stderr, shown
