"""The lock (constraints.txt): every dependency pinned exactly, and the environment the tests run in is the locked one.

Installs take every version from it (Makefile, docker/Dockerfile), so the same campaign gives the same bytes
a week later. Refresh it with `make lock` (docs/installing.md).
"""
from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:   # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "constraints.txt"
EXTRAS = ("dev", "deepspeed")   # what `make install` installs
FIX = "refresh the lock with `make lock` (docs/installing.md), or reinstall from it with `make install`"


def pins() -> dict[str, str]:
    """{canonical name: version} from constraints.txt; every line must be an exact pin."""
    out: dict[str, str] = {}
    for n, line in enumerate(LOCK.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;=<>!~,+]+)", line)
        assert m, f"constraints.txt:{n}: {line!r} is not an exact name==version pin; {FIX}"
        name = canonicalize_name(m[1])
        assert name not in out, f"constraints.txt:{n}: {m[1]} pinned twice"
        out[name] = m[2]
    return out


def requirements() -> list[Requirement]:
    """pyproject's [project] dependencies and the extras `make install` installs."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    named = list(project["dependencies"])
    for extra in EXTRAS:
        named += project["optional-dependencies"][extra]
    return [Requirement(r) for r in named]


def test_every_dependency_in_pyproject_is_pinned_within_its_range():
    locked = pins()
    missing = [str(r) for r in requirements() if canonicalize_name(r.name) not in locked]
    assert not missing, f"not in constraints.txt: {missing}; {FIX}"
    outside = [f"{r} (locked {locked[canonicalize_name(r.name)]})" for r in requirements()
               if not r.specifier.contains(locked[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"the lock is outside pyproject's range: {outside}; {FIX}"


def test_the_running_environment_is_the_locked_one():
    """Every pinned package installed at its pinned version (a local label such as +cpu matches, as for pip)."""
    wrong = []
    for name, pinned in sorted(pins().items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            wrong.append(f"{name}: not installed (locked {pinned})")
            continue
        if not SpecifierSet(f"=={pinned}").contains(installed, prereleases=True):
            wrong.append(f"{name}: {installed} installed, {pinned} locked")
    assert not wrong, f"{len(wrong)} package(s) differ from constraints.txt: {wrong}; {FIX}"


def test_every_install_step_reads_the_lock():
    locked = pins()
    makefile = (REPO / "Makefile").read_text()
    install = makefile.split("$(STAMP): pyproject.toml $(LOCK)", 1)[1].split("\n\n", 1)[0]
    steps = [line for line in install.splitlines() if "pip install" in line]
    assert len(steps) == 3 and all("-c $(LOCK)" in line for line in steps), install
    assert re.search(r"^LOCK := constraints\.txt$", makefile, re.MULTILINE)
    assert re.search(r"^STAMP := .*cat pyproject\.toml \$\(LOCK\)", makefile, re.MULTILINE)   # a lock change reinstalls
    assert re.findall(r"^TORCH_VERSION \?= (\S+)$", makefile, re.MULTILINE) == [locked["torch"]]

    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    installs = re.findall(r"^RUN .*\buv pip install\b.*$", dockerfile, re.MULTILINE)
    assert installs and all("-c /opt/constraints.txt" in line for line in installs), installs
    assert "COPY constraints.txt /opt/constraints.txt" in dockerfile
    assert "!constraints.txt" in (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    for arg, package in (("TORCH_VERSION", "torch"), ("RAY_VERSION", "ray")):
        assert re.findall(rf"^ARG {arg}=(\S+)$", dockerfile, re.MULTILINE) == [locked[package]], \
            f"docker/Dockerfile's {arg} must equal the lock's {package}; {FIX}"
