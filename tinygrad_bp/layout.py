"""Running a Graphviz layout program: the system ``dot`` if there is one, else ``graphviz-pure``.

Drawings are laid out by a program that reads DOT and writes SVG or PNG. Two
are looked for, in this order:

1. Graphviz's own ``dot`` on ``PATH`` (``apt-get install graphviz``): the
   first choice whenever it is present;
2. ``graphviz-pure``, a self-contained port of Graphviz's ``dot`` that pip
   installs with tinygrad_bp (a program inside its wheel, with its own
   fonts): nothing else to install, nothing fetched at run time. It is looked
   for on ``PATH`` and beside the running interpreter, so a virtual
   environment's copy is found even when the environment is not activated.

The environment variable ``TINYGRAD_BP_LAYOUT`` chooses instead: ``dot``,
``graphviz-pure``, the path of a program, or ``none`` (behave as if neither
were installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from .errors import GraphvizNotFoundError, LayoutError

__all__ = ["ENVIRONMENT_VARIABLE", "INSTALL_HINT", "find_program", "run", "run_many"]

ENVIRONMENT_VARIABLE = "TINYGRAD_BP_LAYOUT"

INSTALL_HINT = (
    "No Graphviz layout program was found: neither 'dot' on PATH nor 'graphviz-pure' "
    "(which 'pip install tinygrad_bp' normally brings). Reinstall with 'pip install graphviz-pure', "
    "or install Graphviz: 'apt-get install graphviz' (Debian/Ubuntu), 'brew install graphviz' (macOS), "
    "'conda install -c conda-forge graphviz' (conda). "
    "Building the DOT source (draw_dot, to_dot) works without either."
)

# A drawing that takes longer than this to lay out is stopped (a hang guard, not a speed limit).
_TIMEOUT_SECONDS = 300


def _beside_interpreter(name: str) -> str | None:
    """``name`` in the scripts folders of the running interpreter, if it is there."""
    folders = {Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))}
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.exe"):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def _graphviz_pure() -> str | None:
    return shutil.which("graphviz-pure") or _beside_interpreter("graphviz-pure")


def find_program() -> str | None:
    """The layout program's path: ``dot``, else ``graphviz-pure``, else None (see the module doc)."""
    choice = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if choice == "none":
        return None
    if choice == "dot":
        return shutil.which("dot")
    if choice == "graphviz-pure":
        return _graphviz_pure()
    if choice:
        return choice if Path(choice).is_file() else shutil.which(choice)
    return shutil.which("dot") or _graphviz_pure()


def run(source: str, fmt: str) -> bytes:
    """Lay out the DOT ``source`` and return it in format ``fmt`` (``"svg"``, ``"png"``, ...).

    Raises:
        GraphvizNotFoundError: no layout program (the message says how to get one).
        LayoutError: the program failed or ran for longer than five minutes (its message included).

    """
    program = find_program()
    if program is None:
        choice = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
        if choice and choice != "none":
            msg = f"{ENVIRONMENT_VARIABLE}={choice!r} names no program that can be found; {INSTALL_HINT}"
            raise GraphvizNotFoundError(msg)
        raise GraphvizNotFoundError(INSTALL_HINT)
    try:
        done = subprocess.run(  # noqa: S603 - the program is dot or graphviz-pure, found above
            [program, f"-T{fmt}"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        msg = f"layout: {Path(program).name} ran for more than {_TIMEOUT_SECONDS} s and was stopped"
        raise LayoutError(msg) from None
    except OSError as error:
        msg = f"layout: {program} could not be run: {error}"
        raise LayoutError(msg) from None
    if done.returncode != 0 or not done.stdout:
        message = done.stderr.decode("utf-8", "replace").strip()[:2000]
        msg = f"layout: {Path(program).name} -T{fmt} failed (exit {done.returncode}): {message}"
        raise LayoutError(msg)
    return done.stdout


def run_many(sources: list[str]) -> list[str]:
    """Lay out several DOT graphs as SVG with ONE run of the program (both read several graphs).

    Returns one SVG document per source, in order.
    """
    if not sources:
        return []
    out = run("\n".join(sources), "svg").decode("utf-8")
    documents = [part for part in out.split("<?xml") if part.strip()]
    if len(documents) != len(sources):
        msg = f"layout: {len(sources)} graphs were laid out but {len(documents)} SVG documents came back"
        raise LayoutError(msg)
    return ["<?xml" + part for part in documents]
