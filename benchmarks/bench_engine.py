"""Benchmark: tinygrad_bp against micrograd 0.1.0 and PyTorch 0-dim tensors, in one run.

    python benchmarks/bench_engine.py            # the full run (about 2-3 minutes)
    python benchmarks/bench_engine.py --quick    # a smoke run with tiny sizes (seconds)
    python benchmarks/bench_engine.py --json out.json

Sections (see benchmarks/README.md):

(a) a chain of 30,000 operations ``x = relu(x*a + b)`` (each of *, + and relu
    counts as one operation): forward ns per operation, backward ns per node;
(b) bytes per node while building that chain (tracemalloc; RSS for torch,
    whose nodes live in C++ where tracemalloc cannot see them);
(c) one training step of micrograd's demo: MLP(2, [16, 16, 1]) on 100
    two-moons points, hinge loss + L2, forward + backward + SGD update, each
    library with its own MLP (tinygrad_bp: one ``linear`` node per neuron);
(c2) the same step on the identical binary graph in both engines
    (tinygrad_bp's ``MLP(..., fused=False)`` and Python's ``sum``, so every
    product and addition is a node, as in micrograd);
(d) cost per operation of the chain at 10,000 versus 300,000 operations;
plus a 1,000,000-operation chain, forward and backward, at the default
recursion limit.

Each engine variant runs in its own worker process (tinygrad_bp with the
garbage collector on and off, micrograd with it on and off, torch), driven
round-robin by this process, so that one engine's objects never slow down
another engine's garbage collections. The script installs nothing: a missing
reference engine is reported with its install command and its column skipped.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Worker,
    WorkerError,
    deep_call,
    environment,
    fmt_bytes,
    fmt_ms,
    fmt_ns,
    fmt_ratio,
    gc_state,
    interleaved,
    median,
    per,
    print_table,
    print_targets,
    ratio,
    reference_status,
    rss_bytes,
    serve,
    spread,
    timed_steps,
    traced_bytes,
    write_json,
)

clock = time.perf_counter

FULL = {
    "chain_ops": 30_000,
    "memory_ops": 100_000,
    "scale_small": 10_000,
    "scale_large": 300_000,
    "million_ops": 1_000_000,
    "moons": 100,
    "repeats_chain": 7,
    "repeats_mlp": 7,
    "repeats_scale": 5,
    "small_runs_per_repeat": 4,
    "mlp_min_time": 0.25,
}
QUICK = {
    "chain_ops": 3_000,
    "memory_ops": 3_000,
    "scale_small": 600,
    "scale_large": 3_000,
    "million_ops": 30_000,
    "moons": 10,
    "repeats_chain": 1,
    "repeats_mlp": 1,
    "repeats_scale": 1,
    "small_runs_per_repeat": 1,
    "mlp_min_time": 0.0,
}

CHAIN_A, CHAIN_B, CHAIN_X0 = 0.5, 0.5, 0.3  # x -> relu(0.5 x + 0.5): stays near 1, relu always open
MLP_SHAPE = (2, [16, 16, 1])
LEARNING_RATE = 0.1
ALPHA = 1e-4
DATA_SEED = 0
INIT_SEED = 1337  # micrograd's demo seeds random with 1337 before building its MLP

INSTALL_MICROGRAD = "pip install -e '.[bench]'  (micrograd==0.1.0)"
INSTALL_TORCH = "pip install torch==2.13.0  (pinned: an unpinned torch pulls a multi-GB CUDA build)"


def make_moons(n: int, noise: float = 0.1, seed: int = DATA_SEED) -> tuple[list[list[float]], list[float]]:
    """Two interleaving half circles, as sklearn.datasets.make_moons, labels -1/+1, seeded.

    The outer moon (label -1) is the upper half of the unit circle; the inner
    one (label +1) is shifted to (1, 0.5) and flipped. Gaussian noise of
    standard deviation ``noise`` is added to every coordinate.
    """
    rng = random.Random(seed)
    n_out = n // 2
    n_in = n - n_out
    points = []
    for i in range(n_out):
        t = math.pi * i / max(n_out - 1, 1)
        points.append((math.cos(t), math.sin(t), -1.0))
    for i in range(n_in):
        t = math.pi * i / max(n_in - 1, 1)
        points.append((1.0 - math.cos(t), 0.5 - math.sin(t), 1.0))
    rng.shuffle(points)
    xs = [[px + rng.gauss(0.0, noise), py + rng.gauss(0.0, noise)] for px, py, _ in points]
    ys = [label for _, _, label in points]
    return xs, ys


# =============================================================================================
# Engines, as run inside a worker process. Each one imports only its own library.
# =============================================================================================


class Engine:
    """One engine's measurements. Subclasses fill in the library-specific parts."""

    name = "?"

    def __init__(self, gc_enabled: bool) -> None:
        self.gc_enabled = gc_enabled
        self.step: Callable[[], object] | None = None
        self.warm = False

    # -- helpers each engine provides --
    def version(self) -> str:
        raise NotImplementedError

    def build_chain(self, n_ops: int) -> tuple[Any, Any, float]:
        """(output, leaf a, forward seconds) of the n-operation chain."""
        raise NotImplementedError

    def run_backward(self, out: Any, depth: int) -> float:  # noqa: ARG002 - depth is for micrograd
        """Seconds for out.backward() on a graph at most ``depth`` levels deep."""
        start = clock()
        out.backward()
        return clock() - start

    def grad_of(self, leaf: Any) -> float:
        return float(leaf.grad)

    def data_of(self, value: Any) -> float:
        return float(value.data)

    def setup_mlp(self, n_points: int, *, binary: bool = False) -> dict[str, Any]:
        """Build the demo's step; ``binary``: on micrograd's own graph (every product a node)."""
        raise NotImplementedError

    # -- tasks --
    def hello(self) -> dict[str, Any]:
        return {"version": self.version(), "pid": os.getpid(), "gc": gc.isenabled()}

    def chain(self, n_ops: int) -> dict[str, Any]:
        gc.collect()
        out, a, forward = self.build_chain(n_ops)
        backward = self.run_backward(out, n_ops + 10)
        result = {"forward_s": forward, "backward_s": backward, "ops": 3 * (n_ops // 3)}
        result["value"] = self.data_of(out)
        result["grad_a"] = self.grad_of(a)
        del out, a
        gc.collect()  # untimed: frees micrograd's cyclic graph when the collector is off
        return result

    def memory(self, n_ops: int) -> dict[str, Any]:
        """Bytes held by the n-operation chain: RSS growth first (fresh process), then tracemalloc."""
        gc.collect()
        rss_before = rss_bytes()
        out, _, _ = self.build_chain(n_ops)
        rss_after = rss_bytes()
        del out
        gc.collect()
        traced, kept = traced_bytes(lambda: self.build_chain(n_ops))
        del kept
        gc.collect()
        ops = 3 * (n_ops // 3)
        rss = None if rss_before is None or rss_after is None else rss_after - rss_before
        return {"ops": ops, "traced_bytes": traced, "rss_bytes": rss}

    def mlp_setup(self, n_points: int, binary: bool = False) -> dict[str, Any]:
        return self.setup_mlp(n_points, binary=binary)

    def mlp(self, min_time: float) -> list[float]:
        """Per-step seconds of consecutive training steps (the first call also runs one warm-up step)."""
        if self.step is None:
            raise RuntimeError("mlp_setup must run first")
        warmup = 0 if self.warm else 1
        self.warm = True
        return timed_steps(self.step, gc_enabled=self.gc_enabled, min_time=min_time, warmup=warmup)

    def million(self, n_ops: int) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} has no million-node run")


class TinygradEngine(Engine):
    name = "tinygrad_bp"

    def __init__(self, gc_enabled: bool) -> None:
        super().__init__(gc_enabled)
        import tinygrad_bp

        self.tbp = tinygrad_bp

    def version(self) -> str:
        return self.tbp.__version__

    def build_chain(self, n_ops: int) -> tuple[Any, Any, float]:
        value = self.tbp.Value
        a, b, x = value(CHAIN_A), value(CHAIN_B), value(CHAIN_X0)
        steps = range(n_ops // 3)
        start = clock()
        for _ in steps:
            x = (x * a + b).relu()
        return x, a, clock() - start

    def million(self, n_ops: int) -> dict[str, Any]:
        gc.collect()
        limit = sys.getrecursionlimit()
        out, a, forward = self.build_chain(n_ops)
        backward = self.run_backward(out, n_ops + 10)
        grad_a = a.grad
        start = clock()
        del out
        free = clock() - start
        return {
            "ops": 3 * (n_ops // 3),
            "forward_s": forward,
            "backward_s": backward,
            "free_s": free,
            "recursion_limit": limit,
            "grad_a": grad_a,
        }

    def setup_mlp(self, n_points: int, *, binary: bool = False) -> dict[str, Any]:
        tbp = self.tbp
        xs, ys = make_moons(n_points)
        kind = "tinygrad_bp.nn.MLP" + (" (fused=False: micrograd's binary graph)" if binary else "")
        try:
            from tinygrad_bp.nn import MLP

            model = MLP(
                MLP_SHAPE[0],
                list(MLP_SHAPE[1]),
                activation="relu",
                output_activation="linear",
                seed=INIT_SEED,
                **({"fused": False} if binary else {}),
            )
            # Start from micrograd's initial weights (uniform(-1, 1) drawn in the same order, biases 0),
            # so all engines compute the same losses; the step's cost does not depend on it.
            model.load_state_dict(_micrograd_init_state(MLP_SHAPE[0], list(MLP_SHAPE[1]), INIT_SEED))
            kind += " (loaded with micrograd's initial weights)"
        except ImportError:
            model = _InlineMLP(tbp, MLP_SHAPE[0], list(MLP_SHAPE[1]), seed=INIT_SEED)
            kind = "inline fallback MLP (tinygrad_bp.nn.MLP not importable): tinygrad_bp.linear + .relu()"
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            kind += f" (its own initial weights: loading micrograd's failed: {error})"
        params = list(model.parameters())
        tsum = sum if binary else getattr(tbp, "sum", sum)  # micrograd's graph: a chain of additions
        constant = tbp.constant

        def loss() -> Any:
            inputs = [[constant(v) for v in row] for row in xs]
            scores = [_single(model(x)) for x in inputs]
            losses = [(1 + -yi * si).relu() for yi, si in zip(ys, scores)]
            data_loss = tsum(losses) * (1.0 / len(losses))
            reg_loss = ALPHA * tsum(p * p for p in params)
            return data_loss + reg_loss

        def step() -> None:
            total = loss()
            if hasattr(model, "zero_grad"):
                model.zero_grad()
            else:
                for p in params:
                    p.grad = 0.0
            total.backward()
            for p in params:
                p.data -= LEARNING_RATE * p.grad

        first = loss()
        nodes = sum(1 for node in tbp.toposort(first) if node.inputs)
        self.step = step
        return {"kind": kind, "params": len(params), "op_nodes": nodes, "initial_loss": first.data}


def _micrograd_init_state(nin: int, nouts: list[int], seed: int) -> dict[str, Any]:
    """micrograd's initial MLP weights as a tinygrad_bp.nn state dict ("layer1.weight", "layer1.bias", ..)."""
    rng = random.Random(seed)
    sizes = [nin, *nouts]
    state: dict[str, Any] = {}
    for i in range(len(nouts)):
        state[f"layer{i + 1}.weight"] = [
            [rng.uniform(-1, 1) for _ in range(sizes[i])] for _ in range(sizes[i + 1])
        ]
        state[f"layer{i + 1}.bias"] = [0.0] * sizes[i + 1]
    return state


def _single(out: Any) -> Any:
    """A model's output for one output unit: the Value itself, even if the model returns a list."""
    if isinstance(out, (list, tuple)):
        return out[0]
    return out


class _InlineMLP:
    """The fallback scalar MLP for tinygrad_bp: each neuron is ONE ``tinygrad_bp.linear`` node, then relu.

    Initialised like micrograd's (weights uniform(-1, 1) drawn neuron by
    neuron, biases 0) from ``random.Random(seed)``, so with the same seed it
    starts from exactly micrograd's weights.
    """

    def __init__(self, tbp: Any, nin: int, nouts: list[int], seed: int) -> None:
        rng = random.Random(seed)
        sizes = [nin, *nouts]
        self.tbp = tbp
        self.layers = []
        for i in range(len(nouts)):
            neurons = []
            for _ in range(sizes[i + 1]):
                w = [tbp.Value(rng.uniform(-1, 1)) for _ in range(sizes[i])]
                neurons.append((w, tbp.Value(0.0)))
            self.layers.append((neurons, i != len(nouts) - 1))

    def __call__(self, x: list[Any]) -> Any:
        linear = self.tbp.linear
        for neurons, nonlin in self.layers:
            if nonlin:
                x = [linear(w, x, b).relu() for w, b in neurons]
            else:
                x = [linear(w, x, b) for w, b in neurons]
        return x[0] if len(x) == 1 else x

    def parameters(self) -> list[Any]:
        return [p for neurons, _ in self.layers for w, b in neurons for p in (*w, b)]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0


class MicrogradEngine(Engine):
    name = "micrograd"

    def __init__(self, gc_enabled: bool) -> None:
        super().__init__(gc_enabled)
        import micrograd.engine

        self.M = micrograd.engine

    def version(self) -> str:
        import importlib.metadata

        return importlib.metadata.version("micrograd")

    def build_chain(self, n_ops: int) -> tuple[Any, Any, float]:
        value = self.M.Value
        a, b, x = value(CHAIN_A), value(CHAIN_B), value(CHAIN_X0)
        steps = range(n_ops // 3)
        start = clock()
        for _ in steps:
            x = (x * a + b).relu()
        return x, a, clock() - start

    def run_backward(self, out: Any, depth: int) -> float:
        # micrograd's build_topo recurses once per level: a deep chain needs a high limit and a big stack.
        def timed() -> float:
            start = clock()
            out.backward()
            return clock() - start

        return deep_call(timed, recursion_limit=2 * depth + 10_000)

    def setup_mlp(self, n_points: int, *, binary: bool = False) -> dict[str, Any]:  # noqa: ARG002 - its graph is binary
        # As micrograd's demo.ipynb: seed, MLP(2, [16, 16, 1]), loss() with max-margin loss and L2.
        from micrograd.engine import Value
        from micrograd.nn import MLP

        X, y = make_moons(n_points)
        random.seed(INIT_SEED)
        model = MLP(2, [16, 16, 1])

        def loss() -> tuple[Any, float]:
            inputs = [list(map(Value, xrow)) for xrow in X]
            scores = list(map(model, inputs))
            losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
            data_loss = sum(losses) * (1.0 / len(losses))
            alpha = ALPHA
            reg_loss = alpha * sum(p * p for p in model.parameters())
            total_loss = data_loss + reg_loss
            accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
            return total_loss, sum(accuracy) / len(accuracy)

        def step() -> None:
            total_loss, _acc = loss()
            model.zero_grad()
            total_loss.backward()
            for p in model.parameters():
                p.data -= LEARNING_RATE * p.grad

        first, _ = loss()
        nodes = _count_micrograd_ops(first)
        self.step = step
        return {
            "kind": "micrograd.nn.MLP",
            "params": len(model.parameters()),
            "op_nodes": nodes,
            "initial_loss": first.data,
        }


def _count_micrograd_ops(root: Any) -> int:
    """The number of non-leaf nodes of a micrograd graph, walked without recursion."""
    seen = {id(root)}
    stack = [root]
    ops = 0
    while stack:
        node = stack.pop()
        if node._prev:
            ops += 1
        for child in node._prev:
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return ops


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, gc_enabled: bool) -> None:
        super().__init__(gc_enabled)
        import torch

        torch.set_num_threads(1)  # scalar ops: one thread, no contention on a small machine
        self.torch = torch

    def version(self) -> str:
        return self.torch.__version__

    def scalar(self, v: float, requires_grad: bool = True) -> Any:
        return self.torch.tensor(v, dtype=self.torch.float64, requires_grad=requires_grad)

    def build_chain(self, n_ops: int) -> tuple[Any, Any, float]:
        a, b, x = self.scalar(CHAIN_A), self.scalar(CHAIN_B), self.scalar(CHAIN_X0)
        steps = range(n_ops // 3)
        start = clock()
        for _ in steps:
            x = (x * a + b).relu()
        return x, a, clock() - start

    def grad_of(self, leaf: Any) -> float:
        return float(leaf.grad.item())

    def data_of(self, value: Any) -> float:
        return float(value.item())

    def setup_mlp(self, n_points: int, *, binary: bool = False) -> dict[str, Any]:  # noqa: ARG002 - always binary
        torch = self.torch
        xs, ys = make_moons(n_points)
        rng = random.Random(INIT_SEED)  # the same draws, in the same order, as micrograd's MLP
        sizes = [MLP_SHAPE[0], *MLP_SHAPE[1]]
        layers = []
        for i in range(len(MLP_SHAPE[1])):
            neurons = []
            for _ in range(sizes[i + 1]):
                w = [self.scalar(rng.uniform(-1, 1)) for _ in range(sizes[i])]
                neurons.append((w, self.scalar(0.0)))
            layers.append((neurons, i != len(MLP_SHAPE[1]) - 1))
        params = [p for neurons, _ in layers for w, b in neurons for p in (*w, b)]
        relu = torch.relu

        def model(x: list[Any]) -> Any:
            for neurons, nonlin in layers:
                acts = [sum((wi * xi for wi, xi in zip(w, x)), b) for w, b in neurons]
                x = [relu(act) for act in acts] if nonlin else acts
            return x[0]

        def loss() -> Any:
            inputs = [[self.scalar(v, requires_grad=False) for v in row] for row in xs]
            scores = [model(x) for x in inputs]
            losses = [relu(1 + -yi * si) for yi, si in zip(ys, scores)]
            data_loss = sum(losses) * (1.0 / len(losses))
            reg_loss = ALPHA * sum(p * p for p in params)
            return data_loss + reg_loss

        def step() -> None:
            total = loss()
            for p in params:
                p.grad = None
            total.backward()
            with torch.no_grad():
                for p in params:
                    p.sub_(LEARNING_RATE * p.grad)

        first = loss()
        nodes = _count_torch_ops(first)
        self.step = step
        return {
            "kind": "0-dim float64 tensors, one per scalar",
            "params": len(params),
            "op_nodes": nodes,
            "initial_loss": first.item(),
        }


def _count_torch_ops(root: Any) -> int:
    """The number of autograd function nodes behind ``root`` (AccumulateGrad leaves excluded)."""
    seen = set()
    stack = [root.grad_fn]
    ops = 0
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ != "AccumulateGrad":
            ops += 1
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return ops


ENGINES = {"tinygrad_bp": TinygradEngine, "micrograd": MicrogradEngine, "torch": TorchEngine}


def worker_main(engine_name: str, *, gc_enabled: bool) -> None:
    """Serve measurement requests for one engine variant (see _common.serve)."""
    if not gc_enabled:
        gc.disable()
    engine = ENGINES[engine_name](gc_enabled)
    serve(
        {
            "hello": engine.hello,
            "chain": engine.chain,
            "memory": engine.memory,
            "mlp_setup": engine.mlp_setup,
            "mlp": engine.mlp,
            "million": engine.million,
        }
    )


# =============================================================================================
# The driver: starts the workers, interleaves the measurements, prints the tables.
# =============================================================================================

TBP = "tinygrad_bp"
TBP_OFF = "tinygrad_bp (gc off)"
MG_ON = "micrograd (gc on)"
MG_OFF = "micrograd (gc off)"
TORCH = "torch 0-dim"

VARIANTS = {  # label -> (engine, gc enabled)
    TBP: ("tinygrad_bp", True),
    TBP_OFF: ("tinygrad_bp", False),
    MG_ON: ("micrograd", True),
    MG_OFF: ("micrograd", False),
    TORCH: ("torch", True),
}


def progress(message: str) -> None:
    print(message, flush=True)


class Session:
    """The workers of one run, the notes about failures, and the results gathered so far."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.notes: list[str] = []
        self.workers: dict[str, Worker] = {}
        self.results: dict[str, Any] = {"config": config, "environment": environment(), "notes": self.notes}

    def start(self, labels: list[str]) -> None:
        script = str(Path(__file__).resolve())
        for label in labels:
            engine, gc_on = VARIANTS[label]
            argv = [sys.executable, script, "--worker", engine, "--gc", "on" if gc_on else "off"]
            self.workers[label] = Worker(argv, label)
        versions = {}
        for label, worker in list(self.workers.items()):
            hello = self.call(label, "hello")
            if hello is None:
                worker.close()
                del self.workers[label]
            else:
                versions[label] = hello["version"]
        self.results["versions"] = versions
        progress("engines: " + ", ".join(f"{label} {versions[label]}" for label in self.workers))

    def call(self, label: str, task: str, **params: Any) -> Any:
        """The worker's answer, or None (noted) if the task failed or the worker is gone."""
        worker = self.workers.get(label)
        if worker is None or not worker.alive:
            return None
        try:
            return worker.call(task, **params)
        except WorkerError as error:
            self.notes.append(f"{label}: {error}")
            progress(f"  ! {label}: {str(error).splitlines()[0]}")
            return None

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


def measure_memory(session: Session) -> None:
    """(b), run first, while the workers are fresh (RSS growth means little once a graph has been freed)."""
    n = session.config["memory_ops"]
    progress(f"[b] bytes per node: {n:,}-operation chain ...")
    session.results["memory"] = {
        label: session.call(label, "memory", n_ops=n)
        for label in (TBP, MG_ON, TORCH)
        if label in session.workers
    }


def measure_chain(session: Session) -> None:
    """(a) the 100k-operation chain, every variant interleaved."""
    n, repeats = session.config["chain_ops"], session.config["repeats_chain"]
    progress(f"[a] chain of {n:,} operations x {repeats} repeats ...")
    raw = interleaved(
        {label: (lambda label=label: session.call(label, "chain", n_ops=n)) for label in session.workers},
        repeats,
        collect=False,  # each worker collects its own garbage before a repeat
    )
    session.results["chain"] = {
        label: _chain_summary([s for s in samples if s]) for label, samples in raw.items()
    }


def _timed_steps(session: Session, labels: list[str], *, binary: bool) -> dict[str, Any]:
    """Set up the demo's step in each worker of ``labels``, then time the steps, interleaved."""
    config = session.config
    setups = {
        label: session.call(label, "mlp_setup", n_points=config["moons"], binary=binary) for label in labels
    }
    ready = [label for label, setup in setups.items() if setup]
    raw = interleaved(
        {
            label: (lambda label=label: session.call(label, "mlp", min_time=config["mlp_min_time"]))
            for label in ready
        },
        config["repeats_mlp"],
        collect=False,
    )
    timings = {}
    for label, samples in raw.items():
        steps = [s for s in samples if s]
        per_sample = [sum(s) / len(s) for s in steps]
        timings[label] = {
            **setups[label],
            "step_samples_s": per_sample,
            "steps_timed": sum(len(s) for s in steps),
            "step_median_s": median(per_sample),
        }
    return timings


def measure_mlp(session: Session) -> None:
    """(c) the micrograd demo's training step, each library with its own MLP."""
    config = session.config
    progress(
        f"[c] MLP(2, [16, 16, 1]) training step on {config['moons']} two-moons points "
        f"x {config['repeats_mlp']} repeats ..."
    )
    session.results["mlp"] = _timed_steps(session, list(session.workers), binary=False)


def measure_binary(session: Session) -> None:
    """(c2) the step on the identical binary graph: tinygrad_bp fused=False against micrograd."""
    progress(f"[c2] the same step on micrograd's binary graph x {session.config['repeats_mlp']} repeats ...")
    labels = [label for label in (TBP, TBP_OFF, MG_OFF, MG_ON) if label in session.workers]
    session.results["binary"] = _timed_steps(session, labels, binary=True)


def measure_scale(session: Session) -> None:
    """(d) cost per operation at the small and the large size."""
    config = session.config
    small, large = config["scale_small"], config["scale_large"]
    progress(f"[d] chain cost at {small:,} and {large:,} operations x {config['repeats_scale']} repeats ...")
    measures = {}
    for label in session.workers:
        # A small chain takes a few ms, and short samples are the ones a competing process distorts
        # most, so it runs several times per repeat; every run is one sample.
        measures[(label, small)] = lambda label=label: [
            session.call(label, "chain", n_ops=small) for _ in range(config["small_runs_per_repeat"])
        ]
        measures[(label, large)] = lambda label=label: [session.call(label, "chain", n_ops=large)]
    raw = interleaved(measures, config["repeats_scale"], collect=False)
    scale: dict[str, Any] = {}
    for (label, size), runs in raw.items():
        scale.setdefault(label, {})[str(size)] = _chain_summary([s for run in runs for s in run if s])
    session.results["scale"] = scale


def measure_million(session: Session) -> None:
    """The 1,000,000-operation chain in the tinygrad_bp worker, which never changes the recursion limit."""
    n = session.config["million_ops"]
    progress(f"[1M] chain of {n:,} operations, forward + backward ...")
    worker = session.workers[TBP]
    try:
        session.results["million"] = {"ok": True, **worker.call("million", n_ops=n)}
    except WorkerError as error:
        session.results["million"] = {"ok": False, "error": str(error)}


def run(config: dict[str, Any], json_path: str | None, *, quick: bool) -> dict[str, Any]:
    """Measure everything, print the report, and write the JSON if asked."""
    began = clock()
    session = Session(config)
    env = session.results["environment"]
    progress(
        "tinygrad_bp engine benchmark" + (" (--quick: tiny sizes, numbers not meaningful)" if quick else "")
    )
    progress(
        f"python {env['python']} on {env['platform']}, {env['cpus']} CPUs, "
        f"load average {_load(env['loadavg_at_start'])}, gc threshold {env['gc_threshold']}"
    )
    refs = {
        "micrograd": reference_status("micrograd", "micrograd", "0.1.0", INSTALL_MICROGRAD),
        "torch": reference_status("torch", "torch", "2.13.0", INSTALL_TORCH),
    }
    for status in refs.values():
        if status["message"]:
            progress(status["message"])
    labels = [TBP, TBP_OFF]
    if refs["micrograd"]["available"]:
        labels += [MG_ON, MG_OFF]
    if refs["torch"]["available"]:
        labels.append(TORCH)
    session.results["references"] = refs
    try:
        session.start(labels)
        measure_memory(session)
        measure_chain(session)
        measure_mlp(session)
        measure_binary(session)
        measure_scale(session)
        measure_million(session)
    finally:
        session.close()
    results = session.results
    results["seconds"] = clock() - began
    try:
        env["loadavg_at_end"] = os.getloadavg()
    except OSError:
        env["loadavg_at_end"] = None
    report(results, quick=quick)
    if json_path:
        write_json(json_path, results)
        print(f"\nwrote {json_path}")
    return results


def _chain_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    if not samples:
        return {}
    ops = samples[0]["ops"]
    fw = [per(s["forward_s"], ops) for s in samples]
    bw = [per(s["backward_s"], ops) for s in samples]
    total = [per(s["forward_s"] + s["backward_s"], ops) for s in samples]
    return {
        "ops": ops,
        "forward_ns_per_op": median(fw),
        "backward_ns_per_node": median(bw),
        "total_ns_per_op": median(total),
        "total_min_ns_per_op": min(total),
        "total_spread": spread(total),
        "forward_samples_ns": fw,
        "backward_samples_ns": bw,
        "value": samples[0]["value"],
        "grad_a": samples[0]["grad_a"],
    }


def _get(d: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _load(load: Any) -> str:
    return "unknown" if not load else f"{load[0]:.2f}"


def _per_node(m: dict[str, Any] | None, key: str) -> float | None:
    if not m or m.get(key) is None:
        return None
    return m[key] / m["ops"]


def _k(size: int | str) -> str:
    size = int(size)
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else f"{size:,}"


def report_chain(results: dict[str, Any]) -> None:
    chain = results.get("chain", {})
    tbp_total = _get(chain, TBP, "total_ns_per_op")
    rows = [
        [
            label,
            fmt_ns(s["forward_ns_per_op"]),
            fmt_ns(s["backward_ns_per_node"]),
            fmt_ns(s["total_ns_per_op"]),
            fmt_ns(s["total_min_ns_per_op"]),
            f"{100 * s['total_spread']:.0f}%",
            fmt_ratio(ratio(s["total_ns_per_op"], tbp_total)),
        ]
        for label, s in chain.items()
        if s
    ]
    ops = _get(chain, TBP, "ops") or 0
    print_table(
        f"(a) chain x = relu(x*a + b), {ops:,} operations (medians of {results['config']['repeats_chain']})",
        [
            "engine",
            "forward ns/op",
            "backward ns/node",
            "total ns/op",
            "(min)",
            "spread",
            "time / tinygrad_bp",
        ],
        rows,
    )
    grads = {label: s["grad_a"] for label, s in chain.items() if s}
    if TBP in grads:
        ref = grads[TBP]
        agree = all(abs(g - ref) <= 1e-9 * max(1.0, abs(ref)) for g in grads.values())
        shown = ", ".join(f"{label}: {g:.12g}" for label, g in grads.items() if label in (TBP, MG_ON, TORCH))
        print(f"    d out/d a agrees across engines: {'yes' if agree else 'NO'} ({shown})")


def report_memory(results: dict[str, Any]) -> None:
    memory = results.get("memory", {})
    tbp_traced = _per_node(memory.get(TBP), "traced_bytes")
    rows = []
    for label, m in memory.items():
        if not m:
            continue
        traced, rss = _per_node(m, "traced_bytes"), _per_node(m, "rss_bytes")
        by_rss = label == TORCH
        rows.append(
            [
                label.replace(" (gc on)", ""),
                fmt_bytes(traced),
                fmt_bytes(rss),
                "RSS" if by_rss else "tracemalloc",
                fmt_ratio(ratio(tbp_traced, rss if by_rss else traced)),
            ]
        )
    print_table(
        f"(b) bytes per node while building a {results['config']['memory_ops']:,}-operation chain "
        "(fresh processes)",
        ["engine", "tracemalloc B/node", "RSS growth B/node", "compared by", "tinygrad_bp / engine"],
        rows,
    )
    print("    tracemalloc sees only Python's heap; torch's autograd nodes are C++ allocations, so torch is")
    print("    compared by the growth of the process's resident memory.")


def _step_rows(steps: dict[str, Any]) -> list[list[str]]:
    tbp_step = _get(steps, TBP, "step_median_s")
    return [
        [
            label,
            fmt_ms(1e3 * s["step_median_s"]),
            f"{100 * spread(s['step_samples_s']):.0f}%",
            str(s["steps_timed"]),
            f"{s['op_nodes']:,}",
            f"{s['initial_loss']:.6f}",
            fmt_ratio(ratio(s["step_median_s"], tbp_step), 1),
        ]
        for label, s in steps.items()
    ]


def report_mlp(results: dict[str, Any]) -> None:
    mlp = results.get("mlp", {})
    config = results["config"]
    columns = ["engine", "ms/step", "spread", "steps", "op nodes/step", "initial loss", "time / tinygrad_bp"]
    print_table(
        f"(c) training step, MLP(2, [16, 16, 1]) on {config['moons']} two-moons points: forward + backward "
        f"+ SGD, each library's own MLP (medians of {config['repeats_mlp']})",
        columns,
        _step_rows(mlp),
    )
    if TBP in mlp:
        print(f"    tinygrad_bp model: {mlp[TBP]['kind']}")
    print("    gc on: steps run back to back, each paying for collecting the garbage of the steps before it,")
    print("    as in a training loop; gc off: gc.disable(), with an untimed gc.collect() between steps.")
    binary = results.get("binary", {})
    if binary:
        print_table(
            "(c2) the same step on the identical binary graph (MLP(fused=False) and Python's sum)",
            columns,
            _step_rows(binary),
        )


def report_scale(results: dict[str, Any]) -> None:
    config = results["config"]
    small, large = str(config["scale_small"]), str(config["scale_large"])
    rows = []
    for label, sizes in results.get("scale", {}).items():
        a, b = sizes.get(small, {}), sizes.get(large, {})
        rows.append(
            [
                label,
                fmt_ns(a.get("forward_ns_per_op")),
                fmt_ns(b.get("forward_ns_per_op")),
                fmt_ns(a.get("backward_ns_per_node")),
                fmt_ns(b.get("backward_ns_per_node")),
                fmt_ns(a.get("total_ns_per_op")),
                fmt_ns(b.get("total_ns_per_op")),
                fmt_ratio(ratio(b.get("total_ns_per_op"), a.get("total_ns_per_op"))),
            ]
        )
    s, g = _k(small), _k(large)
    print_table(
        f"(d) ns per operation of the chain, {int(small):,} versus {int(large):,} operations "
        f"(medians of {config['repeats_scale'] * config['small_runs_per_repeat']} "
        f"and {config['repeats_scale']})",
        [
            "engine",
            f"fw {s}",
            f"fw {g}",
            f"bw {s}",
            f"bw {g}",
            f"total {s}",
            f"total {g}",
            f"{g}/{s}",
        ],
        rows,
    )


def report_million(results: dict[str, Any]) -> None:
    million = results.get("million", {})
    if million.get("ok"):
        print(
            f"\n{million['ops']:,}-operation chain (tinygrad_bp, gc on): "
            f"forward {million['forward_s']:.2f} s, "
            f"backward {million['backward_s']:.2f} s, freeing the graph {million['free_s']:.2f} s, "
            f"recursion limit {million['recursion_limit']}"
        )
    else:
        print(f"\nmillion-operation chain FAILED: {million.get('error')}")


def report_targets(results: dict[str, Any], *, quick: bool) -> None:
    mlp, memory, scale, million = (results.get(k, {}) for k in ("mlp", "memory", "scale", "million"))
    config = results["config"]
    tbp_step = _get(mlp, TBP, "step_median_s")
    speed_on = ratio(_get(mlp, MG_ON, "step_median_s"), tbp_step)
    speed_off = ratio(_get(mlp, MG_OFF, "step_median_s"), tbp_step)
    mem = ratio(_per_node(memory.get(TBP), "traced_bytes"), _per_node(memory.get(MG_ON), "traced_bytes"))
    small, large = str(config["scale_small"]), str(config["scale_large"])
    growth = ratio(_get(scale, TBP, large, "total_ns_per_op"), _get(scale, TBP, small, "total_ns_per_op"))

    def check(value: float | None, passed: Callable[[float], bool]) -> bool | None:
        return None if value is None else passed(value)

    if million.get("ok"):
        measured = (
            f"{million['forward_s'] + million['backward_s']:.2f} s (limit {million['recursion_limit']})"
        )
    else:
        measured = "failed"
    chain = results.get("chain", {})
    chain_speed = ratio(_get(chain, MG_OFF, "total_ns_per_op"), _get(chain, TBP, "total_ns_per_op"))
    binary = results.get("binary", {})
    binary_speed = ratio(_get(binary, MG_OFF, "step_median_s"), _get(binary, TBP, "step_median_s"))
    chain_ops = _get(chain, TBP, "ops") or config["chain_ops"]
    rows = [
        (
            f"(a) {_k(chain_ops)}-op chain fw+bw vs micrograd gc off",
            ">= 2.5x faster",
            fmt_ratio(chain_speed, 2),
            check(chain_speed, lambda r: r >= 2.5),
        ),
        (
            "(c) step, own MLPs, vs micrograd gc off",
            ">= 8x faster",
            fmt_ratio(speed_off, 1),
            check(speed_off, lambda r: r >= 8),
        ),
        (
            "(c2) step, identical binary graph, vs gc off",
            ">= 2.5x faster",
            fmt_ratio(binary_speed, 2),
            check(binary_speed, lambda r: r >= 2.5),
        ),
        ("(b) bytes/node vs micrograd", "<= 0.2x", fmt_ratio(mem), check(mem, lambda r: r <= 0.2)),
        (
            "(c) step vs micrograd gc on",
            ">= 10x faster",
            fmt_ratio(speed_on, 1),
            check(speed_on, lambda r: r >= 10),
        ),
        (
            f"(d) ns/op {_k(large)} vs {_k(small)}",
            "<= 1.5x",
            fmt_ratio(growth),
            check(growth, lambda r: r <= 1.5),
        ),
        (
            f"{_k(config['million_ops'])}-op chain fw+bw",
            "completes at limit 1000",
            measured,
            bool(million.get("ok")) and million.get("recursion_limit") == 1000,
        ),
    ]
    title = "targets (tinygrad_bp with the garbage collector on, medians)"
    if quick:
        title += " -- QUICK RUN: sizes too small for these verdicts to mean anything"
    print_targets(title, rows)


def report(results: dict[str, Any], *, quick: bool) -> None:
    """Print every table, the targets, and the notes."""
    report_chain(results)
    report_memory(results)
    report_mlp(results)
    report_scale(results)
    report_million(results)
    report_targets(results, quick=quick)
    for note in results["notes"]:
        print(f"note: {note}")
    env = results["environment"]
    print(
        f"\ntotal time {results['seconds']:.0f} s; "
        f"load average {_load(env['loadavg_at_start'])} at the start, "
        f"{_load(env.get('loadavg_at_end'))} at the end, on {env['cpus']} CPUs"
    )
    loads = [x for x in (env["loadavg_at_start"], env.get("loadavg_at_end")) if x]
    if env["cpus"] and any(load[0] > 0.5 * env["cpus"] for load in loads):
        print(
            "warning: other processes were competing for the CPUs: expect wide spreads; "
            "rerun on a quiet machine"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 repeat: a smoke run (seconds)")
    parser.add_argument(
        "--json", metavar="PATH", help="also write every number (and the raw samples) to PATH"
    )
    parser.add_argument("--repeats", type=int, help="repeats for every section (default: 7, 7 and 5)")
    parser.add_argument("--worker", choices=sorted(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--gc", choices=["on", "off"], default="on", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, gc_enabled=args.gc == "on")
        return 0
    config = dict(QUICK if args.quick else FULL)
    if args.repeats:
        for key in ("repeats_chain", "repeats_mlp", "repeats_scale"):
            config[key] = max(1, args.repeats)
    with gc_state(enabled=True):
        run(config, args.json, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
