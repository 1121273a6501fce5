"""Open a report in a real headless browser: every image decodes, no console errors.

Needs Debian's chromium (``apt-get install -y chromium``; CI installs it). Without it the
test fails on purpose, saying how to install it. Set ``ENTANGLE_SCREENSHOT=/path/shot.png``
to keep the screenshot; ``ENTANGLE_CHROMIUM`` overrides the browser binary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
    # let load handlers finish before the DOM is dumped
    "--virtual-time-budget=10000",
]

# injected into a copy of the page: records errors, then writes the image check into the DOM
PROBE = """<script>
window.__entangleErrors = [];
(function () {
  const original = console.error;
  console.error = function (...args) {
    window.__entangleErrors.push("console.error: " + args.join(" "));
    original.apply(console, args);
  };
  window.addEventListener("error", function (e) {
    const src = e.target && e.target.src ? String(e.target.src).slice(0, 80) : "";
    window.__entangleErrors.push("error: " + (e.message || ("failed to load " + src)));
  }, true);
  window.addEventListener("load", function () {
    const images = Array.from(document.images).map(function (im) {
      return {width: im.naturalWidth, complete: im.complete};
    });
    const pre = document.createElement("pre");
    pre.id = "entangle-check";
    pre.textContent = JSON.stringify({images: images, errors: window.__entangleErrors});
    document.body.appendChild(pre);
  });
})();
</script>"""


def chromium() -> str:
    exe = os.environ.get("ENTANGLE_CHROMIUM") or shutil.which("chromium")
    exe = exe or shutil.which("chromium-browser")
    if not exe:
        pytest.fail(
            "chromium not found: the report browser test needs Debian's chromium. Install it "
            "with `apt-get update && apt-get install -y chromium` (or set ENTANGLE_CHROMIUM "
            "to a chromium binary)."
        )
    return exe


def open_in_browser(page_path, workdir, screenshot=None) -> tuple[dict, list[str]]:
    """Load an instrumented copy of ``page_path``; return (image/error check, console lines)."""
    text = page_path.read_text(encoding="utf-8")
    probe_copy = workdir / "probed.html"
    probe_copy.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    cmd = [chromium(), *FLAGS, f"--user-data-dir={workdir / 'profile'}"]
    if screenshot is not None:
        cmd += [f"--screenshot={screenshot}", "--window-size=1400,3000"]
    cmd += ["--dump-dom", probe_copy.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="entangle-check">(.*?)</pre>', done.stdout, flags=re.S)
    assert found, "the page never reached its load event:\n" + done.stdout[-1000:]
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return check, console


def test_report_renders_in_headless_chromium(built_report, tmp_path):
    shot = tmp_path / "report.png"
    check, console = open_in_browser(built_report, tmp_path, screenshot=shot)
    # every figure the page embeds reached the browser (verdict-first report: 9 panels)
    embedded = built_report.read_text(encoding="utf-8").count("<img ")
    assert embedded >= 9
    assert len(check["images"]) == embedded
    assert all(im["complete"] and im["width"] > 0 for im in check["images"]), check["images"]
    assert check["errors"] == []
    assert console == []
    with Image.open(shot) as img:
        img.load()
        assert img.size == (1400, 3000)
    if os.environ.get("ENTANGLE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["ENTANGLE_SCREENSHOT"])


def test_the_browser_check_catches_broken_images_and_console_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head></head><body><img src="data:image/png;base64,AAAA">'
        '<script>console.error("boom")</script></body></html>',
        encoding="utf-8",
    )
    check, console = open_in_browser(page, tmp_path)
    assert [im["width"] for im in check["images"]] == [0]
    assert any("boom" in e for e in check["errors"])
    assert any("boom" in line for line in console)
