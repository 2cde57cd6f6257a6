# INP001: a script, not a package; T201: printing the results is its job.
"""Train an MLP on scikit-learn's handwritten digits with the scalar engine; print accuracy and time.

    python scripts/train_digits.py            # MLP(64, [32, 10]), Adam (lr 1e-2, decaying), 10 epochs
    python scripts/train_digits.py --epochs 5 --hidden 16 --no-progress

The data: 1,797 8x8 images, pixels scaled to [0, 1], split 80/20 with a seed
(``tinygrad_bp.data.load_digits``; needs ``pip install 'tinygrad_bp[digits]'``).
The model: 64 inputs, one ReLU hidden layer, 10 linear outputs (logits), trained
with the softmax cross-entropy -log softmax(z)_y and Adam in mini-batches, the
learning rate decaying linearly to 0 over the run (lr_k = lr (1 - k / steps)),
every sample's forward and backward pass going through Values.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

from tinygrad_bp import MLP, Adam
from tinygrad_bp.data import load_digits
from tinygrad_bp.train import accuracy, fit


def main(argv: Sequence[str] | None = None) -> int:
    """Train, then print the test accuracy and the time taken."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=32, help="units in the hidden layer")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam's initial learning rate")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the init and the shuffling")
    parser.add_argument(
        "--constant-lr", action="store_true", help="keep the learning rate (default: decay it linearly to 0)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    X_train, y_train, X_test, y_test = load_digits(test_fraction=0.2, seed=args.seed)
    steps = args.epochs * math.ceil(len(X_train) / args.batch_size)
    schedule = None if args.constant_lr else (lambda k: args.lr * (1 - k / steps))
    model = MLP(64, [args.hidden, 10], activation="relu", output_activation="linear", seed=args.seed)
    history = fit(
        model,
        X_train,
        y_train,
        loss="cross_entropy",
        optimizer=Adam(model.parameters(), lr=args.lr),
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
        X_test=X_test,
        y_test=y_test,
        lr_schedule=schedule,
    )
    elapsed = time.perf_counter() - start
    for epoch, (loss, acc, test_acc) in enumerate(
        zip(history["loss"], history["accuracy"], history["test_accuracy"]), start=1
    ):
        print(f"epoch {epoch:2d}: loss {loss:.4f}  train accuracy {acc:.4f}  test accuracy {test_acc:.4f}")
    final = accuracy(model, X_test, y_test, loss="cross_entropy")
    print(f"{len(X_train)} training and {len(X_test)} test samples, {len(model.parameters())} parameters")
    print(f"test accuracy {final:.4f} ({round(final * len(X_test))}/{len(X_test)}) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
