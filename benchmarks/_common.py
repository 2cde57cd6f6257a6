"""Shared helpers for the benchmark scripts in this folder (not a test, not part of the package).

What lives here:

* timing: :func:`repeat` (median-of-repeats with ``gc.collect()`` between
  repeats), :func:`interleaved` (round-robin over several measurements so
  that machine drift hits all of them alike), :func:`timed_steps` (a training
  step timed the way users run it, with the garbage collector on or off),
  :func:`gc_state`, :data:`GC_VARIANTS`, :func:`deep_call` (for engines whose
  backward pass recurses, such as micrograd's);
* memory: :func:`traced_bytes` (tracemalloc) and :func:`rss_bytes`;
* numbers: :func:`median`, :func:`spread`, :func:`ratio`, :func:`per`;
* output: :func:`print_table`, :func:`print_targets`, :func:`verdict`,
  formatting helpers, :func:`environment`, :func:`write_json`;
* reference engines: :func:`reference_status` says whether micrograd/torch are
  importable (without importing them) and how to install them;
* isolation: :class:`Worker` / :func:`serve`, a tiny JSON-lines protocol that
  runs each engine in its own Python process. Python's garbage collector
  scans every tracked object in the process, so an engine measured in a
  process that has imported torch (about 150,000 extra objects) pays for
  torch's objects on every full collection; one process per engine avoids
  that, and the parent can still interleave the measurements.

Everything uses ``time.perf_counter`` and only the standard library.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = [
    "GC_VARIANTS",
    "Worker",
    "WorkerError",
    "deep_call",
    "environment",
    "fmt_bytes",
    "fmt_ms",
    "fmt_ns",
    "fmt_ratio",
    "gc_state",
    "interleaved",
    "median",
    "per",
    "print_table",
    "print_targets",
    "ratio",
    "reference_status",
    "repeat",
    "rss_bytes",
    "serve",
    "spread",
    "timed_steps",
    "traced_bytes",
    "verdict",
    "write_json",
]

# (label suffix, gc enabled) for "an engine with the garbage collector on / off".
GC_VARIANTS: tuple[tuple[str, bool], ...] = (("gc on", True), ("gc off", False))


# --- numbers -------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else math.nan


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how noisy a set of repeats was (0.10 = 10 %)."""
    if len(values) < 2:
        return 0.0
    mid = median(values)
    return (max(values) - min(values)) / mid if mid else math.nan


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing, NaN or the denominator is 0."""
    if numerator is None or denominator is None:
        return None
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return None
    return numerator / denominator


def per(seconds: float, count: int, unit: float = 1e9) -> float:
    """seconds / count in ``unit`` (default: nanoseconds per item)."""
    return seconds / count * unit


# --- formatting ------------------------------------------------------------------


def fmt_ns(value: float | None) -> str:
    """A duration in nanoseconds, for tables."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    """A duration in milliseconds, for tables."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def fmt_bytes(value: float | None) -> str:
    """A byte count, for tables."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.0f}"


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    """A ratio as ``12.34x``, or ``-`` when missing."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}x"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    print()
    print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def verdict(passed: bool | None) -> str:
    """PASS, FAIL, or SKIP (None: not measurable in this run)."""
    return "SKIP" if passed is None else "PASS" if passed else "FAIL"


def print_targets(title: str, rows: Sequence[tuple[str, str, str, bool | None]]) -> None:
    """Print (target name, target, measured, passed) rows with PASS/FAIL/SKIP."""
    print_table(
        title, ["target", "wanted", "measured", "result"], [(n, t, m, verdict(p)) for n, t, m, p in rows]
    )


# --- timing ----------------------------------------------------------------------------


@contextlib.contextmanager
def gc_state(enabled: bool) -> Iterator[None]:
    """Run the block with the garbage collector on (``True``) or off, then restore the previous state."""
    was = gc.isenabled()
    if enabled:
        gc.enable()
    else:
        gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def repeat(measure: Callable[[], Any], repeats: int, *, collect: bool = True) -> list[Any]:
    """Call ``measure()`` ``repeats`` times, with ``gc.collect()`` before each call (untimed).

    ``measure`` times itself (with ``time.perf_counter``) and returns its
    numbers, so setup and teardown stay outside the timed region.
    """
    results = []
    for _ in range(repeats):
        if collect:
            gc.collect()
        results.append(measure())
    return results


def interleaved(
    measures: dict[str, Callable[[], Any]], repeats: int, *, collect: bool = True
) -> dict[str, list[Any]]:
    """Round-robin: repeat r calls every measure once, in an order rotated by r.

    Slow drift of a shared machine (other jobs, clock changes) then spreads
    over all measures instead of biasing the one that happened to run last.
    """
    names = list(measures)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            if collect:
                gc.collect()
            results[name].append(measures[name]())
    return results


def timed_steps(
    step: Callable[[], object],
    *,
    gc_enabled: bool,
    min_time: float = 0.2,
    min_steps: int = 1,
    max_steps: int = 1000,
    warmup: int = 1,
) -> list[float]:
    """Seconds taken by each of several consecutive calls of ``step`` (a training step, say).

    With ``gc_enabled`` the steps run back to back with the collector on, as a
    user's training loop does: a step pays for collecting the garbage of the
    steps before it. With the collector off, ``gc.collect()`` runs between
    steps, untimed (otherwise an engine whose graphs hold reference cycles,
    like micrograd, would never free them). ``warmup`` untimed steps run
    first; then steps run until ``min_time`` seconds and ``min_steps`` steps
    have been spent (at most ``max_steps``).
    """
    times: list[float] = []
    clock = time.perf_counter
    with gc_state(gc_enabled):
        for _ in range(warmup):
            step()
            if not gc_enabled:
                gc.collect()
        total = 0.0
        while len(times) < max_steps and (len(times) < min_steps or total < min_time):
            start = clock()
            step()
            elapsed = clock() - start
            times.append(elapsed)
            total += elapsed
            if not gc_enabled:
                gc.collect()
    return times


def deep_call(func: Callable[[], Any], *, recursion_limit: int, stack_bytes: int = 512 * 1024 * 1024) -> Any:
    """``func()`` in a fresh thread with a large C stack and a raised recursion limit.

    For reference engines whose backward pass recurses once per graph level
    (micrograd's ``build_topo``). The limit is restored afterwards. Returns
    what ``func`` returns; re-raises what it raises.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = func()
        except BaseException as error:  # noqa: BLE001 - handed back to the caller below
            outcome["error"] = error

    old_limit = sys.getrecursionlimit()
    old_stack = threading.stack_size()
    sys.setrecursionlimit(max(old_limit, recursion_limit))
    try:
        threading.stack_size(stack_bytes)
        thread = threading.Thread(target=target, name="deep_call")
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old_stack)
        sys.setrecursionlimit(old_limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# --- memory ------------------------------------------------------------------------------


def traced_bytes(build: Callable[[], Any]) -> tuple[int, Any]:
    """(bytes allocated through Python's allocators and still held, result) for ``build()``.

    tracemalloc sees the Python heap only: memory that C/C++ extensions get
    from ``malloc``/``new`` directly (PyTorch's autograd nodes) is invisible
    to it; use :func:`rss_bytes` in a fresh process for those.
    """
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = build()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return after - before, result


def rss_bytes() -> int | None:
    """This process's resident set size in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


# --- environment and reference engines ------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Python, platform and load figures, printed at the top of a run and stored in the JSON."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": load,
        "gc_threshold": gc.get_threshold(),
        "recursion_limit": sys.getrecursionlimit(),
    }


def reference_status(
    module: str, distribution: str, wanted_version: str, install_hint: str
) -> dict[str, Any]:
    """Whether a reference engine is importable, without importing it (so this process stays clean).

    Returns ``{"available", "version", "message"}``; ``message`` says what is
    missing and how to install it, or warns about an unexpected version.
    """
    if importlib.util.find_spec(module) is None:
        return {
            "available": False,
            "version": None,
            "message": f"{module} is not installed: its column is skipped. Install it with: {install_hint}",
        }
    version = _version(distribution)
    message = ""
    if version is not None and version.split("+")[0] != wanted_version:
        message = (
            f"note: {distribution} {version} is installed; the reference is {wanted_version} ({install_hint})"
        )
    return {"available": True, "version": version, "message": message}


def write_json(path: str, data: object) -> None:
    """Write ``data`` as indented JSON (NaN becomes null)."""

    def clean(x: object) -> object:
        if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    with open(path, "w", encoding="utf-8") as out:
        json.dump(clean(data), out, indent=2, sort_keys=False)
        out.write("\n")


# --- one process per engine ------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker process failed a task or died."""


class Worker:
    """A child Python process that runs measurements on request (see :func:`serve`).

    ``Worker([sys.executable, script, "--worker", "torch"])`` starts it; each
    :meth:`call` sends one JSON line ``{"task": name, **params}`` and waits
    for the one-line JSON answer. Timings are taken inside the worker, so the
    pipe adds nothing to them. A worker that dies (a crash, a stack overflow)
    raises :class:`WorkerError` and stays dead (:attr:`alive` is False).
    """

    def __init__(self, argv: Sequence[str], name: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the worker's stderr goes straight to ours
            text=True,
            bufsize=1,
            env=env,
        )
        self.alive = True

    def call(self, task: str, **params: Any) -> Any:
        """Run ``task`` in the worker and return its result."""
        if not self.alive:
            raise WorkerError(f"{self.name}: the worker is no longer running")
        process = self._process
        stdin, stdout = process.stdin, process.stdout
        if stdin is None or stdout is None:
            raise WorkerError(f"{self.name}: the worker has no pipes")
        try:
            stdin.write(json.dumps({"task": task, **params}) + "\n")
            stdin.flush()
            line = stdout.readline()
        except (BrokenPipeError, OSError) as error:
            line = ""
            detail = str(error)
        else:
            detail = ""
        if not line:
            self.alive = False
            code = process.wait()
            raise WorkerError(
                f"{self.name}: worker exited with code {code} during {task!r} {detail}".rstrip()
            )
        answer = json.loads(line)
        if "error" in answer:
            raise WorkerError(f"{self.name}: {task!r} failed:\n{answer['error']}")
        return answer["result"]

    def close(self) -> None:
        """Ask the worker to stop, and wait for it."""
        if self.alive:
            self.alive = False
            if self._process.stdin is not None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def serve(handlers: dict[str, Callable[..., Any]]) -> None:
    """The worker side of :class:`Worker`: answer JSON-line requests on stdin until it closes.

    While a handler runs, ``sys.stdout`` points at stderr, so stray prints
    cannot corrupt the protocol.
    """
    channel = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        task = request.pop("task")
        try:
            answer = {"result": handlers[task](**request)}
        except Exception:  # noqa: BLE001 - reported to the parent, which decides
            answer = {"error": traceback.format_exc()}
        channel.write(json.dumps(answer) + "\n")
        channel.flush()
