"""Recording a graph for the tape: the trace observer, and the Wengert list of one sample's graph."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from tinygrad_bp.engine import toposort
from tinygrad_bp.errors import TapeMismatchError
from tinygrad_bp.rules import RULES, Rule
from tinygrad_bp.value import Value

try:
    import numpy as np
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError("tinygrad_bp.tape needs numpy: pip install 'tinygrad_bp[numpy]'") from _error


Check = Literal["none", "first", "all"]
Reduction = Literal["mean", "sum"]
ArrayLike = Any
Shape = tuple[int, ...]

#: Replay checks, weakest first: re-trace no sample, the first sample of each batch, every sample.
CHECK_MODES: tuple[str, ...] = ("none", "first", "all")

_V, _U = 0, 1  # the two value stores: per-sample rows (n x batch) and uniform rows (n x 1)
_DATA = operator.attrgetter("_data")  # a replay reads params and constants without the trace hook


# =================================================================================================
# Watching a trace: comparisons become guards, reads of values become escapes
# =================================================================================================


@dataclass(frozen=True)
class _Guard:
    """``subject <op> other`` gave ``result`` while tracing; node ids, or a float for ``other``."""

    subject: int
    op: str
    other: int | float
    result: bool


@dataclass(frozen=True)
class _Escape:
    """A value left the graph (``how``) at ``where``; ``node`` is None for a no_grad block."""

    node: int | None
    how: str
    where: str


# Modules whose reads of .data and .grad are the operations themselves, not the user's control flow.
_OWN_MODULES = frozenset(
    {
        "tinygrad_bp.value",
        "tinygrad_bp.engine",
        "tinygrad_bp.rules",
        "tinygrad_bp.expressions",
        "tinygrad_bp.custom",
    }
)


def _own(frame: Any) -> bool:
    """True when ``frame`` runs the library's own operation code, or the tape's own package."""
    name = frame.f_globals.get("__name__", "")
    return name in _OWN_MODULES or name.startswith("tinygrad_bp.tape")


_COMPREHENSIONS = ("<genexpr>", "<listcomp>", "<dictcomp>", "<setcomp>")


class _TraceLog:
    """What one run of ``fn`` did with values: the observer the value layer reports to.

    :func:`tinygrad_bp.value.observed` installs it for this thread while ``fn``
    runs: the value layer calls :meth:`compare` for each comparison of Values
    and :meth:`escape` for each number read out of the graph. Nothing of
    Value's is swapped; other threads are not observed.
    """

    def __init__(self) -> None:
        self.comparisons: list[tuple[Value, str, object, bool]] = []
        self.escapes: list[tuple[Value | None, str, str]] = []

    def compare(self, subject: Value, op: str, other: object, result: bool) -> None:
        """``subject <op> other`` gave ``result``: kept as a guard."""
        self.comparisons.append((subject, op, other, result))

    def escape(self, node: Value | None, how: str, frame: Any) -> None:
        """A number left the graph at ``frame`` (the library's own operations reading .data do not count)."""
        if how in (".data", ".grad"):
            if _own(frame):
                return
        else:
            while frame.f_back is not None and _own(frame):
                frame = frame.f_back
        self.escapes.append((node if how != ".grad" else None, how, _where(frame)))


def _where(frame: Any) -> str:
    """``file:line (function)`` of ``frame``; a comprehension names the function it is in."""
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    while frame.f_back is not None and frame.f_code.co_name in _COMPREHENSIONS:
        frame = frame.f_back
    return f"{where} ({frame.f_code.co_name})"


# =================================================================================================
# Capturing a graph: the Wengert list
# =================================================================================================


class Instruction(NamedTuple):
    """One line of the Wengert list: node ``out`` = ``op`` applied to the nodes ``args``, in order.

    Node ids: inputs first, then params, then constants, then one per instruction.
    """

    out: int
    op: str
    args: tuple[int, ...]


@dataclass(frozen=True)
class _Graph:
    """A captured graph: leaves by kind, the instructions in topological order, the output."""

    n_inputs: int
    params: tuple[Value, ...]
    constants: tuple[Value, ...]
    instructions: tuple[Instruction, ...]
    rules: tuple[Rule, ...]
    outputs: tuple[int, ...]  # node ids of the output and of the aux outputs
    n_output_instructions: int  # the instructions the output depends on come first

    @property
    def n_leaves(self) -> int:
        return self.n_inputs + len(self.params) + len(self.constants)


def _structure(
    roots: Value | Sequence[Value], params: dict[int, tuple[str, int]], inputs: dict[int, tuple[str, int]]
) -> list[Any]:
    """The canonical structure of the graph of ``roots`` (the output, then any aux outputs).

    One entry per node, in topological order: a node is ``(op, positions of its operands)``, an
    input or a param ``("x", i)``/``("p", j)`` (from the role maps ``inputs``/``params``), any
    other leaf ``("c", value)`` (``("?", value)`` if it requires grad). With several roots, each
    is followed by ``("out", its position)``. Equal lists mean the same graph up to the identity
    of the input Values. One depth-first pass in :func:`tinygrad_bp.toposort`'s order; a node
    gets its position when finished.
    """
    several = not isinstance(roots, Value)
    entries: list[Any] = []
    position: dict[int, int] = {}
    for root in [roots] if isinstance(roots, Value) else roots:
        if id(root) not in position:
            position[id(root)] = -1
            stack: list[tuple[Value, int]] = [(root, 0)]
            while stack:
                node, i = stack.pop()
                inputs_ = node.inputs
                n = len(inputs_)
                while i < n:
                    child = inputs_[i]
                    i += 1
                    key = id(child)
                    if key in position:
                        continue
                    if child.inputs:
                        position[key] = -1
                        stack.append((node, i))
                        stack.append((child, 0))
                        break
                    position[key] = len(entries)  # a leaf is finished at once
                    role = params.get(key) or inputs.get(key)
                    entries.append(role or ("?" if child.requires_grad else "c", child.data))
                else:
                    position[id(node)] = len(entries)
                    if n:
                        entries.append((node.op, tuple([position[id(a)] for a in inputs_])))
                    else:
                        key = id(node)
                        role = params.get(key) or inputs.get(key)
                        entries.append(role or ("?" if node.requires_grad else "c", node.data))
        if several:
            entries.append(("out", position[id(root)]))
    return entries


def _roles(kind: str, values: Sequence[Value]) -> dict[int, tuple[str, int]]:
    """id(Value) -> (kind, index): how a structure names inputs ("x") and params ("p")."""
    return {id(v): (kind, i) for i, v in enumerate(values)}


def _describe_entry(entry: tuple[Any, ...] | None) -> str:
    if entry is None:
        return "nothing"
    kind, what = entry
    if kind in ("x", "p"):
        return f"{'input' if kind == 'x' else 'param'} #{what}"
    if kind in ("c", "?"):
        return f"{'a constant' if kind == 'c' else 'a leaf that requires grad'} {what!r}"
    return f"{kind} of {len(what)} operand(s) at positions {list(what)[:6]}{'...' if len(what) > 6 else ''}"


def _leaf_name(node: Value) -> str:
    return f"{node.label!r}" if node.label else f"Value({node.data!r})"


def _classify_leaves(
    order: Sequence[Value], ids: dict[int, int], params: list[Value], discover: bool
) -> list[Value]:
    """The constants in order of appearance; with ``discover``, appends new params to ``params``."""
    constants = []
    seen_constants: set[int] = set()
    for node in order:
        if node.inputs or id(node) in ids or id(node) in seen_constants:
            continue
        if node.requires_grad:
            if not discover:
                raise TapeMismatchError(
                    f"the leaf {_leaf_name(node)} requires grad but is neither an input nor one of the "
                    "tape's params: list it in params=..., or make it a constant (requires_grad=False)"
                )
            ids[id(node)] = -1  # a placeholder: params get their ids below
            params.append(node)
        else:
            seen_constants.add(id(node))
            constants.append(node)
    return constants


def _capture(
    roots: Sequence[Value], inputs: Sequence[Value], params: Sequence[Value] | None, n_outputs: int = 1
) -> tuple[_Graph, dict[int, int]]:
    """The graph of ``roots`` (the output, aux outputs, guard subjects) as a Wengert list.

    Returns the graph and the map id(Value) -> node id. ``params=None`` discovers the params:
    every leaf that requires grad and is not an input, in order of appearance.
    """
    order = toposort(roots)
    ids = {id(x): i for i, x in enumerate(inputs)}
    param_list = list(params) if params is not None else []
    for p in param_list:
        if id(p) in ids:
            raise ValueError(f"the Value {_leaf_name(p)} is listed twice among inputs and params")
        ids[id(p)] = -1
    constants = _classify_leaves(order, ids, param_list, discover=params is None)
    n_in, n_p = len(inputs), len(param_list)
    ids.update({id(p): n_in + j for j, p in enumerate(param_list)})
    ids.update({id(c): n_in + n_p + k for k, c in enumerate(constants)})
    n_leaves = n_in + n_p + len(constants)
    instructions: list[Instruction] = []
    n_output_instructions = 0
    for node in order:
        if node.inputs:
            out = n_leaves + len(instructions)
            ids[id(node)] = out
            instructions.append(Instruction(out, node.op, tuple([ids[id(a)] for a in node.inputs])))
        if node is roots[0]:
            n_output_instructions = len(instructions)  # roots[0]'s graph is listed first
    graph = _Graph(
        n_inputs=n_in,
        params=tuple(param_list),
        constants=tuple(constants),
        instructions=tuple(instructions),
        rules=tuple(RULES[ins.op] for ins in instructions),
        outputs=tuple(ids[id(r)] for r in roots[:n_outputs]),
        n_output_instructions=n_output_instructions,
    )
    return graph, ids


def _check_output(output: object) -> Value:
    if not isinstance(output, Value):
        raise TypeError(f"the output must be one Value (a per-sample scalar), not {type(output).__name__}")
    return output


def _output_of(result: object) -> tuple[Value, list[Value]]:
    """fn's result as (output, aux outputs): a Value, or a pair (Value, sequence of Values)."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Value):
        aux = result[1]
        aux = [aux] if isinstance(aux, Value) else list(aux)
        for a in aux:
            _check_output(a)
        return result[0], aux
    return _check_output(result), []


def _checked_capture(
    roots: Sequence[Value], inputs: Sequence[Value], params: Sequence[Value] | None, n_outputs: int = 1
) -> tuple[_Graph, dict[int, int]]:
    """_capture, with an unlisted grad-requiring leaf reported as ValueError (a usage error)."""
    for j, p in enumerate(params or ()):
        if not isinstance(p, Value):
            raise TypeError(f"params[{j}] is a {type(p).__name__}, not a Value")
    try:
        return _capture(roots, inputs, params, n_outputs)
    except TapeMismatchError as error:
        raise ValueError(str(error)) from None


def _make_inputs(sample: Sequence[ArrayLike], names: Sequence[str]) -> tuple[list[Any], list[Value]]:
    """Fresh input Values for one sample: (fn's arguments, the flat list of input Values)."""
    args: list[Any] = []
    flat: list[Value] = []
    for a in sample:
        array = np.asarray(a, dtype=np.float64)
        made = [Value(float(v), names[len(flat) + i]) for i, v in enumerate(array.reshape(-1).tolist())]
        flat += made
        args.append(made[0] if array.ndim == 0 else made)
    return args, flat
