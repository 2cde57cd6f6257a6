"""A stepper as HTML: one step that any viewer shows, and a self-contained page that steps.

:func:`static_step` is one step (counter, neighbourhood, overview, arithmetic)
with the pictures as ``<img>`` data URIs, so it survives an untrusted
notebook's sanitiser: it is what a stored notebook shows for the stepper.

:func:`standalone_page` is a whole HTML document that steps through every
step with buttons, a slider, the arrow keys and a parameter search, in any
browser, with no kernel and no network: the pictures, the text and about
forty lines of script are inside it (a Content-Security-Policy forbids every
request). This is also how to share a lesson.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING

from tinygrad_bp.display import svg_img
from tinygrad_bp.errors import GraphTooLargeError, GraphvizNotFoundError, LayoutError

if TYPE_CHECKING:
    from .stepper import Stepper

__all__ = ["DEFAULT_MAX_STEPS", "standalone_page", "static_step"]


def _pictures(stepper: Stepper, i: int) -> tuple[str, str]:
    """Step ``i``'s neighbourhood and overview as ``<img>`` HTML (or a note when they cannot be drawn)."""
    try:
        picture = svg_img(stepper.svg(i), f"tinygrad_bp graph: {stepper.counter(i)}")
    except (GraphvizNotFoundError, LayoutError) as error:
        return f"<p><i>(graph not drawn: {html.escape(str(error))})</i></p>", ""
    overview = stepper.overview()
    if overview is None:
        return picture, ""
    marked = overview.marked(stepper.steps[i].node)
    alt = f"tinygrad_bp graph: overview ({overview.description})"
    return picture, svg_img(marked, alt, shrink_to=_OVERVIEW_WIDTH)


# The width of the overview in a stored notebook, in CSS pixels.
_OVERVIEW_WIDTH = 640

# Lines wrap only at spaces, never inside a name (names have no spaces).
_WRAP_AT_SPACES = "white-space:pre-wrap; overflow-wrap:normal; word-break:normal"


def static_step(stepper: Stepper, i: int = 0) -> str:
    """Step ``i`` as HTML any viewer shows (see the module doc)."""
    if not stepper.steps:
        return f'<div class="tinygrad-bp-stepper"><pre>{html.escape(str(stepper))}</pre></div>'
    picture, overview = _pictures(stepper, i)
    return (
        '<div class="tinygrad-bp-stepper">'
        f'<p class="tgbp-counter"><b>{html.escape(stepper.counter(i))}</b> '
        "(run the notebook to step through it, or open the page that "
        "<code>stepper.to_html(path)</code> writes)</p>"
        f"{picture}"
        f'<pre style="{_WRAP_AT_SPACES}">{html.escape(stepper.step_text(i))}</pre>'
        f"<p>The whole graph, the node of this step marked:</p>{overview}</div>"
    )


def _json_for_script(data: object) -> str:
    """JSON that can sit inside a ``<script>`` element: no ``<``, so no text can close or confuse it."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; }
.tgbp-controls { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }
.tgbp-controls button { font-size: 15px; padding: 4px 12px; }
.tgbp-counter { font-weight: bold; }
.tgbp-panes { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.tgbp-view { flex: 3 1 520px; overflow: auto; max-height: 70vh; border: 1px solid #ddd; padding: 4px; }
.tgbp-view svg { max-width: 100%; height: auto; }
.tgbp-overview { flex: 2 1 320px; border: 1px solid #ddd; padding: 4px; }
.tgbp-overview svg { width: 100%; height: auto; }
.tgbp-overview .tgbp-on polygon, .tgbp-overview .tgbp-on ellipse {
  fill: #fde047 !important; stroke: #dc2626 !important; stroke-width: 10px; }
.tgbp-text { white-space: pre-wrap; overflow-wrap: normal; word-break: normal; overflow-x: auto;
  background: #f8f8f8; padding: 8px; font-size: 13px; }
.tgbp-note { color: #555; }
"""

_SCRIPT = """
(function () {
  const steps = JSON.parse(document.getElementById("tgbp-steps").textContent);
  const jumps = JSON.parse(document.getElementById("tgbp-jumps").textContent);
  const view = document.querySelector(".tgbp-view");
  const text = document.querySelector(".tgbp-text");
  const counter = document.querySelector(".tgbp-counter");
  const slider = document.getElementById("tgbp-slider");
  const jump = document.getElementById("tgbp-jump");
  let current = 0;
  function mark(id, on) {
    if (!id) return;
    for (const suffix of ["", "_op"]) {
      const el = document.getElementById("ov-" + id + suffix);
      if (el) el.classList.toggle("tgbp-on", on);
    }
  }
  function show(i) {
    i = Math.max(0, Math.min(steps.length - 1, i));
    mark(steps[current].mark, false);
    current = i;
    const step = steps[i];
    view.innerHTML = step.svg;
    text.textContent = step.text;
    counter.textContent = step.counter;
    slider.value = String(i + 1);
    mark(step.mark, true);
    document.getElementById("tgbp-prev").disabled = i === 0;
    document.getElementById("tgbp-next").disabled = i === steps.length - 1;
    const node = view.querySelector(".tgbp-current");
    if (node) node.scrollIntoView({block: "nearest", inline: "nearest"});
  }
  document.getElementById("tgbp-prev").addEventListener("click", () => show(current - 1));
  document.getElementById("tgbp-next").addEventListener("click", () => show(current + 1));
  slider.addEventListener("input", () => show(Number(slider.value) - 1));
  jump.addEventListener("change", () => {
    if (Object.prototype.hasOwnProperty.call(jumps, jump.value)) show(jumps[jump.value]);
  });
  document.addEventListener("keydown", (event) => {
    if (event.target === jump) return;
    if (event.key === "ArrowRight") { show(current + 1); event.preventDefault(); }
    if (event.key === "ArrowLeft") { show(current - 1); event.preventDefault(); }
  });
  show(0);
})();
"""


def _overview_html(stepper: Stepper) -> tuple[str, dict[int, str]]:
    """The overview SVG with its ids prefixed ``ov-`` (unique in the page), and the ids by Value."""
    overview = stepper.overview()
    if overview is None:
        return f'<p class="tgbp-note">({html.escape(stepper.overview_note())})</p>', {}
    svg = overview.svg
    for element in set(overview.ids.values()):
        svg = svg.replace(f'id="{element}"', f'id="ov-{element}"').replace(
            f'id="{element}_op"', f'id="ov-{element}_op"'
        )
    note = f'<p class="tgbp-note">overview: {html.escape(overview.description)}</p>'
    return note + svg, overview.ids


DEFAULT_MAX_STEPS = 2000


def standalone_page(stepper: Stepper, max_steps: int = DEFAULT_MAX_STEPS) -> str:
    """The self-contained step-through page (see the module doc).

    Raises:
        GraphTooLargeError: more than ``max_steps`` steps (the page grows by about 5 KB a step).

    """
    title = f"tinygrad_bp: stepping through {stepper.names(stepper.output)}"
    if not stepper.steps:
        head = f"<meta charset='utf-8'><title>{html.escape(title)}</title>"
        body = f"<pre>{html.escape(str(stepper))}</pre>"
        return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"
    if len(stepper.steps) > max_steps:
        msg = (
            f"Stepper.to_html: {len(stepper.steps)} steps is more than max_steps={max_steps} "
            f"(about 5 KB a step); step through a smaller graph, or raise max_steps"
        )
        raise GraphTooLargeError(msg)
    overview, ids = _overview_html(stepper)
    try:
        svgs = stepper.all_svgs()
    except (GraphvizNotFoundError, LayoutError) as error:
        note = f"<p><i>(graph not drawn: {html.escape(str(error))})</i></p>"
        svgs = [note] * len(stepper.steps)
    steps = [
        {
            "counter": stepper.counter(i),
            "text": stepper.step_text(i),
            "svg": svgs[i],
            "mark": ids.get(id(step.node)),
        }
        for i, step in enumerate(stepper.steps)
    ]
    jumps = stepper.parameter_steps()
    options = "".join(f'<option value="{html.escape(name)}"></option>' for name in jumps)
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body><div class="tinygrad-bp-stepper">
<h2>{html.escape(title)}</h2>
<div class="tgbp-controls">
<button id="tgbp-prev" title="previous step (left arrow)">&larr; previous</button>
<button id="tgbp-next" title="next step (right arrow)">next &rarr;</button>
<input type="range" id="tgbp-slider" min="1" max="{len(steps)}" value="1" aria-label="step">
<span class="tgbp-counter"></span>
<input id="tgbp-jump" list="tgbp-parameters" placeholder="jump to a parameter..." size="24">
<datalist id="tgbp-parameters">{options}</datalist>
</div>
<div class="tgbp-panes"><div class="tgbp-view"></div><div class="tgbp-overview">{overview}</div></div>
<pre class="tgbp-text"></pre>
<p class="tgbp-note">Keys: left and right arrows. Made by tinygrad_bp's Stepper.to_html().</p>
</div>
<script type="application/json" id="tgbp-steps">{_json_for_script(steps)}</script>
<script type="application/json" id="tgbp-jumps">{_json_for_script(jumps)}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
