"""How a picture is handed to Jupyter: a mime bundle that every viewer can show.

A stored notebook opened from a fresh clone is untrusted, so JupyterLab
sanitises its HTML and will not show ``image/svg+xml`` at all: an inline
``<svg>`` is stripped and only its text remains. Two forms survive everywhere
(JupyterLab, Notebook 7, VS Code, and renderers without a kernel):

* ``text/html`` holding an ``<img>`` whose source is the SVG as a base64
  ``data:`` URI (sharp at any zoom, and its labels stay inert text: an SVG
  shown through ``<img>`` runs no script and loads nothing);
* ``image/png``, for viewers that do not take HTML.

:func:`picture_bundle` builds that bundle; :func:`note_bundle` is what is shown
instead when no picture can be drawn (a short note, never a traceback).
"""

from __future__ import annotations

import base64
import html
import re

__all__ = ["note_bundle", "picture_bundle", "svg_img", "svg_size"]

_SIZE = re.compile(r'<svg[^>]*?\bwidth="([\d.]+)(pt|px)?"[^>]*?\bheight="([\d.]+)(pt|px)?"', re.DOTALL)

# Graphviz writes sizes in points; a CSS pixel is 3/4 of a point.
_PX_PER_PT = 4 / 3


def svg_size(svg: str) -> tuple[int, int] | None:
    """The width and height of an SVG document in CSS pixels (from its root element), or None."""
    match = _SIZE.search(svg)
    if match is None:
        return None
    scale = _PX_PER_PT if match.group(2) in (None, "pt") else 1.0
    return round(float(match.group(1)) * scale), round(float(match.group(3)) * scale)


def svg_img(svg: str, alt: str, *, shrink_to: int | None = None) -> str:
    """An ``<img>`` showing ``svg`` in a box that scrolls.

    At its own size (not shrunk to the cell, so the text stays readable), or,
    with ``shrink_to``, scaled down to at most that many pixels wide (an overview).
    """
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    size = svg_size(svg)
    if shrink_to is not None and size is not None and size[0] > shrink_to:
        size = (shrink_to, round(size[1] * shrink_to / size[0]))
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    return (
        '<div class="tinygrad-bp-graph" style="overflow:auto; max-width:100%">'
        f'<img src="data:image/svg+xml;base64,{data}" alt="{html.escape(alt)}"{dims} '
        'style="max-width:none; height:auto"></div>'
    )


def picture_bundle(svg: str, png: bytes | None, alt: str) -> dict[str, str]:
    """The mime bundle of one picture: the SVG as an ``<img>``, the PNG, and ``alt`` as plain text."""
    bundle = {"text/html": svg_img(svg, alt), "text/plain": alt}
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    return bundle


def note_bundle(note: str, source: str | None = None) -> dict[str, str]:
    """What is shown when no picture can be drawn: ``note``, and the DOT ``source`` folded away."""
    page = f'<div class="tinygrad-bp-graph"><p>{html.escape(note)}</p>'
    if source is not None:
        page += f"<details><summary>DOT source</summary><pre>{html.escape(source)}</pre></details>"
    return {"text/html": page + "</div>", "text/plain": note}
