"""The command line: ``python -m tinygrad_bp demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import Value, __version__


def _demo() -> int:
    """A first look: build a small expression, run backward, print every gradient."""
    a = Value(2.0, label="a")
    b = Value(-3.0, label="b")
    c = Value(10.0, label="c")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    f = Value(-2.0, label="f")
    loss = d * f
    loss.label = "L"
    loss.backward()
    print(f"tinygrad_bp {__version__}: L = (a*b + c) * f = {loss.data}")
    for v in (a, b, c, f, e, d):
        print(f"  dL/d{v.label} = {v.grad}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tinygrad-bp`` and ``python -m tinygrad_bp``."""
    parser = argparse.ArgumentParser(prog="tinygrad-bp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the worked example end to end")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo()
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
