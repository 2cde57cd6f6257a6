"""Benchmark: tape replay (tinygrad_bp.tape) against micrograd 0.1.0, PyTorch, hand-written numpy and
the scalar tinygrad_bp engine, in one run.

    python benchmarks/bench_tape.py            # the full run (a few minutes: micrograd is slow)
    python benchmarks/bench_tape.py --quick    # a smoke run with tiny sizes (seconds)

(c) one training step of micrograd's demo: MLP(2, [16, 16, 1]) with relu on 100 two-moons points,
    loss = mean_i relu(1 - y_i s_i) + 1e-4 * sum_p p^2, forward + backward + SGD update (lr 0.1);
(e) one forward and backward pass of MLP(64, [32, 10]) (relu hidden, linear output) with the
    mean squared error over 256 samples x 10 outputs.

Engines: micrograd 0.1.0 and the scalar tinygrad_bp engine (one graph of Values per sample);
PyTorch with vectorised float64 nn.Linear layers; numpy with the forward and backward passes
written by hand; and the tape: ``BatchObjective`` (one trace, then one replay per batch), with
``check="none"`` (the speed; comparison guards stay on) and ``check="first"`` (the default: the
first sample of every batch is re-traced by the scalar engine and its structure compared).
The tape's rows train inside ``objective.hold(optimizer)`` (the parameters held as arrays, entered
once, as a training loop does); the "Values" rows read and write every parameter's ``.data`` and
``.grad`` on each step instead.

Measurement: medians over repeats, engines interleaved round-robin so machine drift hits all of
them alike. The object-heavy engines (micrograd, scalar tinygrad_bp) run first, before torch is
imported, with the garbage collector paused inside each timed step (collected between steps,
untimed): that makes them as fast as they can be, so the speed-up over micrograd is, if anything,
understated. BLAS runs single-threaded (``--threads 1``, the default) because at these sizes
threads only add overhead, and on a loaded 2-core machine multi-threaded OpenBLAS was seen taking
30 ms for a 0.5-MFLOP product; pass ``--threads 0`` to keep the libraries' defaults.

The script installs nothing; a missing reference is reported with its install command and skipped.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _set_threads(argv: list[str]) -> int:
    """Apply --threads before numpy is imported (BLAS reads the environment once, at load)."""
    threads = 1
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
    if threads > 0:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    return threads


THREADS = _set_threads(sys.argv[1:])

import numpy as np  # noqa: E402 - after the BLAS thread count is set

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import deep_call  # noqa: E402 - this script's folder: shared benchmark helpers

import tinygrad_bp as tg  # noqa: E402
from tinygrad_bp.losses import l2_penalty, mse_loss  # noqa: E402
from tinygrad_bp.optim import SGD  # noqa: E402
from tinygrad_bp.tape import BatchObjective  # noqa: E402

clock = time.perf_counter

FULL = {
    "moons": 100,
    "e_samples": 256,
    "e_shape": (64, [32, 10]),
    "repeats": 15,
    "slow_repeats": 3,
    "min_time": 0.05,
}
QUICK = {
    "moons": 20,
    "e_samples": 16,
    "e_shape": (16, [8, 4]),
    "repeats": 3,
    "slow_repeats": 1,
    "min_time": 0.005,
}
C_SHAPE = (2, [16, 16, 1])
ALPHA = 1e-4
LR = 0.1
DATA_SEED = 0
INIT_SEED = 1337
INSTALL = {
    "micrograd": "pip install -e '.[bench]'  (micrograd==0.1.0)",
    "torch": "pip install torch==2.13.0  (pinned: an unpinned torch pulls a multi-GB CUDA build)",
}
TARGETS = {"c_micrograd": 1000.0, "c_numpy": 2.0, "e_numpy": 2.0}
HOLDS: list[Any] = []  # the hold() blocks the tape rows run in, closed at the end of the run


# --- data --------------------------------------------------------------------------------------


def make_moons(n: int, noise: float = 0.1, seed: int = DATA_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (as sklearn's make_moons), labels -1/+1, seeded."""
    rng = random.Random(seed)
    n_out = n // 2
    points = []
    for i in range(n_out):
        t = math.pi * i / max(n_out - 1, 1)
        points.append((math.cos(t), math.sin(t), -1.0))
    for i in range(n - n_out):
        t = math.pi * i / max(n - n_out - 1, 1)
        points.append((1.0 - math.cos(t), 0.5 - math.sin(t), 1.0))
    rng.shuffle(points)
    X = np.array([[px + rng.gauss(0.0, noise), py + rng.gauss(0.0, noise)] for px, py, _ in points])
    return X, np.array([label for _, _, label in points])


def regression_data(n: int, nin: int, nout: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(DATA_SEED)
    return rng.normal(size=(n, nin)), rng.normal(size=(n, nout))


def weights_of(model: tg.MLP) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W (out x in), b) per layer of a tinygrad_bp MLP."""
    return [
        (
            np.array([[w.data for w in n.w] for n in layer.neurons]),
            np.array([n.b.data for n in layer.neurons]),
        )
        for layer in model.layers
    ]


# --- timing ------------------------------------------------------------------------------------


def per_call(fn: Callable[[], Any], min_time: float, *, pause_gc: bool = False) -> float:
    """Seconds per call of ``fn``: as many calls as fit in ``min_time`` (at least one), averaged.

    With ``pause_gc`` the collector is off during each call and runs between calls, untimed.
    """
    calls, total = 0, 0.0
    while calls == 0 or total < min_time:
        if pause_gc:
            gc.disable()
        start = clock()
        fn()
        total += clock() - start
        calls += 1
        if pause_gc:
            gc.enable()
            gc.collect()
    return total / calls


def interleaved(measures: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Round-robin: each repeat runs every measure once, in an order rotated by the repeat number."""
    names = list(measures)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            gc.collect()
            results[name].append(measures[name]())
    return results


def deep(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a thread with a large stack and recursion limit (micrograd's backward recurses)."""
    return deep_call(fn, recursion_limit=200_000)


def available(module: str) -> bool:
    if importlib.util.find_spec(module) is None:
        print(f"  {module} is not installed: its row is skipped. Install it with: {INSTALL[module]}")
        return False
    return True


# --- (c) the micrograd demo step ---------------------------------------------------------------


def c_micrograd(X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    from micrograd.engine import Value
    from micrograd.nn import MLP

    random.seed(INIT_SEED)
    model = MLP(2, [16, 16, 1])
    rows, labels = X.tolist(), y.tolist()

    def step() -> None:
        scores = [model(list(map(Value, x))) for x in rows]
        losses = [(1 + -yi * si).relu() for yi, si in zip(labels, scores)]
        loss = sum(losses) * (1.0 / len(losses)) + ALPHA * sum(p * p for p in model.parameters())
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= LR * p.grad

    return step


def c_scalar(X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    model = tg.MLP(*C_SHAPE, activation="relu", output_activation="linear", seed=INIT_SEED)
    params = model.parameters()
    rows, labels = X.tolist(), y.tolist()

    def step() -> None:
        scores = [model([tg.constant(v) for v in x]) for x in rows]
        losses = [(1 - yi * si).relu() for yi, si in zip(labels, scores)]
        loss = tg.sum(losses) / len(losses) + l2_penalty(params, ALPHA)
        model.zero_grad()
        loss.backward()
        for p in params:
            p.data -= LR * p.grad

    return step


def held(objective: BatchObjective, optimizer: Any = None) -> None:
    """Enter ``objective.hold(optimizer)`` for the rest of the run (closed by :func:`release_holds`)."""
    block = objective.hold(optimizer)
    block.__enter__()
    HOLDS.append(block)


def release_holds() -> None:
    while HOLDS:
        HOLDS.pop().__exit__(None, None, None)


def c_tape(X: np.ndarray, y: np.ndarray, check: str, hold: bool = True) -> Callable[[], None]:
    model = tg.MLP(*C_SHAPE, activation="relu", output_activation="linear", seed=INIT_SEED)
    params = model.parameters()
    objective = BatchObjective(model, "hinge", penalty=lambda: l2_penalty(params, ALPHA), check=check)
    optimizer = SGD(params, lr=LR)
    if hold:
        held(objective, optimizer)

    def step() -> None:
        optimizer.zero_grad()
        objective(X, y)
        optimizer.step()

    return step


def c_numpy(X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    model = tg.MLP(*C_SHAPE, activation="relu", output_activation="linear", seed=INIT_SEED)
    (W1, b1), (W2, b2), (W3, b3) = weights_of(model)
    n = len(X)

    def step() -> None:
        nonlocal W1, b1, W2, b2, W3, b3
        z1 = X @ W1.T + b1
        h1 = np.maximum(z1, 0.0)
        z2 = h1 @ W2.T + b2
        h2 = np.maximum(z2, 0.0)
        s = (h2 @ W3.T + b3)[:, 0]
        margin = 1.0 - y * s
        _loss = np.maximum(margin, 0.0).mean() + ALPHA * sum((w * w).sum() for w in (W1, b1, W2, b2, W3, b3))
        ds = np.where(margin > 0.0, -y, 0.0)[:, None] / n
        dW3, db3 = ds.T @ h2, ds.sum(0)
        dz2 = (ds @ W3) * (z2 > 0.0)
        dW2, db2 = dz2.T @ h1, dz2.sum(0)
        dz1 = (dz2 @ W2) * (z1 > 0.0)
        dW1, db1 = dz1.T @ X, dz1.sum(0)
        W1 = W1 - LR * (dW1 + 2 * ALPHA * W1)
        b1 = b1 - LR * (db1 + 2 * ALPHA * b1)
        W2 = W2 - LR * (dW2 + 2 * ALPHA * W2)
        b2 = b2 - LR * (db2 + 2 * ALPHA * b2)
        W3 = W3 - LR * (dW3 + 2 * ALPHA * W3)
        b3 = b3 - LR * (db3 + 2 * ALPHA * b3)

    return step


def torch_mlp(torch: Any, model: tg.MLP) -> Any:
    """A float64 nn.Sequential with the same weights as a tinygrad_bp MLP (relu between layers)."""
    layers: list[Any] = []
    for i, (W, b) in enumerate(weights_of(model)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(model.layers) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def c_torch(X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    import torch

    model = torch_mlp(torch, tg.MLP(*C_SHAPE, activation="relu", output_activation="linear", seed=INIT_SEED))
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    params = list(model.parameters())

    def step() -> None:
        s = model(Xt)[:, 0]
        loss = torch.relu(1.0 - yt * s).mean() + ALPHA * sum((p * p).sum() for p in params)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.sub_(LR * p.grad)

    return step


# --- (e) one forward and backward pass of MLP(64, [32, 10]) with MSE ----------------------------


def e_micrograd(X: np.ndarray, Y: np.ndarray, shape: tuple[int, list[int]]) -> Callable[[], None]:
    from micrograd.engine import Value
    from micrograd.nn import MLP

    random.seed(INIT_SEED)
    model = MLP(shape[0], list(shape[1]))
    rows, targets = X.tolist(), Y.tolist()
    count = Y.size

    def step() -> None:
        terms = []
        for x, t in zip(rows, targets):
            out = model(list(map(Value, x)))
            terms += [(o - ti) ** 2 for o, ti in zip(out, t)]
        loss = sum(terms) * (1.0 / count)
        model.zero_grad()
        deep(loss.backward)

    return step


def e_model(shape: tuple[int, list[int]]) -> tg.MLP:
    return tg.MLP(shape[0], list(shape[1]), activation="relu", output_activation="linear", seed=INIT_SEED)


def e_scalar(X: np.ndarray, Y: np.ndarray, shape: tuple[int, list[int]]) -> Callable[[], None]:
    model = e_model(shape)
    rows, targets = X.tolist(), Y.tolist()

    def step() -> None:
        model.zero_grad()
        share = 1.0 / len(rows)
        for x, t in zip(rows, targets):
            mse_loss(model([tg.constant(v) for v in x]), t).backward(share)

    return step


def e_tape(
    X: np.ndarray, Y: np.ndarray, shape: tuple[int, list[int]], check: str, write: bool, hold: bool = True
) -> Callable[[], None]:
    model = e_model(shape)
    objective = BatchObjective(model, "mse", check=check)
    if hold:
        held(objective)
        if write:  # the gradient added into the held array
            return lambda: objective(X, Y)
    if write:
        return lambda: (model.zero_grad(), objective(X, Y))
    return lambda: objective.replay(X, Y)


def e_numpy(X: np.ndarray, Y: np.ndarray, shape: tuple[int, list[int]]) -> Callable[[], None]:
    (W1, b1), (W2, b2) = weights_of(e_model(shape))
    count = Y.size

    def step() -> None:
        z1 = X @ W1.T + b1
        h1 = np.maximum(z1, 0.0)
        out = h1 @ W2.T + b2
        diff = out - Y
        _loss = (diff * diff).sum() / count
        dout = (2.0 / count) * diff
        _dW2, _db2 = dout.T @ h1, dout.sum(0)
        dz1 = (dout @ W2) * (z1 > 0.0)
        _dW1, _db1 = dz1.T @ X, dz1.sum(0)

    return step


def e_torch(X: np.ndarray, Y: np.ndarray, shape: tuple[int, list[int]]) -> Callable[[], None]:
    import torch

    model = torch_mlp(torch, e_model(shape))
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    params = list(model.parameters())

    def step() -> None:
        for p in params:
            p.grad = None
        torch.nn.functional.mse_loss(model(Xt), Yt).backward()

    return step


# --- agreement: the tape gives the scalar engine's numbers ---------------------------------------


def agreement(
    X: np.ndarray, y: np.ndarray, X2: np.ndarray, Y2: np.ndarray, shape: tuple[int, list[int]]
) -> str:
    """max relative difference of loss and gradients, tape vs scalar engine, on (c) and (e)."""
    worst = 0.0
    for loss_name, model, Xs, ys, penalty in (
        ("hinge", tg.MLP(*C_SHAPE, activation="relu", seed=INIT_SEED), X, y, True),
        ("mse", e_model(shape), X2, Y2, False),
    ):
        params = model.parameters()
        pen = (lambda params=params: l2_penalty(params, ALPHA)) if penalty else None
        (result,) = [BatchObjective(model, loss_name, penalty=pen, check="first").replay(Xs, ys)[1]]
        model.zero_grad()
        total = 0.0
        for x, t in zip(Xs.tolist(), ys.tolist()):
            out = model([tg.constant(v) for v in x])
            loss = (1 - t * out).relu() if loss_name == "hinge" else mse_loss(out, t)
            if pen is not None:
                loss = loss + pen()
            loss.backward(1.0 / len(Xs))
            total += loss.data / len(Xs)
        grads = np.array([p.grad for p in params])
        scale = max(1.0, float(np.abs(grads).max()))
        worst = max(
            worst,
            abs(result.loss - total) / abs(total),
            float(np.abs(result.grads.params - grads).max()) / scale,
        )
    return f"{worst:.1e}"


# --- the run -----------------------------------------------------------------------------------


def summarize(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(ts) for name, ts in times.items()}


def heavy_steps(config: dict[str, Any], data: tuple[np.ndarray, ...], micrograd: bool) -> dict[str, Any]:
    """(name -> (step, pause_gc)) for the engines that build one graph of objects per sample."""
    X, y, X2, Y2 = data
    shape = config["e_shape"]
    steps: dict[str, Any] = {}
    if micrograd:
        steps["c micrograd"] = (c_micrograd(X, y), False)
        steps["c micrograd (gc paused)"] = (c_micrograd(X, y), True)
        steps["e micrograd (gc paused)"] = (e_micrograd(X2, Y2, shape), True)
    steps["c scalar tinygrad_bp (gc paused)"] = (c_scalar(X, y), True)
    steps["e scalar tinygrad_bp (gc paused)"] = (e_scalar(X2, Y2, shape), True)
    return steps


def array_steps(config: dict[str, Any], data: tuple[np.ndarray, ...], torch: bool) -> dict[str, Any]:
    """name -> step for the engines that work on whole arrays (the tape among them)."""
    X, y, X2, Y2 = data
    shape = config["e_shape"]
    steps = {
        "c tape check=none": c_tape(X, y, "none"),
        "c tape check=none, Values": c_tape(X, y, "none", hold=False),
        "c tape check=first": c_tape(X, y, "first"),
        "c numpy by hand": c_numpy(X, y),
        "e tape check=none": e_tape(X2, Y2, shape, "none", write=False),
        "e tape check=none +grad": e_tape(X2, Y2, shape, "none", write=True),
        "e tape check=none, Values": e_tape(X2, Y2, shape, "none", write=False, hold=False),
        "e tape check=none +.grad, Values": e_tape(X2, Y2, shape, "none", write=True, hold=False),
        "e tape check=first": e_tape(X2, Y2, shape, "first", write=False),
        "e numpy by hand": e_numpy(X2, Y2, shape),
    }
    if torch:
        import torch as torch_module

        if THREADS > 0:
            torch_module.set_num_threads(THREADS)
        steps["c torch"] = c_torch(X, y)
        steps["e torch"] = e_torch(X2, Y2, shape)
    for step in steps.values():  # warm up: the first call traces the tape
        step()
    return steps


def run(config: dict[str, Any]) -> dict[str, dict[str, float]]:
    X, y = make_moons(config["moons"])
    shape = config["e_shape"]
    X2, Y2 = regression_data(config["e_samples"], shape[0], shape[1][-1])
    data = (X, y, X2, Y2)
    has_micrograd, has_torch = available("micrograd"), available("torch")
    print(
        f"\nagreement of the tape with the scalar engine (max relative difference): {agreement(*data, shape)}"
    )

    print(
        f"\nobject-heavy engines first, before torch is imported ({config['slow_repeats']} repeats) ...",
        flush=True,
    )
    heavy = {
        name: functools.partial(per_call, step, 0.0, pause_gc=pause)
        for name, (step, pause) in heavy_steps(config, data, has_micrograd).items()
    }
    results = summarize(interleaved(heavy, config["slow_repeats"]))

    print(f"array engines ({config['repeats']} repeats) ...", flush=True)
    light = {
        name: functools.partial(per_call, step, config["min_time"])
        for name, step in array_steps(config, data, has_torch).items()
    }
    results.update(summarize(interleaved(light, config["repeats"])))
    release_holds()
    return {part: {k[2:]: v for k, v in results.items() if k[0] == part} for part in ("c", "e")}


def print_table(title: str, rows: dict[str, float]) -> None:
    base, numpy_time = rows["tape check=none"], rows["numpy by hand"]
    print(f"\n{title}")
    print(f"{'engine':34s} {'median ms':>11s} {'/ tape(none)':>13s} {'/ numpy':>9s}")
    for name, seconds in sorted(rows.items(), key=lambda kv: kv[1]):
        print(f"{name:34s} {seconds * 1e3:11.4f} {seconds / base:12.1f}x {seconds / numpy_time:8.1f}x")


def targets(c: dict[str, float], e: dict[str, float]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, passed; None = informational) rows."""
    rows: list[tuple[str, str, bool | None]] = []
    for check in ("none", "first"):
        tape_c, tape_e = c[f"tape check={check}"], e[f"tape check={check}"]
        official = check == "none"
        if "micrograd" in c:
            speedup = c["micrograd"] / tape_c
            rows.append(
                (
                    f"(c) >= 1000x faster than micrograd, check={check}",
                    f"{speedup:,.0f}x",
                    speedup >= TARGETS["c_micrograd"] if official else None,
                )
            )
            paused = c["micrograd (gc paused)"] / tape_c
            rows.append(
                (f"    (micrograd with its collector paused), check={check}", f"{paused:,.0f}x", None)
            )
        for part, tape, times in (("c", tape_c, c), ("e", tape_e, e)):
            within = tape / times["numpy by hand"]
            rows.append(
                (
                    f"({part}) at most {TARGETS[part + '_numpy']:g}x hand-written numpy, check={check}",
                    f"{within:.2f}x",
                    within <= TARGETS[part + "_numpy"] if official else None,
                )
            )
            if "torch" in times and official:
                ratio = times["torch"] / tape
                rows.append(
                    (f"({part}) faster than PyTorch vectorised, check={check}", f"{ratio:.2f}x", ratio > 1.0)
                )
    return rows


def report(results: dict[str, dict[str, float]], config: dict[str, Any], quick: bool) -> None:
    shape = config["e_shape"]
    print_table(
        f"(c) micrograd demo step: MLP(2, [16, 16, 1]) relu, {config['moons']} two-moons points, "
        "hinge + L2, forward + backward + SGD",
        results["c"],
    )
    print_table(
        f"(e) MLP({shape[0]}, {shape[1]}), MSE over {config['e_samples']} samples: one forward + backward",
        results["e"],
    )
    print("\ntargets (judged on check='none'; check='first' rows are for information)")
    for name, measured, ok in targets(results["c"], results["e"]):
        verdict = "" if ok is None else "PASS" if ok else "FAIL"
        print(f"  {name:60s} {measured:>9s}  {verdict}")
    if quick:
        print("\n(--quick: tiny sizes, few repeats; the targets are meant for the full run)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats: a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/torch threads (0: library defaults)")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    print(
        f"bench_tape: python {sys.version.split()[0]}, numpy {np.__version__}, tinygrad_bp {tg.__version__}, "
        f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}, threads {THREADS or 'default'}"
    )
    results = run(config)
    report(results, config, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
