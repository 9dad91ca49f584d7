"""The explorer in a real browser: JupyterLab under headless Chromium, driven by Playwright.

The test starts ``jupyter lab`` on 127.0.0.1 (a free port, a token, a scratch notebook made of the
cells of ``notebooks/10_explorer.ipynb`` tagged ``explorer``), opens the notebook in Debian's Chromium,
runs it, types a query, presses Segment, moves the slider with the keyboard and checks what renders:
the status line, the histogram and target-frame pictures, and the frame label and picture that
follow the slider. It is skipped only when Chromium is absent (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from visa_lib.paths import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Flags for Chromium on a machine with a closed network and no GPU or sandbox.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Generous waits: the toy pipeline shares 2 busy cores with the rest of the test suite.
KERNEL_WAIT_MS = 240_000
QUERY_WAIT_MS = 400_000
#: Every other wait (a widget update's round trip to the kernel, a click): Playwright's 5 s default
#: is too short on a loaded machine.
STEP_WAIT_MS = 90_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _explorer_notebook(path: Path) -> Path:
    """The cells of notebook 10 tagged ``explorer`` (set-up and the explorer), as a notebook at ``path``."""
    source = nbformat.read(REPO_ROOT / "notebooks" / "10_explorer.ipynb", as_version=4)
    cells = [c for c in source.cells if "explorer" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) >= 2, "notebook 10 must tag its set-up and explorer cells with 'explorer'"
    for cell in cells:
        cell.outputs, cell.execution_count = [], None
    scratch = nbformat.v4.new_notebook(cells=cells, metadata=source.metadata)
    nbformat.write(scratch, path)
    return path


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free local port with a token; yields ``(base_url, token)``."""
    root = tmp_path / "root"
    root.mkdir()
    _explorer_notebook(root / "explorer.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        VISA_DEVICE="cpu",
    )
    env.pop("MPLBACKEND", None)  # the kernel picks the inline backend, as for a user
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"jupyter lab did not answer: {(tmp_path / 'lab.log').read_text()[-2000:]}")
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_explorer_in_jupyterlab_types_a_query_and_scrubs(lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, token = lab
    expect.set_options(timeout=STEP_WAIT_MS)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1500, "height": 1000},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(STEP_WAIT_MS)
            page.goto(f"{base}/lab/tree/explorer.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook", timeout=KERNEL_WAIT_MS)
            # Wait for the kernel, then Run > Run All Cells (the same command as the menu entry).
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
                timeout=KERNEL_WAIT_MS,
            )
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

            query = page.locator(".visa-query input")
            query.wait_for(timeout=KERNEL_WAIT_MS)
            status = page.locator(".visa-status")
            expect(status).to_contain_text("32 frames", timeout=KERNEL_WAIT_MS)
            expect(page.locator(".visa-frame-label")).to_contain_text("frame 0 of 32")

            query.click()
            query.press_sequentially("which object appears last?")
            # the kernel echoes the query once its value arrived (widget updates are throttled)
            expect(status).to_contain_text('find "which object appears last?"', timeout=KERNEL_WAIT_MS)
            page.locator(".visa-run").click()
            expect(status).to_contain_text("target frame", timeout=QUERY_WAIT_MS)
            match = re.search(r"target frame (\d+) of 32", status.inner_text())
            assert match, status.inner_text()
            target = int(match.group(1))
            assert '"which object appears last?"' in status.inner_text()

            for name in ("histogram", "target", "frame"):  # the three pictures were drawn
                page.wait_for_function(
                    "sel => { const img = document.querySelector(sel);"
                    " return img && img.complete && img.naturalWidth > 100; }",
                    arg=f"img.visa-{name}",
                    timeout=STEP_WAIT_MS,
                )
            label = page.locator(".visa-frame-label")
            expect(label).to_contain_text(f"frame {target} of 32 (target frame)")
            before = page.locator("img.visa-frame").get_attribute("src")

            # Move the slider with the keyboard, as a user would after clicking its handle.
            handle = page.locator(".visa-slider .noUi-handle")
            handle.focus()
            step = "ArrowLeft" if target >= 3 else "ArrowRight"
            for _ in range(3):
                handle.press(step)
            moved = target - 3 if step == "ArrowLeft" else target + 3
            expect(label).to_contain_text(f"frame {moved} of 32")
            assert "(target frame)" not in label.inner_text()
            expect(page.locator("img.visa-frame")).not_to_have_attribute("src", before or "")
            page.screenshot(path=str(tmp_path / "explorer.png"))
        finally:
            context.close()
