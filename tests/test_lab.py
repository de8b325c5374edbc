"""The notebook as a learner runs it: JupyterLab started as `make lab` starts it (scripts/lab.py), in a real
browser (Debian's Chromium, driven by playwright), Run All Cells, on the real data in fast mode; the same in
Notebook 7, which the same server shows (Lab's "Notebook" button):

- it opens on this environment's kernel, named after the project, with no dialog or prompt in the way (the
  check finds Lab's news question when a user's setting asks for it);
- every cell runs and none has an error output; a failing cell is named (shown on a copy with a broken cell);
- the figures render, each one the notebook should draw, and each live training plot is one figure, updated;
- the committed notebook is unchanged in git afterwards.

A screenshot of each finished notebook is kept in the test's tmp folder (the path is printed).
About 2.5 minutes on 2 cores: the notebook runs twice, about 40 s each.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import required
from notebook_checks import KERNEL_CELL, check_images, check_notebook

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package chromium (scripts/setup.sh test installs it)
# Headless as root; no update, sync or field-trial connections, which the test machines' closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
RUN_TIMEOUT = 900  # seconds for Run All in fast mode: about 4 minutes on 2 busy cores

UIS = ("lab/tree", "notebooks")  # where the server shows a notebook: JupyterLab, and Notebook 7 (its "Notebook" button)


def load_lab():
    """scripts/lab.py, the code `make lab` runs."""
    spec = importlib.util.spec_from_file_location("lab", ROOT / "scripts" / "lab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lab_script = load_lab()


@dataclass
class Lab:
    url: str
    token: str
    folder: Path  # Lab's root: the working copies
    git_status: str  # of notebooks/, before Lab started
    settings: Path  # the user's settings for Lab (JUPYTERLAB_SETTINGS_DIR)

    def api(self, path: str):
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def kernel(self, name: str) -> dict:
        """The kernel of notebook `name` ({} before Lab has started one)."""
        return next((s["kernel"] for s in self.api("/api/sessions") if s["path"] == name), {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "notebooks/"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def fresh_copy(folder: Path, name: str, broken_at: int | None = None) -> nbformat.NotebookNode:
    """`make lab`'s working copy as `name`, outputs cleared (a cell that does not run must not show the committed
    run's), with a last cell printing the kernel's interpreter, and a broken cell inserted at `broken_at`."""
    nb = lab_script.make_copy(folder / name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells.append(nbformat.v4.new_code_cell(KERNEL_CELL))
    if broken_at is not None:
        nb.cells.insert(broken_at, nbformat.v4.new_code_cell('raise RuntimeError("a deliberately broken cell")'))
    nbformat.write(nb, folder / name)
    return nb


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        required("playwright (pip install -e '.[test]')", e)
    if not os.access(CHROMIUM, os.X_OK):
        required("Chromium", f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh test does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, real_dataset, browser):
    """JupyterLab as `make lab` starts it, on a free loopback port with a token, in fast mode.

    Jupyter's per-user folders point into the tmp folder: the test sees what a new user sees, and leaves the
    home folder alone. The kernel imports this checkout's package.
    """
    tmp = tmp_path_factory.mktemp("lab")
    folder, home = tmp / "notebooks", tmp / "home"
    env = dict(os.environ, DROPOUT_GLUON_FAST="1", PYTHONPATH=str(ROOT), JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"))
    port, token = free_port(), secrets.token_hex(16)
    log = (tmp / "lab.log").open("w")
    command = [sys.executable, str(ROOT / "scripts" / "lab.py"), "--copy", str(folder / "dropout.ipynb"),  # make lab
               "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}"]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}", token, folder, git_status(), home / "settings")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                lab.api("/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        made = nbformat.read(folder / "dropout.ipynb", as_version=4)  # by scripts/lab.py, as make lab makes it
        assert made.metadata.kernelspec.name == lab_script.KERNEL, "make lab's copy does not name its kernel"
        yield lab
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# What the page shows, read from JupyterLab's DOM: each code cell's prompt ("[3]:", "[*]:", "[ ]:") and images
# in its outputs, dialogs and notifications (the news question is one), the kernel named in the toolbar.
DOM_CELLS = """() => Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell'))
  .map(cell => ({prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
                 images: cell.querySelectorAll('.jp-OutputArea-output img').length}))"""
DOM_DIALOGS = """() => Array.from(document.querySelectorAll('.jp-Dialog, .Toastify__toast'))
  .map(node => node.innerText.replace(/\\s+/g, ' ').trim())"""
DOM_KERNEL = """() => Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName'))
  .map(node => node.innerText.trim()).join(' ')"""


def dialogs(page) -> list[str]:
    return [f"a dialog or notification is open: {text[:200]!r}" for text in page.evaluate(DOM_DIALOGS)]


def open_notebook(browser, lab: Lab, name: str, ui: str):
    """A new page with notebook `name` open in `ui` (a URL path: UIS) on its started, idle kernel."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab.url}/{ui}/{name}?token={lab.token}")
    wait(page, lambda: lab.kernel(name).get("execution_state") == "idle" and page.evaluate(DOM_CELLS), 120,
         f"{name} did not open on an idle kernel")
    page.wait_for_timeout(3000)  # first-run prompts come once Lab has restored its layout
    return page


def run_all(browser, lab: Lab, name: str, ui: str, screenshot: Path) -> list[str]:
    """Open `name`, check that nothing stands in the way, Run All Cells (the Run menu), wait for the end and
    save; return the problems seen on the page (then check_notebook reads the saved notebook)."""
    page = open_notebook(browser, lab, name, ui)
    try:
        problems = dialogs(page)
        kernel = lab.kernel(name)
        if kernel.get("name") != lab_script.KERNEL:
            problems.append(f"the kernel is {kernel.get('name')!r}, not {lab_script.KERNEL!r}")
        shown = page.evaluate(DOM_KERNEL)
        if lab_script.DISPLAY_NAME not in shown:
            problems.append(f"the toolbar names the kernel {shown!r}, not {lab_script.DISPLAY_NAME!r}")

        page.click(".lm-MenuBar-item:has-text('Run')")
        page.click(".lm-Menu-item[data-command='runmenu:run-all']")
        started = time.monotonic()

        def prompts():
            return [cell["prompt"] for cell in page.evaluate(DOM_CELLS)]

        def finished():  # nothing running or queued on an idle kernel
            return not any("*" in p for p in prompts()) and lab.kernel(name).get("execution_state") == "idle"

        if not wait(page, lambda: any("*" in p or any(c.isdigit() for c in p) for p in prompts()), 30):
            problems.append("Run All Cells did not start")
        elif not wait(page, finished, RUN_TIMEOUT):
            running = [i for i, p in enumerate(prompts()) if "*" in p]
            problems.append(f"Run All did not finish in {RUN_TIMEOUT} s (code cells still queued: {running})")
        print(f"{name}: Run All took {time.monotonic() - started:.0f} s")
        problems += dialogs(page)
        problems += check_images(nbformat.read(lab.folder / name, as_version=4), images_on(page))

        saved = (lab.folder / name).stat().st_mtime_ns
        page.click(".lm-MenuBar-item:has-text('File')")
        page.click(".lm-Menu-item[data-command='docmanager:save']")
        if not wait(page, lambda: (lab.folder / name).stat().st_mtime_ns != saved, 60):
            problems.append(f"Lab did not save {name} when asked")
        page.screenshot(path=screenshot)
        print(f"{name}: screenshot {screenshot}")
        return problems
    finally:
        page.close()


def wait(page, condition, seconds: float, failure: str | None = None) -> bool:
    """Poll `condition` every second until it holds (True) or `seconds` pass (False, or a failure if given)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            if failure:
                pytest.fail(failure)
            return False
        page.wait_for_timeout(1000)
    return True


def images_on(page) -> list[int]:
    """How many images each code cell shows on the page."""
    return [cell["images"] for cell in page.evaluate(DOM_CELLS)]


@pytest.mark.realdata
@pytest.mark.parametrize("ui", UIS)
def test_the_notebook_runs(lab, browser, tmp_path, ui):
    name = {"lab/tree": "dropout.ipynb", "notebooks": "notebook7.ipynb"}[ui]  # dropout.ipynb: as make lab opens it
    fresh_copy(lab.folder, name)
    seen = run_all(browser, lab, name, ui, tmp_path / name.replace(".ipynb", ".png"))
    problems = check_notebook(nbformat.read(lab.folder / name, as_version=4)) + seen
    assert not problems, "\n".join(problems)
    assert git_status() == lab.git_status, "opening and running the notebook changed notebooks/"


@pytest.mark.realdata
def test_a_broken_cell_is_named(lab, browser, tmp_path):
    fresh_copy(lab.folder, "broken.ipynb", broken_at=4)  # after the imports: Run All stops there
    seen = run_all(browser, lab, "broken.ipynb", "lab/tree", tmp_path / "broken.png")
    problems = check_notebook(nbformat.read(lab.folder / "broken.ipynb", as_version=4)) + seen
    assert problems[:2] == [  # Run All stops at the failing cell: the next code cell is the first not run
        'cell 5 of 54 (`raise RuntimeError("a deliberately broken cell")`) failed: RuntimeError: a deliberately '
        'broken cell',
        "31 code cells did not run, the first cell 7 of 54 (`h = nd.arange(1, 9).reshape((1, 8))  # a fixed hidden "
        "layer `)"], "\n".join(problems)
    assert "cell 7 of 54 (`h = nd.arange(1, 9).reshape((1, 8))  # a fixed hidden layer `) shows 0 images" in problems[2]


@pytest.mark.realdata
def test_the_dialog_check_sees_the_news_question(lab, browser):
    # A user's own setting wins over make lab's overrides: set to "ask", Lab shows its news question, and the check
    # that finds no dialog in the tests above finds this one.
    user = lab.settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text(json.dumps({"fetchNews": "none"}))
    fresh_copy(lab.folder, "news.ipynb")
    page = open_notebook(browser, lab, "news.ipynb", "lab/tree")
    try:
        found = dialogs(page)
        assert len(found) == 1 and "Would you like to get notified about official Jupyter news?" in found[0], found
    finally:
        page.close()
        user.unlink()
