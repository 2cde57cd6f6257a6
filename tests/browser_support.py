"""Helpers for tests/test_browser.py: a throwaway JupyterLab server and Debian's chromium.

Nothing here touches this machine's Jupyter configuration: every server
gets fresh config, data, runtime, settings and workspace directories under
a temporary directory, listens on 127.0.0.1 on a free port with a random
token, and is always terminated by :meth:`JupyterLab.stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}

# Hang guards only (milliseconds for the browser, seconds for the server): never assertions on speed.
SERVER_START_TIMEOUT = 90.0
PAGE_TIMEOUT_MS = 60_000
KERNEL_TIMEOUT_MS = 120_000

# JupyterLab user settings for every server: render all cells (no windowing, so every
# stored output is in the DOM), and no news or update checks (no toast, no network).
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterLab:
    """A JupyterLab server in ``root`` (its notebook directory), stopped by :meth:`stop`.

    ``path`` replaces the server's (and so its kernels') PATH when given.
    """

    def __init__(self, root: Path, home: Path, *, path: str | None = None) -> None:
        self.root = root
        self.home = home
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "jupyterlab.log"
        self.env = self._environment(path)
        self._write_settings()
        self.process: subprocess.Popen[bytes] | None = None

    def _environment(self, path: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
        dirs = {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "JUPYTERLAB_SETTINGS_DIR": "settings",
            "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
            "IPYTHONDIR": "ipython",
        }
        for var, name in dirs.items():
            d = self.home / name
            d.mkdir(parents=True, exist_ok=True)
            env[var] = str(d)
        env["HOME"] = str(self.home)
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONPATH", None)
        env.pop("TINYGRAD_BP_LAYOUT", None)  # the library picks its layout program as on a learner's machine
        if path is not None:
            env["PATH"] = path
        return env

    def _write_settings(self) -> None:
        # No news feed, no update check: nothing leaves 127.0.0.1.
        config = {
            "LabApp": {
                "news_url": None,
                "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
                "extension_manager": "readonly",
            }
        }
        (self.home / "config" / "jupyter_server_config.json").write_text(json.dumps(config), encoding="utf-8")
        settings = self.home / "settings"
        for name, value in LAB_SETTINGS.items():
            target = settings / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(value), encoding="utf-8")

    def start(self) -> JupyterLab:
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.open_browser=False",
            "--NotebookNotary.db_file=:memory:",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                msg = f"JupyterLab exited with {self.process.returncode}:\n{self.log()}"
                raise RuntimeError(msg)
            try:
                with self._open("/api/status", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                msg = f"JupyterLab did not answer within {SERVER_START_TIMEOUT} s:\n{self.log()}"
                raise RuntimeError(msg)
            time.sleep(0.25)
        return self

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}&reset"

    def api(self, path: str) -> Any:
        with self._open(path, timeout=10) as r:
            return json.loads(r.read())

    def _open(self, path: str, *, timeout: float, method: str = "GET") -> Any:
        """An HTTP request to the server (always http://127.0.0.1), authenticated by the token."""
        headers = {"Authorization": f"token {self.token}"}
        request = urllib.request.Request(f"{self.base}{path}", method=method, headers=headers)  # noqa: S310
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - always http://127.0.0.1

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]
        except OSError:
            return ""

    def _shutdown_kernels(self) -> None:
        """Ask the server to shut its kernels down (SIGTERM does too; this is belt and braces)."""
        try:
            kernels = self.api("/api/kernels")
        except (urllib.error.URLError, OSError, ValueError):
            return
        for kernel in kernels:
            with contextlib.suppress(urllib.error.URLError, OSError):
                self._open(f"/api/kernels/{kernel['id']}", timeout=10, method="DELETE").close()

    def stop(self) -> None:
        """Shut down the kernels and terminate the server (its whole process group)."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            self._shutdown_kernels()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Kernels started by the server share its process group; make sure none is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def jupyterlab(root: Path, home: Path, *, path: str | None = None) -> Iterator[JupyterLab]:
    """A started JupyterLab (see :class:`JupyterLab`), always stopped on leaving."""
    for attempt in range(3):
        server = JupyterLab(root, home, path=path)
        try:
            server.start()
            break
        except RuntimeError:
            # The free port found may have been taken before the server bound it: try another.
            if attempt == 2 or "already in use" not in server.log():
                raise
    try:
        yield server
    finally:
        server.stop()


def launch_chromium(playwright: Any, executable: str = CHROMIUM) -> Any:
    """Debian's chromium, headless, on a fresh temporary profile (Playwright makes one per launch).

    Scrollbars stay visible (Playwright hides them in headless mode by default), so the
    screenshots show what a learner sees.
    """
    return playwright.chromium.launch(
        executable_path=executable,
        headless=True,
        args=CHROMIUM_ARGS,
        ignore_default_args=["--hide-scrollbars"],
    )


def guard_network(context: Any, allowed: tuple[str, ...]) -> list[str]:
    """Abort every request of ``context`` whose URL starts with none of ``allowed``; return their list.

    The pattern is a regular expression matched by Playwright itself, so allowed requests
    (JupyterLab loads hundreds) never make a round trip through Python.
    """
    blocked: list[str] = []
    others = re.compile("^(?!" + "|".join(re.escape(prefix) for prefix in allowed) + ")")

    def abort(route: Any) -> None:
        blocked.append(route.request.url)
        route.abort()

    context.route(others, abort)
    context.on("websocket", lambda ws: None if ws.url.startswith(allowed) else blocked.append(ws.url))
    return blocked


def summary(latencies_ms: list[float]) -> str:
    if not latencies_ms:
        return "no clicks measured"
    return (
        f"{len(latencies_ms)} clicks, median {statistics.median(latencies_ms):.1f} ms, "
        f"max {max(latencies_ms):.1f} ms"
    )


def stored_graph_images(notebook: Mapping[str, Any]) -> tuple[int, int]:
    """(outputs, pictures): how many stored outputs of a notebook's JSON carry tinygrad_bp graph
    ``<img alt="tinygrad_bp graph ...">`` in their text/html, and how many such pictures they hold
    (a stepper's stored stand-in holds two: the step's view and the overview)."""
    outputs = pictures = 0
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html")
            if html is None:
                continue
            text = html if isinstance(html, str) else "".join(html)
            found = text.count('alt="tinygrad_bp graph')
            if found:
                outputs += 1
                pictures += found
    return outputs, pictures


# --- in-page JavaScript --------------------------------------------------------------------------

# Every tinygrad_bp graph picture on the page, measured. shownWidth: how much of its width is
# in view without scrolling inside its output (clipped by the scrolling boxes around it, up to
# the output area; the notebook's own vertical scrolling does not count).
GRAPH_IMAGES_JS = """() => [...document.querySelectorAll('img[alt^="tinygrad_bp graph"]')].map(img => {
    const r = img.getBoundingClientRect();
    let left = r.left, right = r.right;
    const stop = img.closest('.jp-OutputArea-output') || document.body;
    for (let el = img.parentElement; el && el !== stop.parentElement; el = el.parentElement) {
        const cs = getComputedStyle(el);
        if (cs.overflowX === 'visible' || cs.display === 'inline' || cs.display === 'contents') continue;
        const b = el.getBoundingClientRect(), l = b.left + el.clientLeft;
        left = Math.max(left, l); right = Math.min(right, l + el.clientWidth);
    }
    return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
            naturalHeight: img.naturalHeight, width: r.width, height: r.height,
            shownWidth: Math.max(0, right - left), src: (img.getAttribute('src') || '').slice(0, 40)};
})"""

IMAGES_LOADED_JS = """() => [...document.querySelectorAll('img[alt^="tinygrad_bp graph"]')]
    .every(img => img.complete)"""

# The text of every output area, with the mime type JupyterLab rendered it as.
OUTPUT_TEXTS_JS = """() => [...document.querySelectorAll('.jp-OutputArea-output')].map(o => ({
    mime: o.getAttribute('data-mime-type') || '', text: o.innerText || ''}))"""

# Arm a watcher on the stepper root: the time of the next click (event.timeStamp) and of the
# first DOM change after which the counter's text differs from now.
ARM_WATCH_JS = """(root) => {
    const counterText = () => { const c = root.querySelector('.tgbp-counter'); return c ? c.textContent : null; };
    const w = {before: counterText(), clickAt: null, changedAt: null, text: null};
    window.__tgbpWatch = w;
    const onClick = (e) => { if (w.clickAt === null) w.clickAt = e.timeStamp; };
    window.addEventListener('click', onClick, {capture: true, once: true});
    const onKey = (e) => { if (w.clickAt === null) w.clickAt = e.timeStamp; };
    window.addEventListener('keydown', onKey, {capture: true, once: true});
    const check = () => {
        const t = counterText();
        if (w.changedAt === null && t !== w.before) {
            w.changedAt = performance.now(); w.text = t; obs.disconnect();
        }
    };
    const obs = new MutationObserver(check);
    obs.observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
}"""

WATCH_DONE_JS = "() => window.__tgbpWatch && window.__tgbpWatch.changedAt !== null"
WATCH_RESULT_JS = "() => window.__tgbpWatch"

# Resolve once the subtree of root has had no mutation for quietMs (or after maxMs).
QUIET_JS = """([root, quietMs, maxMs]) => new Promise(resolve => {
    const start = performance.now();
    let timer = null;
    const done = () => { obs.disconnect(); clearInterval(guard); resolve(performance.now() - start); };
    const obs = new MutationObserver(() => { clearTimeout(timer); timer = setTimeout(done, quietMs); });
    obs.observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
    timer = setTimeout(done, quietMs);
    const guard = setInterval(() => { if (performance.now() - start > maxMs) done(); }, 50);
})"""

# Where the highlighted node is: its box, the view pane's client box, the visible area (view pane,
# every clipping ancestor and the viewport intersected), the heights of its texts, the counter,
# and the slider's readout if there is one.
STEPPER_STATE_JS = """(root) => {
    const box = r => ({left: r.left, top: r.top, right: r.right, bottom: r.bottom,
                       width: r.right - r.left, height: r.bottom - r.top});
    const clientBox = el => {
        const r = el.getBoundingClientRect();
        const left = r.left + el.clientLeft, top = r.top + el.clientTop;
        return box({left, top, right: left + el.clientWidth, bottom: top + el.clientHeight});
    };
    const counter = root.querySelector('.tgbp-counter');
    const view = root.querySelector('.tgbp-view');
    const svg = view ? view.querySelector('svg') : null;
    const current = view ? view.querySelector('svg .tgbp-current') : null;
    const readout = root.querySelector('.widget-readout');
    const state = {counter: counter ? counter.textContent : null, readout: readout ? readout.textContent.trim() : null,
                   hasView: !!view, hasSvg: !!svg, hasCurrent: !!current,
                   currentCount: view ? view.querySelectorAll('.tgbp-current').length : 0,
                   viewport: box({left: 0, top: 0, right: window.innerWidth, bottom: window.innerHeight})};
    if (!view || !current) return state;
    state.view = clientBox(view);
    state.viewScroll = {left: view.scrollLeft, top: view.scrollTop, width: view.scrollWidth, height: view.scrollHeight};
    let visible = {...state.view};
    const clip = (b) => { visible = box({left: Math.max(visible.left, b.left), top: Math.max(visible.top, b.top),
                                         right: Math.min(visible.right, b.right), bottom: Math.min(visible.bottom, b.bottom)}); };
    state.clippers = [];
    for (let el = view.parentElement; el && el !== document.body && el !== document.documentElement; el = el.parentElement) {
        const cs = getComputedStyle(el);
        // (The body's overflow applies to the viewport, clipped below.) Inline boxes and display:contents never clip; each axis clips only if its overflow does.
        if (cs.display === 'inline' || cs.display === 'contents') continue;
        const clipsX = cs.overflowX !== 'visible', clipsY = cs.overflowY !== 'visible';
        if (!clipsX && !clipsY) continue;
        const b = clientBox(el);
        state.clippers.push({tag: el.tagName.toLowerCase(), cls: String(el.className).slice(0, 80), clipsX, clipsY, box: b});
        clip(box({left: clipsX ? b.left : -Infinity, right: clipsX ? b.right : Infinity,
                  top: clipsY ? b.top : -Infinity, bottom: clipsY ? b.bottom : Infinity}));
    }
    clip(state.viewport);
    state.visible = visible;
    state.current = box(current.getBoundingClientRect());
    state.currentId = current.getAttribute('id');
    state.currentTitle = (current.querySelector('title') || {}).textContent || null;
    state.textHeights = [...current.querySelectorAll('text')].map(t => t.getBoundingClientRect().height);
    const c = state.current, v = visible, tol = 1;
    state.inView = c.left >= state.view.left - tol && c.right <= state.view.right + tol &&
                   c.top >= state.view.top - tol && c.bottom <= state.view.bottom + tol;
    state.inViewport = c.left >= -tol && c.top >= -tol && c.right <= window.innerWidth + tol && c.bottom <= window.innerHeight + tol;
    state.inVisible = c.left >= v.left - tol && c.right <= v.right + tol && c.top >= v.top - tol && c.bottom <= v.bottom + tol;
    return state;
}"""

# Wait (polling, at most ms) until the highlighted node is in the visible area; never fails
# (the state read afterwards says what is wrong). Lets a scroll after the counter's change finish.
WAIT_VISIBLE_JS = (
    "([root, ms]) => new Promise(resolve => { const state = ("
    + STEPPER_STATE_JS
    + "); const start = performance.now(); const tick = () => { const s = state(root);"
    " if ((s.inView && s.inViewport && s.inVisible) || performance.now() - start > ms) resolve();"
    " else setTimeout(tick, 25); }; tick(); })"
)


def trimmed_html(html: str, limit: int = 3000) -> str:
    """Markup for a failure message: base64 payloads and long svg bodies shortened."""
    html = re.sub(r"base64,[A-Za-z0-9+/=]{40,}", "base64,...", html)
    html = re.sub(r"(<svg\b[^>]*>).*?(</svg>)", r"\1...\2", html, flags=re.DOTALL)
    return html if len(html) <= limit else html[:limit] + f"... ({len(html)} chars)"
