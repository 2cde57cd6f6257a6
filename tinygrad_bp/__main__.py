"""The command line: ``tinygrad-bp demo`` and ``tinygrad-bp train`` (also ``python -m tinygrad_bp``)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .extras import MissingExtraError


def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    """A tqdm progress bar when tqdm is installed and wanted, else the iterable itself."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="step", leave=True)


def _heading(text: str) -> None:
    print()
    print(text)
    print("-" * len(text))


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


# --- demo -----------------------------------------------------------------------------


def _forward_rows(example: Any) -> list[tuple[str, str]]:
    """The forward table of the worked example, read off the engine's graph by the article's names."""
    from .engine import toposort
    from .worked_example import FORWARD

    _, error = example.forward()
    nodes = {node.label: node for node in toposort(error) if node.label}
    return [(name, f"{nodes[name].data:.15f}") for name in FORWARD]


def _write_pictures(root: Any, out_dir: Path) -> None:
    """Write the graph (SVG) and the step-through page; DOT and a note if they cannot be drawn."""
    from . import layout, viz
    from .errors import GraphvizNotFoundError, LayoutError
    from .stepper import Stepper

    out_dir.mkdir(parents=True, exist_ok=True)
    program = layout.find_program()
    page = out_dir / "worked_example_steps.html"
    try:
        path = viz.save(root, out_dir / "worked_example.svg", edge_labels=True)
    except (GraphvizNotFoundError, LayoutError) as error:
        path = viz.save(root, out_dir / "worked_example.dot", edge_labels=True)
        print(f"The graph as DOT source: {path.resolve()}")
        print(f"  (no picture: {error})")
        Stepper(root).to_html(page)
        print(f"Both passes step by step, as text (open it in a browser): {page.resolve()}")
        return
    Stepper(root).to_html(page)
    print(f"The graph, with each edge's local derivative (open it in a browser): {path.resolve()}")
    print(f"Both passes step by step (open it in a browser; arrow keys step): {page.resolve()}")
    print(f"  (laid out by {Path(program or '').name})")


def demo(out_dir: Path, steps: int, progress: bool) -> int:
    """Run the articles' 2-2-2 worked example end to end."""
    from .explain import explain
    from .worked_example import ARTICLE_CHAIN, build, chain_w1, deltas, figures_table

    print(f"tinygrad_bp {__version__}: the 2-2-2 worked example of backpropagation")
    print("inputs 0.05, 0.10; targets 0.01, 0.99; sigmoid units; E = 1/2 sum (target - out)^2")
    example = build()

    _heading("Forward pass")
    _table(_forward_rows(example), ("quantity", "value"))

    _, error = example.forward()
    error.backward()
    w5, w1 = example.weights[4], example.weights[0]
    _heading("The deltas: delta = dE/dnet, held by the engine as net.grad")
    _table(
        [(d.name, d.formula, f"{d.by_formula:.15f}", f"{d.engine:.15f}") for d in deltas(example)],
        ("delta", "the article's formula", "by the formula", "engine (net.grad)"),
    )
    print(f"(the article prints delta_o1 = {ARTICLE_CHAIN['delta_o1']})")
    _heading("dE/dw5: one path, a product of local derivatives")
    print(explain(error, w5))
    print("(dE_total/dE_o1 = 1: E_total = E_o1 + E_o2; then dE_o1/dout_o1 = out_o1 - t1, ...)")
    _heading("dE/dw1 as the article factors it: out_h1 receives from both outputs")
    rows = [
        (name, f"{engine:.15f}", "" if article is None else f"{article}")
        for name, engine, article in chain_w1(example)
    ]
    _table(rows, ("quantity", "engine", "the article prints"))
    _heading("dE/dw1 as a sum over its two paths")
    print(explain(error, w1))

    _heading("All eight gradients, and the weights after one step (lr 0.5)")
    updates = [
        (f"w{i + 1}", f"{w.data:.2f}", f"{w.grad:.15f}", f"{w.data - example.lr * w.grad:.15f}")
        for i, w in enumerate(example.weights)
    ]
    _table(updates, ("weight", "old", "dE/dw", "new"))
    _write_pictures(error, out_dir)

    _heading(f"Training: {steps:,} steps of gradient descent")
    optimizer = example.optimizer()
    start = time.perf_counter()
    history = []
    for _ in _progress(range(steps), steps, "training", progress):
        optimizer.zero_grad()
        _, error = example.forward()
        error.backward()
        optimizer.step()
        history.append(error.data)
    elapsed = time.perf_counter() - start
    outs, error = example.forward()
    print(f"E_total after 1 step: {history[1] if len(history) > 1 else error.data:.15f}")
    print(
        f"E_total after {steps:,} steps: {error.data:.10g}  "
        f"(out_o1 {outs[0].data:.9f}, out_o2 {outs[1].data:.9f})"
    )
    print(f"{steps:,} steps took {elapsed:.2f} s")

    _heading("The article's later figures, three ways")
    article = build()
    article.train(1, reproduce_article=True)
    print(
        f"In the article's order (w5..w8 updated before the hidden gradients): E_total after 1 step "
        f"{article.forward()[1].data:.9f}"
    )
    print(figures_table())
    return 0


# --- train ----------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    """'16,16' -> [16, 16]; argparse turns a ValueError into a usage message."""
    parts = [part.strip() for part in text.split(",")]
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        msg = f"expected comma-separated layer sizes such as 16,16, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if any(s < 1 for s in sizes):
        msg = f"layer sizes must be positive, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return sizes


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: a finite number > 0 of ``kind`` (nan and inf are refused with the usage)."""
    return _number(kind, lambda v: v > 0, "positive")


def _nonnegative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: a finite number >= 0 of ``kind``."""
    return _number(kind, lambda v: v >= 0, "non-negative")


def _number(kind: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            msg = f"expected a {kind.__name__}, got {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if not math.isfinite(value) or not ok(value):
            msg = f"expected a finite {what} {kind.__name__}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    parse.__name__ = kind.__name__
    return parse


def train(args: argparse.Namespace) -> int:
    """Train an MLP on moons or digits and write a loss-curve PNG."""
    from .cli_train import run_training

    return run_training(args)


# --- the parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tinygrad-bp``."""
    parser = argparse.ArgumentParser(
        prog="tinygrad-bp",
        description="tinygrad_bp: see backpropagation work, from a worked example to training.",
    )
    parser.add_argument("--version", action="version", version=f"tinygrad_bp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,train}")

    d = sub.add_parser("demo", help="run the articles' 2-2-2 worked example end to end")
    d.add_argument("--out", type=Path, default=Path("tinygrad_bp_demo"), help="folder for the graph")
    d.add_argument("--steps", type=_positive(int), default=10_000, help="training steps (default 10000)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")

    t = sub.add_parser("train", help="train an MLP on two moons or handwritten digits")
    t.add_argument("--data", choices=("moons", "digits"), default="moons")
    t.add_argument("--hidden", type=_sizes, default=None, help="hidden layer sizes, e.g. 16,16")
    t.add_argument("--activation", choices=("relu", "tanh", "sigmoid"), default="relu")
    t.add_argument("--optimizer", choices=("sgd", "adam"), default=None)
    t.add_argument("--lr", type=_positive(float), default=None, help="learning rate")
    t.add_argument("--momentum", type=_nonnegative(float), default=0.0, help="SGD momentum")
    t.add_argument("--epochs", type=_positive(int), default=None)
    t.add_argument("--batch-size", type=_positive(int), default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--engine", choices=("auto", "tape", "scalar"), default="auto")
    t.add_argument("--out", type=Path, default=Path("tinygrad_bp_train"), help="folder for the loss curve")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tinygrad-bp`` and ``python -m tinygrad_bp``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _unwritable(args.out)
    if problem:  # checked before any training: a run must not end in a traceback
        parser.error(f"--out {args.out}: {problem}")
    try:
        if args.command == "demo":
            return demo(args.out, args.steps, progress=not args.no_progress)
        return train(args)
    except MissingExtraError as error:
        print(f"tinygrad-bp: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tinygrad-bp: interrupted", file=sys.stderr)
        return 130


def _unwritable(folder: Path) -> str:
    """Why files cannot be written into ``folder`` (made if missing), or "" when they can."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"the folder {existing} is not writable"
    return ""


if __name__ == "__main__":
    sys.exit(main())
