"""``tinygrad-bp train``: train an MLP on two moons or handwritten digits, write a loss curve.

Defaults per data set (each can be overridden on the command line):

* moons: micrograd's demo. 100 points (noise 0.1), MLP(2, [16, 16, 1]) with ReLU,
  hinge loss + 1e-4 L2, full-batch SGD for 100 epochs with micrograd's learning-rate
  schedule lr_k = 1 - 0.9 k / 100 (or a constant ``--lr``).
* digits: scikit-learn's 8x8 digits (80/20 split), MLP(64, [32, 10]) with ReLU,
  cross-entropy, Adam (lr 1e-2, decaying linearly to 0) in batches of 16 for 10 epochs.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

from .losses import l2_penalty
from .nn import MLP
from .optim import SGD, Adam, Optimizer


class Setup(NamedTuple):
    """The data and the defaults of one data set."""

    X: list[list[float]]
    y: list[Any]
    X_test: list[list[float]] | None
    y_test: list[Any] | None
    nouts: int
    loss: str
    hidden: list[int]
    optimizer: str
    lr: float
    epochs: int
    batch_size: int | None
    l2: float


def _moons(seed: int) -> Setup:
    from .data import make_moons

    X, y01 = make_moons(100, noise=0.1, seed=seed)
    y = [2 * t - 1 for t in y01]  # labels -1/+1 for the hinge loss
    return Setup(X, y, None, None, 1, "hinge", [16, 16], "sgd", 1.0, 100, None, 1e-4)


def _digits(seed: int) -> Setup:
    from .data import load_digits
    from .extras import MissingExtraError

    try:
        X, y, X_test, y_test = load_digits(test_fraction=0.2, seed=seed)
    except ImportError as error:
        raise MissingExtraError(str(error)) from None
    return Setup(X, y, X_test, y_test, 10, "cross_entropy", [32], "adam", 1e-2, 10, 16, 0.0)


def _optimizer(name: str, model: MLP, lr: float, momentum: float) -> Optimizer:
    if name == "adam":
        return Adam(model.parameters(), lr=lr)
    return SGD(model.parameters(), lr=lr, momentum=momentum)


def _loss_curve(history: dict[str, list[float]], path: Path, title: str) -> Path:
    """Plot loss (and accuracy) per epoch to a PNG."""
    from .extras import require as _require

    matplotlib = _require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    fig, loss_axis = plt.subplots(figsize=(7, 4), dpi=100)
    loss_axis.plot(epochs, history["loss"], color="tab:blue", label="training loss")
    if history.get("test_loss"):
        loss_axis.plot(epochs, history["test_loss"], color="tab:cyan", label="test loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    acc_axis = loss_axis.twinx()
    for key, color in (("accuracy", "tab:orange"), ("test_accuracy", "tab:red")):
        if history.get(key):
            acc_axis.plot(epochs, history[key], color=color, linestyle="--", label=key.replace("_", " "))
    acc_axis.set_ylabel("accuracy")
    acc_axis.set_ylim(0.0, 1.02)
    handles = loss_axis.get_legend_handles_labels()[0] + acc_axis.get_legend_handles_labels()[0]
    loss_axis.legend(handles=handles, loc="center right")
    loss_axis.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def run_training(args: argparse.Namespace) -> int:
    """Train as the arguments say; print the history and where the loss curve went."""
    from .train import fit

    setup = _digits(args.seed) if args.data == "digits" else _moons(args.seed)
    hidden = args.hidden if args.hidden is not None else setup.hidden
    optimizer_name = args.optimizer or setup.optimizer
    lr = args.lr if args.lr is not None else setup.lr
    epochs = args.epochs if args.epochs is not None else setup.epochs
    batch_size = args.batch_size if args.batch_size is not None else setup.batch_size
    model = MLP(len(setup.X[0]), [*hidden, setup.nouts], activation=args.activation, seed=args.seed)
    optimizer = _optimizer(optimizer_name, model, lr, args.momentum)
    steps = epochs * (1 if batch_size is None else math.ceil(len(setup.X) / batch_size))
    schedule = None
    if args.lr is None:  # the data set's default schedule: a linear decay
        floor = 0.1 if args.data == "moons" else 0.0  # micrograd: 1.0 -> 0.1
        schedule = lambda k: lr * (1.0 - (1.0 - floor) * k / steps)
    penalty = (lambda ps: l2_penalty(ps, setup.l2)) if setup.l2 else None

    arch = f"MLP({len(setup.X[0])}, {[*hidden, setup.nouts]})"
    print(
        f"training {arch} ({args.activation}) on {args.data}: {len(setup.X)} samples, "
        f"{setup.loss} loss, {optimizer_name}, lr {lr}"
    )
    start = time.perf_counter()
    history = fit(
        model,
        setup.X,
        setup.y,
        loss=setup.loss,
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        seed=args.seed,
        penalty=penalty,
        lr_schedule=schedule,
        progress=not args.no_progress,
        X_test=setup.X_test,
        y_test=setup.y_test,
        engine=args.engine,
    )
    elapsed = time.perf_counter() - start
    last = {key: values[-1] for key, values in history.items() if values}
    shown = "  ".join(f"{key} {value:.4f}" for key, value in last.items() if key not in ("lr", "engine"))
    print(f"after {epochs} epochs ({elapsed:.1f} s, {last['engine']} engine): {shown}")
    path = _loss_curve(history, args.out / f"{args.data}_loss.png", f"{arch} on {args.data}")
    print(f"loss curve: {path.resolve()}")
    return 0
