"""The notebooks and the step-through page as a learner sees them, in a real browser.

Playwright (sync API) drives Debian's chromium (never 'playwright install');
JupyterLab from PyPI is started by the tests on 127.0.0.1, on a free port
with a token, in a temporary directory with fresh Jupyter config, data and
settings directories (so the notebooks open untrusted, as from a fresh
clone), and is always stopped at the end.

1. notebooks 00 and 02, opened without running them, show every stored graph
   as a picture of real size (loaded, not shrunk, and not squeezed into a
   much narrower box) and none as text;
2. notebook 02, run, has steppers whose highlighted node stays in the
   visible area, with legible text, after every click;
3. a kernel without Graphviz's ``dot`` on PATH still draws a picture (the
   library lays it out with graphviz-pure);
4. the standalone step-through page (``Stepper(y).to_html(path)``) steps
   forwards and backwards with its buttons and the arrow keys, offline.

Click latencies are printed, never asserted (machines are shared and
noisy); every timeout is a hang guard only. Screenshots go to
$TINYGRAD_BP_SCREENSHOTS if set, else to a pytest temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    ARM_WATCH_JS,
    GRAPH_IMAGES_JS,
    IMAGES_LOADED_JS,
    KERNEL_TIMEOUT_MS,
    OUTPUT_TEXTS_JS,
    PAGE_TIMEOUT_MS,
    QUIET_JS,
    STEPPER_STATE_JS,
    VIEWPORT,
    WAIT_VISIBLE_JS,
    WATCH_DONE_JS,
    WATCH_RESULT_JS,
    guard_network,
    jupyterlab,
    launch_chromium,
    stored_graph_images,
    summary,
    trimmed_html,
)
from conftest import _missing

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
QUICKSTART = "00_quickstart.ipynb"
WORKED_EXAMPLE = "02_worked_example.ipynb"

# DOT or SVG that reached the page as text: an edge between node ids ("v0->v2_op", as an SVG
# <title> reads once its markup is stripped), markup itself, or a widget's text/plain stand-in.
LEFTOVERS = [
    re.compile(r"\b[vg]\d+(?:_op)?\s*(?:->|&#45;&gt;|-&gt;)\s*[vg]\d+"),
    re.compile(r"VBox\(children="),
    re.compile(r"<svg\b|</svg>|<g\b|\bdigraph\b"),
    re.compile(r"data:image/svg\+xml"),
]
COUNTER = re.compile(r"step\s+(\d+)\s+of\s+(\d+)")

# DOM updates after a click are taken as finished when the widget has been quiet this long.
QUIET_MS = 100
SETTLE_MAX_MS = 10_000
VISIBLE_TIMEOUT_MS = 5_000


# --- fixtures ------------------------------------------------------------------------------------


def require_jupyterlab() -> Any:
    """nbformat, once JupyterLab is known to be installed; skips (or fails in CI) without them."""
    try:
        import jupyterlab  # noqa: F401
        import nbformat
    except ImportError:
        _missing("JupyterLab is not installed (pip install -e '.[test]')")
    return nbformat


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("TINYGRAD_BP_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    (path / "latencies.txt").write_text("", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, chromium)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """JupyterLab serving fresh copies of notebooks 00 and 02 (and a second copy of 02, to run)."""
    require_jupyterlab()
    base = tmp_path_factory.mktemp("lab")
    root = base / "clone"
    (root / "run").mkdir(parents=True)
    for name in (QUICKSTART, WORKED_EXAMPLE):
        shutil.copyfile(NOTEBOOKS / name, root / name)
    shutil.copyfile(NOTEBOOKS / WORKED_EXAMPLE, root / "run" / WORKED_EXAMPLE)
    with jupyterlab(root, base / "home") as server:
        yield server


@pytest.fixture
def page(browser: Any, lab: Any) -> Iterator[Any]:
    """A fresh browser context's page that can reach only the JupyterLab server."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.blocked = guard_network(context, local_to(lab))
    try:
        yield page
    finally:
        context.close()


def local_to(server: Any) -> tuple[str, ...]:
    """The URL prefixes a page of ``server`` may reach: the server itself, and inline data."""
    return (f"{server.base}/", f"ws://127.0.0.1:{server.port}/", "data:", "blob:")


def report(capsys: pytest.CaptureFixture[str], screenshots: Path, line: str) -> None:
    """Print a measurement past pytest's capture, and keep it beside the screenshots."""
    with capsys.disabled():
        print(f"\n[browser] {line}")  # noqa: T201 - the measurements are printed, never asserted
    with (screenshots / "latencies.txt").open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def note_blocked(
    capsys: pytest.CaptureFixture[str], screenshots: Path, where: str, blocked: list[str]
) -> None:
    """Say which requests beyond 127.0.0.1 JupyterLab tried (they were aborted; not the library's doing)."""
    if blocked:
        report(
            capsys, screenshots, f"{where}: aborted requests beyond the local server: {sorted(set(blocked))}"
        )


# --- JupyterLab helpers ------------------------------------------------------------------------------


def open_notebook(page: Any, server: Any, name: str) -> dict[str, Any]:
    """Open ``name`` in JupyterLab; wait until every cell is in the DOM. Returns its JSON."""
    notebook = json.loads((server.root / name).read_text(encoding="utf-8"))
    page.goto(server.url(name))
    cells = len(notebook["cells"])
    page.wait_for_function(
        f"() => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').length >= {cells}",
        timeout=PAGE_TIMEOUT_MS,
    )
    return notebook


def assert_untrusted(server: Any, name: str) -> None:
    """The server reports every code cell of ``name`` as untrusted (the notary has never seen it)."""
    model = server.api(f"/api/contents/{name}")
    trusted = [c["metadata"].get("trusted") for c in model["content"]["cells"] if c["cell_type"] == "code"]
    assert trusted, f"{name}: the server lists no code cells"
    assert all(t is False for t in trusted), f"{name} should open untrusted, as from a fresh clone: {trusted}"


def graph_images(page: Any) -> list[dict[str, Any]]:
    page.wait_for_function(IMAGES_LOADED_JS, timeout=PAGE_TIMEOUT_MS)
    return page.evaluate(GRAPH_IMAGES_JS)


def text_leftovers(page: Any) -> list[str]:
    """Output areas whose text shows DOT, SVG or a widget's text stand-in."""
    found = []
    for output in page.evaluate(OUTPUT_TEXTS_JS):
        for pattern in LEFTOVERS:
            match = pattern.search(output["text"])
            if match:
                start = max(match.start() - 60, 0)
                found.append(f"[{output['mime']}] ...{output['text'][start : match.end() + 60]!r}...")
                break
    return found


def assert_pictures(images: list[dict[str, Any]], expected: int, where: str) -> None:
    """As many graph pictures in the page as ``expected`` (> 0), each loaded and of a real size."""
    assert expected > 0, (
        f"{where}: the stored notebook has no output whose text/html carries "
        '<img alt="tinygrad_bp graph ..."> (rebuild the notebooks with the new display)'
    )
    assert len(images) == expected, (
        f"{where}: {len(images)} graph pictures in the page, {expected} expected: {images}"
    )
    small = [
        img for img in images if not (img["naturalWidth"] > 50 and img["width"] > 50 and img["height"] > 20)
    ]
    assert not small, f"{where}: graph pictures not shown at a real size: {small}"
    # A picture of real size seen through a keyhole is not shown either: at least half of its
    # width (or 400 px of it) must be in view before any scrolling inside the output.
    keyholes = [
        {key: img[key] for key in ("alt", "width", "shownWidth")}
        for img in images
        if img["shownWidth"] < min(img["width"] / 2, 400)
    ]
    assert not keyholes, (
        f"{where}: graph pictures squeezed into a box much narrower than they are "
        f"(shownWidth px of width px in view): {keyholes}"
    )


def run_all(page: Any, notebook: dict[str, Any]) -> None:
    """Run > Run All Cells, and wait until the last code cell ran on the fresh kernel (or one failed)."""
    # Empty code cells do not run and get no execution count.
    code_cells = sum(
        1 for c in notebook["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()
    )
    # Wait for the kernel to be up (a hang guard against one that never starts).
    page.wait_for_function(
        """() => { const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelStatus, '
                    + '.jp-NotebookPanel:not(.lm-mod-hidden) [data-jp-item-name="kernelStatus"]');
                   const bar = [...document.querySelectorAll('.jp-StatusBar-TextItem')].map(e => e.textContent).join(' ');
                   return /Idle/.test(bar) || (s && /Idle/i.test(s.getAttribute('title') || s.textContent || '')); }""",
        timeout=KERNEL_TIMEOUT_MS,
    )
    # Stored execution counts could pass for fresh ones: clear every output (and count) first.
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Edit$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Clear Outputs of All Cells$")).click()
    page.wait_for_function(
        "() => !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')",
        timeout=PAGE_TIMEOUT_MS,
    )
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(
        f"""() => {{
            const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
            if (panel.querySelector('[data-mime-type="application/vnd.jupyter.error"]')) return true;
            const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                .map(p => p.textContent.trim()).filter(p => p !== '[ ]:' && p !== '');
            return prompts.length === {code_cells} && prompts[prompts.length - 1] === '[{code_cells}]:'
                && !prompts.includes('[*]:');
        }}""",
        timeout=KERNEL_TIMEOUT_MS,
        polling=250,
    )
    errors = page.locator(
        '.jp-NotebookPanel:not(.lm-mod-hidden) [data-mime-type="application/vnd.jupyter.error"]'
    )
    if errors.count():
        pytest.fail(f"a cell failed when the notebook ran:\n{errors.first.inner_text()[:3000]}")


# --- stepping ------------------------------------------------------------------------------------


def step_once(page: Any, root: Any, action: Any) -> tuple[float, str]:
    """Do ``action`` (a click or a key press); return (ms from it to the counter changing, new text)."""
    handle = root.element_handle()
    page.evaluate(ARM_WATCH_JS, handle)
    action()
    page.wait_for_function(WATCH_DONE_JS, timeout=PAGE_TIMEOUT_MS)
    watch = page.evaluate(WATCH_RESULT_JS)
    page.evaluate(QUIET_JS, [handle, QUIET_MS, SETTLE_MAX_MS])
    clicked = watch["clickAt"] if watch["clickAt"] is not None else watch["changedAt"]
    return watch["changedAt"] - clicked, watch["text"]


def counter(text: str | None) -> tuple[int, int]:
    match = COUNTER.search(text or "")
    assert match, f"the step counter .tgbp-counter should read 'step k of N: ...', not {text!r}"
    return int(match.group(1)), int(match.group(2))


def check_step(page: Any, root: Any, expected: int, *, slider: bool, where: str) -> dict[str, Any]:
    """The counter shows step ``expected``; the highlighted node is visible and its text legible."""
    handle = root.element_handle()
    page.evaluate(WAIT_VISIBLE_JS, [handle, VISIBLE_TIMEOUT_MS])
    state = page.evaluate(STEPPER_STATE_JS, handle)
    k, _ = counter(state["counter"])
    assert k == expected, f"{where}: the counter reads {state['counter']!r}, expected step {expected}"
    if slider:
        assert state["readout"] == str(k), (
            f"{where}: the slider's readout {state['readout']!r} should show the counter's step {k}"
        )
    assert state["hasCurrent"], (
        f"{where}: no <g class='tgbp-current'> inside an svg inside .tgbp-view "
        f"(view {state['hasView']}, svg {state['hasSvg']}); the stepper's DOM:\n"
        f"{trimmed_html(root.inner_html())}"
    )
    geometry = {
        key: state.get(key)
        for key in ("current", "view", "visible", "viewScroll", "viewport", "currentTitle", "clippers")
    }
    assert state["inView"], f"{where}: the highlighted node lies outside the .tgbp-view pane: {geometry}"
    assert state["inViewport"], (
        f"{where}: the highlighted node lies outside the browser's viewport: {geometry}"
    )
    assert state["inVisible"], f"{where}: the highlighted node is clipped by a scrolling ancestor: {geometry}"
    heights = state["textHeights"]
    assert heights, f"{where}: the highlighted node has no <text>"
    assert min(heights) >= 9, (
        f"{where}: the highlighted node's text renders {heights} CSS px tall (at least 9 wanted)"
    )
    return state


def walk_steps(
    page: Any,
    root: Any,
    next_step: Any,
    previous_step: Any,
    *,
    slider: bool,
    where: str,
    screenshot: tuple[int, Any] | None = None,
    limit: int | None = None,
) -> tuple[list[float], int]:
    """Step from the first step to the last (or to step ``limit``) with ``next_step``, then back 3."""
    k, total = counter(root.locator(".tgbp-counter").first.text_content())
    assert k == 1, f"{where}: the stepper should start at step 1, not {k}"
    check_step(page, root, 1, slider=slider, where=f"{where}, step 1")
    latencies = []
    last = total if limit is None else min(total, limit)
    for expected in range(2, last + 1):
        ms, text = step_once(page, root, next_step)
        latencies.append(ms)
        check_step(
            page, root, expected, slider=slider, where=f"{where}, 'next' to step {expected} ({text!r})"
        )
        if screenshot is not None and expected == screenshot[0]:
            screenshot[1]()
    for expected in range(last - 1, max(last - 4, 0), -1):
        step_once(page, root, previous_step)
        check_step(page, root, expected, slider=slider, where=f"{where}, 'previous' to step {expected}")
    return latencies, total


# --- 1. stored graphs, unrun -----------------------------------------------------------------------


@pytest.mark.parametrize("name", [QUICKSTART, WORKED_EXAMPLE])
def test_stored_graphs_show_as_pictures_unrun(name, lab, page, screenshots, capsys):
    notebook = open_notebook(page, lab, name)
    assert_untrusted(lab, name)
    outputs, expected = stored_graph_images(notebook)
    images = graph_images(page)
    leftovers = text_leftovers(page)
    stem = Path(name).stem
    if name == QUICKSTART:
        page.screenshot(path=str(screenshots / f"{stem}_unrun.png"))  # as it opens
    # The cell of the first graph at the top of the notebook, the picture's left edge in view.
    scroll_to_cell_of(first_graph_output(page, notebook))
    page.screenshot(path=str(screenshots / f"{stem}_unrun{'_first_graph' if name == QUICKSTART else ''}.png"))
    stand_in = page.locator('img[alt^="tinygrad_bp graph: step"]')
    if stand_in.count():  # a stepper's stored stand-in (the picture of its first step)
        scroll_to_cell_of(stand_in.first)
        page.screenshot(path=str(screenshots / f"{stem}_unrun_stepper.png"))
    problems = []
    try:
        assert_pictures(images, expected, f"{name} (unrun, untrusted)")
    except AssertionError as error:
        problems.append(str(error).split("\nassert")[0])
    if leftovers:
        problems.append(f"{name} (unrun): outputs shown as text instead of pictures: {leftovers}")
    note_blocked(capsys, screenshots, f"{name} unrun", page.blocked)
    assert not problems, "\n".join(problems) + (
        f"\n{outputs} stored outputs hold {expected} graph pictures; graph-like outputs: {stored_outputs(notebook)}"
    )


def scroll_to_cell_of(element: Any) -> None:
    """Scroll ``element``'s cell to the top of the notebook, and ``element``'s left edge into view."""
    element.evaluate(
        "el => { el.scrollIntoView({block: 'start', inline: 'start'});"
        " el.closest('.jp-Cell').scrollIntoView({block: 'start'}); }"
    )


def first_graph_output(page: Any, notebook: dict[str, Any]) -> Any:
    """The first graph picture on the page, or else the output area of the first cell storing a graph."""
    images = page.locator('img[alt^="tinygrad_bp graph"]')
    if images.count():
        return images.first
    for i, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            if "image/svg+xml" in output.get("data", {}):
                return page.locator(".jp-Notebook .jp-Cell").nth(i).locator(".jp-OutputArea")
    return page.locator(".jp-Notebook .jp-Cell").first


def stored_outputs(notebook: dict[str, Any]) -> list[str]:
    """For each stored output that looks like a graph or a widget: its cell and mime types."""
    found = []
    for i, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            html = data.get("text/html", "")
            html = html if isinstance(html, str) else "".join(html)
            if (
                "image/svg+xml" in data
                or "application/vnd.jupyter.widget-view+json" in data
                or "<img" in html
            ):
                found.append(f"cell {i}: {sorted(data)}")
    return found


# --- 2. the stepper in notebook 02, run ----------------------------------------------------------------


def test_notebook_stepper_keeps_the_current_node_in_view(lab, page, screenshots, capsys):
    name = f"run/{WORKED_EXAMPLE}"
    notebook = open_notebook(page, lab, name)
    run_all(page, notebook)
    assert not text_leftovers(page), f"{name} (run): outputs shown as text: {text_leftovers(page)}"
    assert graph_images(page), f"{name} (run): no graph picture"
    # The worked example's stepper, all the way; then the big graph's (section "A graph too big
    # to draw whole"), if the notebook has it.
    walks = [("stepper.widget()", None, (4, "02_stepper_after_clicks.png"))]
    if any("".join(c["source"]).strip() == "big_stepper.widget()" for c in notebook["cells"]):
        walks.append(("big_stepper.widget()", None, (6, "02_big_stepper_after_clicks.png")))
    for source, limit, (at, filename) in walks:
        root = stepper_root(page, source)
        root.scroll_into_view_if_needed()
        next_button = root.locator("button").filter(has_text=re.compile(r"^\s*next\s*$"))
        previous_button = root.locator("button").filter(has_text=re.compile(r"^\s*previous\s*$"))
        assert next_button.count() == 1, f"{source}: the stepper should have one button 'next'"
        assert previous_button.count() == 1, f"{source}: the stepper should have one button 'previous'"

        def shot(filename: str = filename) -> None:
            page.screenshot(path=str(screenshots / filename))

        latencies, total = walk_steps(
            page,
            root,
            next_button.click,
            previous_button.click,
            slider=True,
            where=f"{name}, {source}",
            screenshot=(at, shot),
            limit=limit,
        )
        report(
            capsys,
            screenshots,
            f"notebook {source} ({total} steps): click 'next' -> counter changes: {summary(latencies)}",
        )
    note_blocked(capsys, screenshots, f"{name} run", page.blocked)
    assert not page.errors, f"JavaScript errors in JupyterLab: {page.errors}"


def stepper_root(page: Any, source: str) -> Any:
    """The live stepper widget shown by the code cell whose whole source is ``source``."""
    exact = re.compile(rf"^\s*{re.escape(source)}\s*$")
    cells = page.locator(".jp-CodeCell").filter(has=page.locator(".jp-InputArea .cm-content", has_text=exact))
    assert cells.count() == 1, f"expected one cell {source!r}, found {cells.count()}"
    roots = cells.first.locator(".jp-OutputArea .tinygrad-bp-stepper").filter(
        has=page.locator(".tgbp-counter")
    )
    assert roots.count() == 1, (
        f"{source}: expected one live stepper widget (.tinygrad-bp-stepper with a .tgbp-counter) "
        f"in its output, found {roots.count()}; the output:\n"
        + trimmed_html(cells.first.locator(".jp-OutputArea").inner_html())
    )
    return roots.first


# --- 3. a kernel without Graphviz's dot ------------------------------------------------------------


def test_graph_renders_in_a_kernel_without_system_dot(browser, tmp_path, screenshots, capsys):
    nbformat = require_jupyterlab()

    venv_bin = str(Path(sys.executable).parent)
    assert shutil.which("dot", path=venv_bin) is None, f"{venv_bin} holds a 'dot'; the test needs it absent"
    root = tmp_path / "nodot"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import os, shutil\nfrom tinygrad_bp import layout\n\n"
            'print("dot on PATH:", shutil.which("dot"))\nprint("PATH:", os.environ["PATH"])\n'
            'print("layout program:", layout.find_program())'
        ),
        nbformat.v4.new_code_cell(
            "from tinygrad_bp import Value\nfrom tinygrad_bp.viz import show\n\n"
            'a = Value(2.0, label="a")\nb = Value(-3.0, label="b")\n'
            'y = (a * b + a.exp()).tanh()\ny.label = "y"\ny.backward()\nshow(y)'
        ),
    ]
    nbformat.write(nb, root / "nodot.ipynb")
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        with jupyterlab(root, tmp_path / "home", path=venv_bin) as server:
            blocked = guard_network(context, local_to(server))
            page = context.new_page()
            notebook = open_notebook(page, server, "nodot.ipynb")
            run_all(page, notebook)
            first = page.locator(".jp-CodeCell").first.locator(".jp-OutputArea").inner_text()
            assert "dot on PATH: None" in first, f"the kernel should not find dot: {first!r}"
            program = re.search(r"layout program: (.*)", first)
            assert program, f"the kernel should print its layout program: {first!r}"
            assert "graphviz-pure" in program.group(1), f"graphviz-pure should lay out: {first!r}"
            images = graph_images(page)
            page.screenshot(path=str(screenshots / "nodot_notebook.png"))
            outputs = page.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea").inner_html()
            assert images, f"no graph picture without system dot; the cell's output:\n{trimmed_html(outputs)}"
            assert_pictures(images, 1, "the notebook without system dot")
            assert not text_leftovers(page), f"outputs shown as text: {text_leftovers(page)}"
            note_blocked(capsys, screenshots, "notebook without dot", blocked)
    finally:
        context.close()


# --- 4. the standalone step-through page --------------------------------------------------------------


def small_graph() -> Any:
    from tinygrad_bp import Value

    a = Value(2.0, label="a")
    b = Value(-3.0, label="b")
    y = (a * b + a.exp()).tanh()
    y.label = "y"
    return y


def worked_example_error() -> Any:
    from tinygrad_bp import worked_example as we

    _, error = we.build().forward()
    return error


@pytest.mark.parametrize("graph", [small_graph, worked_example_error], ids=["small", "worked_example"])
def test_standalone_page_steps_offline(graph, browser, tmp_path, screenshots, capsys):
    from tinygrad_bp.stepper import Stepper

    path = tmp_path / "stepper.html"
    Stepper(graph()).to_html(path)
    assert path.is_file(), "Stepper(y).to_html(path) should write the page"
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    blocked = guard_network(context, ("file://", "data:"))
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.as_uri())
        root = page.locator("body")
        first = page.locator(".tgbp-counter").first.text_content()
        start = re.match(r"^\s*step 1 of (\d+): forward 1/(\d+)", first or "")
        assert start, f"the page should start at 'step 1 of N: forward 1/F', not {first!r}"
        # The screenshot shows the second backward step (gradients flowing), or the last step.
        at = min(int(start.group(2)) + 2, int(start.group(1)))
        next_button, previous_button = page.locator("#tgbp-next"), page.locator("#tgbp-prev")
        assert next_button.count() == 1, "the page should have one button #tgbp-next"
        assert previous_button.count() == 1, "the page should have one button #tgbp-prev"

        def shot() -> None:
            page.screenshot(path=str(screenshots / f"standalone_{graph.__name__}.png"))

        where = f"standalone page ({graph.__name__}), buttons"
        latencies, total = walk_steps(
            page,
            root,
            next_button.click,
            previous_button.click,
            slider=False,
            where=where,
            screenshot=(at, shot),
        )
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        k, _ = counter(page.locator(".tgbp-counter").first.text_content())
        key_latencies = []
        for key, steps in (("ArrowLeft", range(k - 1, 0, -1)), ("ArrowRight", range(2, min(total, 4) + 1))):
            for expected in steps:
                ms, _ = step_once(page, root, lambda key=key: page.keyboard.press(key))
                key_latencies.append(ms)
                where = f"standalone ({graph.__name__}), {key} to {expected}"
                check_step(page, root, expected, slider=False, where=where)
        report(
            capsys,
            screenshots,
            f"standalone page, {graph.__name__} ({total} steps): click -> counter changes: {summary(latencies)}; "
            f"arrow key -> counter changes: {summary(key_latencies)}",
        )
        assert not errors, f"JavaScript errors on the standalone page: {errors}"
        network = [url for url in requests if not url.startswith(("file://", "data:"))]
        assert not network, f"the standalone page made network requests: {network}"
        assert not blocked, f"the standalone page tried to reach the network: {blocked}"
    finally:
        context.close()
