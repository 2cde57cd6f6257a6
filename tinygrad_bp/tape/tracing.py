"""trace(): record a tape by running a function once on an example, with the checks for later replays."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from tinygrad_bp.value import Value, observed

from .recording import (
    ArrayLike,
    Check,
    Shape,
    _checked_capture,
    _Escape,
    _Guard,
    _make_inputs,
    _output_of,
    _roles,
    _structure,
    _TraceLog,
)
from .replay import Tape, _as_array

# =================================================================================================
# trace: record by running fn once, keeping what is needed to check later replays
# =================================================================================================


def _arg_names(fn: Callable[..., Any], count: int) -> list[str]:
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [names[i] if i < len(names) else f"a{i}" for i in range(count)]


def _input_names(fn: Callable[..., Any], shapes: Sequence[Shape]) -> list[str]:
    names = []
    for base, shape in zip(_arg_names(fn, len(shapes)), shapes):
        if shape == ():
            names.append(base)
        else:
            names += [f"{base}[{i}]" for i in range(shape[0])]
    return names


def _example_shape(a: ArrayLike, i: int) -> Shape:
    array = _as_array(a, i)
    if array.ndim > 1:
        raise ValueError(f"example argument {i} has shape {array.shape}: use numbers or flat vectors")
    return tuple(array.shape)


def _guard(ids: dict[int, int], subject: Value, op: str, other: object, result: bool) -> _Guard:
    """A logged comparison as a guard over node ids (a number stays a number)."""
    rhs = ids[id(other)] if isinstance(other, Value) else float(other)  # type: ignore[arg-type]
    return _Guard(ids[id(subject)], op, rhs, result)


def trace(
    fn: Callable[..., Any], *example: ArrayLike, params: Sequence[Value] | None = None, check: Check = "first"
) -> Tape:
    """Run ``fn`` once on Values made from ``example`` and record its graph as a checked tape.

    ``fn(*args)`` gets one Value per number and a list of Values per vector of ``example``, and
    returns the per-sample output Value (or a pair ``(output, aux)`` of the output and a list of
    Values to report, such as the model's outputs; only the output is differentiated). ``params``
    are the Values whose gradients replays return (default: every other leaf that requires grad).

    While ``fn`` runs, comparisons of Values become guards checked on every replayed sample, and
    reads of values out of the graph are noted (see the module docstring); ``check`` is the
    default re-tracing mode of replays: ``"first"`` sample of each batch, ``"all"`` or ``"none"``.
    A ``check`` too weak for what ``fn`` did raises TapeMismatchError here.
    """
    shapes = [_example_shape(a, i) for i, a in enumerate(example)]
    names = _input_names(fn, shapes)
    values, inputs = _make_inputs(example, names)
    log = _TraceLog()
    with observed(log):
        result = fn(*values)
    output, aux = _output_of(result)
    extras = [v for c in log.comparisons for v in (c[0], c[2]) if isinstance(v, Value)]
    extras += [e[0] for e in log.escapes if e[0] is not None]
    graph, ids = _checked_capture([output, *aux, *extras], inputs, params, n_outputs=1 + len(aux))
    guards = [_guard(ids, *comparison) for comparison in log.comparisons]
    escapes = [_Escape(None if v is None else ids[id(v)], how, where) for v, how, where in log.escapes]
    roots = [output, *aux] if aux else output  # aux outputs are checked on re-tracing too
    structure = _structure(roots, _roles("p", graph.params), _roles("x", inputs))
    return Tape(graph, shapes, names, structure=structure, fn=fn, guards=guards, escapes=escapes, check=check)
