"""The documentation stays valid: docs/ builds with `mkdocs build --strict` (every page in the nav, every link and
heading it points to present), and the README stays a user's page (short, its relative links resolve)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
README_MAX_LINES = 300
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")   # markdown [text](target) and ![alt](target)


def build(docs_root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=docs_root, capture_output=True, text=True, timeout=300, check=False)


def test_mkdocs_builds_strict_and_the_readme_anchors_into_it_exist(tmp_path):
    site = tmp_path / "site"
    result = build(REPO, site)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (site / "index.html").is_file()
    # README.md lies outside docs/, so mkdocs does not see its links: check its docs/<page>.md#<heading> ones here.
    missing = []
    for target in readme_links():
        page, _, anchor = target.partition("#")
        if page.startswith("docs/") and page.endswith(".md") and anchor:
            html = site / page[len("docs/"):-len(".md")] / "index.html"
            if not html.is_file() or f'id="{anchor}"' not in html.read_text():
                missing.append(target)
    assert not missing, f"README.md links to headings the docs do not have: {missing}"


def test_a_link_to_a_missing_page_fails_the_build(tmp_path):
    """The check above has teeth: a copy of the docs with one dead link does not build."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\n[gone](no-such-page.md)\n")
    result = build(tmp_path, tmp_path / "site")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "no-such-page.md" in result.stdout + result.stderr


def readme_prose() -> str:
    """README.md without its fenced code blocks (they hold no links or headings)."""
    return re.sub(r"```.*?```", "", README.read_text(), flags=re.DOTALL)


def readme_links() -> list[str]:
    return LINK.findall(readme_prose())


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped but - and _, spaces to -."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_readme_is_at_most_300_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, \
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail to a page under docs/"


def test_readme_relative_links_point_to_existing_files():
    relative = [t for t in readme_links() if not t.startswith(("http://", "https://", "mailto:", "#"))]
    assert relative, "README.md links to no page under docs/"
    missing = [t for t in relative if not (REPO / t.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_anchor_links_point_to_its_headings():
    headings = {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", readme_prose(), flags=re.MULTILINE)}
    missing = [t for t in readme_links() if t.startswith("#") and t[1:] not in headings]
    assert not missing, f"README.md links to missing headings: {missing}"
