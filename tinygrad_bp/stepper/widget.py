"""The stepper as an ipywidgets control, for a live Jupyter kernel.

A row of controls (previous / next, a slider counting steps from 1 like the
text, the counter ``step 3 of 40: forward 3/20``, a searchable parameter box
in natural order: ``w2`` before ``w10``), then the step's neighbourhood (the
current node and its operands, always in view at full size) beside a small
overview of the whole graph, then the step's arithmetic on lines that never
wrap.

Stored in a notebook and opened without a kernel (or untrusted), the control
shows :func:`~tinygrad_bp.stepper.page.static_step` instead: its first step
as pictures and text, never the widget's ``repr``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from tinygrad_bp.errors import GraphvizNotFoundError, LayoutError
from tinygrad_bp.viz import _natural

from .page import static_step

if TYPE_CHECKING:
    from .stepper import Stepper

__all__ = ["StepperWidget", "build_widget"]

# The step's picture is shrunk to the pane when wider (it is small: the text stays readable).
_FIT = "<style>.tgbp-view svg {max-width: 100%; height: auto}</style>"
# Lines wrap only at spaces, never inside a name (names have no spaces).
_TEXT_STYLE = (
    "white-space:pre-wrap; overflow-wrap:normal; word-break:normal; overflow-x:auto; "
    "margin:0; font-size:12px; line-height:1.35"
)


class StepperWidget(w.VBox):
    """The stepper's control: a VBox whose stored form is a picture of its first step."""

    def __init__(self, stepper: Stepper, children: list[Any], fallback: str) -> None:
        super().__init__(children)
        self.stepper = stepper
        self._fallback = fallback
        self.add_class("tinygrad-bp-stepper")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/html"] = self._fallback
        bundle["text/plain"] = repr(self.stepper)
        return bundle


def _picture(stepper: Stepper, i: int) -> str:
    try:
        return stepper.svg(i)
    except (GraphvizNotFoundError, LayoutError) as error:
        return f"<p><i>(graph not drawn: {html.escape(str(error))})</i></p>"


def _overview_picture(stepper: Stepper) -> str:
    """The overview drawn once, as an ``<img>`` the width of its pane (it never changes)."""
    overview = stepper.overview()
    if overview is None:
        return f"<p><i>({html.escape(stepper.overview_note())})</i></p>"
    data = base64.b64encode(overview.svg.encode("utf-8")).decode("ascii")
    return (
        "<img style='width:100%; height:auto; display:block' alt='tinygrad_bp graph: overview' "
        f"src='data:image/svg+xml;base64,{data}'>"
    )


def _overview_title(stepper: Stepper) -> str:
    overview = stepper.overview()
    what = "" if overview is None else f": {html.escape(overview.description)}"
    return f"<div style='font-size:11px; color:#555; line-height:1.3'>overview{what}</div>"


def _marker(stepper: Stepper, i: int) -> str:
    """A frame laid over the overview around step ``i``'s node (a few hundred bytes per step)."""
    overview = stepper.overview()
    box = None if overview is None else overview.box(stepper.steps[i].node)
    if overview is None or box is None:
        return ""
    left, top, width, height = box
    frame = (
        f"position:absolute; left:calc({left:.3f}% - 4px); top:calc({top:.3f}% - 4px); "
        f"width:calc({width:.3f}% + 8px); height:calc({height:.3f}% + 8px); "
        "border:3px solid #dc2626; background:rgba(253,224,71,0.45); box-sizing:border-box"
    )
    return (
        f"<div style='position:relative; width:100%; padding-top:{100 * overview.aspect:.3f}%'>"
        f"<div class='tgbp-marker' style='{frame}'></div></div>"
    )


def build_widget(stepper: Stepper) -> StepperWidget:
    """The control of :meth:`Stepper.widget` (see the module doc).

    The returned widget carries its parts as attributes: ``previous_button``,
    ``next_button``, ``slider`` (1 .. number of steps), ``counter``,
    ``search`` (a Combobox of parameter names), ``view``, ``overview``, ``marker``
    (the frame over the overview) and ``arithmetic``.
    """
    n = len(stepper)
    previous_button = w.Button(description="previous", icon="arrow-left", disabled=n == 0)
    next_button = w.Button(description="next", icon="arrow-right", disabled=n == 0)
    slider = w.IntSlider(value=1, min=1, max=max(n, 1), description="step", disabled=n == 0)
    counter = w.HTML()
    jumps = stepper.parameter_steps()
    names = sorted(jumps, key=_natural)
    search = w.Combobox(
        options=names,
        placeholder="jump to a parameter (type to search)",
        ensure_option=True,
        layout=w.Layout(width="260px"),
    )
    frame = {"overflow": "auto", "max_height": "560px", "border": "1px solid #ddd"}
    view = w.HTML(layout=w.Layout(flex="3 1 460px", **frame))
    view.add_class("tgbp-view")
    # The overview and its marker share one grid cell: the marker is drawn over the picture, and a
    # step sends only the marker, never the picture again.
    overview = w.HTML(_overview_picture(stepper), layout=w.Layout(grid_area="overview"))
    marker = w.HTML(layout=w.Layout(grid_area="overview"))
    picture = w.GridBox(
        [overview, marker], layout=w.Layout(grid_template_areas='"overview"', grid_template_columns="100%")
    )
    overview_pane = w.VBox(
        [w.HTML(_overview_title(stepper)), picture],
        layout=w.Layout(flex="2 1 300px", border="1px solid #ddd"),
    )
    arithmetic = w.HTML()

    def show(step: int) -> None:
        i = step - 1
        if n == 0:
            arithmetic.value = f"<pre style='{_TEXT_STYLE}'>{html.escape(str(stepper))}</pre>"
            return
        counter.value = f"<b class='tgbp-counter'>{html.escape(stepper.counter(i))}</b>"
        picture = _picture(stepper, i)
        view.value = f"<div style='width:100%'>{_FIT}{picture}</div>"
        marker.value = _marker(stepper, i)
        previous_button.disabled, next_button.disabled = step == 1, step == n
        arithmetic.value = f"<pre style='{_TEXT_STYLE}'>{html.escape(stepper.step_text(i))}</pre>"

    def on_slider(change: Mapping[str, Any]) -> None:
        show(change["new"])

    def on_previous(_: Any) -> None:
        slider.value = max(slider.value - 1, 1)

    def on_next(_: Any) -> None:
        slider.value = min(slider.value + 1, max(n, 1))

    def on_search(change: Mapping[str, Any]) -> None:
        if change["new"] in jumps:
            slider.value = jumps[change["new"]] + 1
            search.value = ""  # so that choosing the same name again jumps again

    slider.observe(on_slider, names="value")
    previous_button.on_click(on_previous)
    next_button.on_click(on_next)
    search.observe(on_search, names="value")
    show(1)
    controls = w.HBox([previous_button, next_button, slider, counter])
    # On a narrow screen the overview wraps below the step's picture, which keeps the full width.
    panes = w.HBox([view, overview_pane], layout=w.Layout(align_items="flex-start", flex_flow="row wrap"))
    box = StepperWidget(stepper, [controls, w.HBox([search]), panes, arithmetic], static_step(stepper, 0))
    box.previous_button, box.next_button, box.slider = previous_button, next_button, slider
    box.counter, box.search, box.view, box.arithmetic = counter, search, view, arithmetic
    box.overview, box.marker = overview, marker
    return box
