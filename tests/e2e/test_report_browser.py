"""The report in a real browser: headless Chromium loads it with no console error, decodes every image,
and takes a screenshot (kept in the test's tmp dir; its path is printed)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from orchestrator.gate import error_decision
from orchestrator.manifest import Manifest
from orchestrator.outputs.report import write_report
from orchestrator.spec import load_spec
from tests.unit.test_report import ACCEPT, REJECT, attempt, est, report

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium not installed (apt-get install chromium)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--hide-scrollbars"]
# Injected into a copy of the report (the report itself has no script): the title says whether every
# image decoded, and any error event (script or resource) turns it into "error:".
PROBE = """<script>
window.addEventListener('error', e => { window.__err = (e.message || 'resource ' + (e.target && e.target.tagName)); }, true);
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.title = window.__err ? 'error:' + window.__err : (bad ? 'bad:' + bad : 'ok:' + imgs.length);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"   # fresh --user-data-dir per run
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=90, check=False)


@pytest.fixture
def report_html(tmp_path) -> Path:
    root = tmp_path / "toy"
    m = Manifest.create(root, load_spec(None, ["name=toy", "concepts=[star,square,round]", f"storage_path={root}"]))
    attempt(m, 1, "star", 1, REJECT, report("star", est(0.4, 0.3, 0.5)))
    attempt(m, 1, "star", 2, ACCEPT, report("star", est(0.97, 0.93, 0.99)), grid=True)
    attempt(m, 2, "square", 1, ACCEPT, report("square", est(0.95, 0.9, 0.98), {"star": est(0.05, 0.01, 0.12, 48)}))
    attempt(m, 3, "round", 1, error_decision("erase: worker lost"), None)
    return write_report(root)


def test_report_loads_in_chromium_with_every_image_decoded(report_html, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report_html.read_text().replace("</body>", PROBE + "</body>"))
    run = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                   probed.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", run.stdout)
    assert title is not None, run.stdout[:500]
    assert title.group(1) == "ok:4", title.group(1)   # 3 plots + 1 grid, all decoded
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console


def test_report_screenshot(report_html, tmp_path):
    shot = tmp_path / "report.png"
    run = chromium(tmp_path, "--window-size=1400,3000", f"--screenshot={shot}", report_html.as_uri())
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1400, 3000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50   # tables, plots and text, not a blank page
    print(f"report screenshot: {shot}")
