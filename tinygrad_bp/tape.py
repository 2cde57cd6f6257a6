"""Record once, replay fast: a tape (Wengert list) of a scalar graph, replayed on whole batches.

The scalar engine builds a fresh graph of :class:`~tinygrad_bp.Value` objects for every sample.
A *tape* records that graph ONCE, as the classic Wengert list: one line per operation, each
naming its operands, printable for teaching::

    >>> from tinygrad_bp import MLP
    >>> from tinygrad_bp.losses import half_sse
    >>> from tinygrad_bp.tape import trace
    >>> model = MLP(2, [2, 1], activation="sigmoid", output_activation="sigmoid", seed=0)
    >>> tape = trace(lambda x, t: half_sse(model(x), t), [0.05, 0.10], 0.01,
    ...              params=model.parameters())
    >>> print(tape)                                     # doctest: +ELLIPSIS
    # tape: inputs x[0], x[1], t; params p0..p8; 7 instructions, 5 kernels
    #   p0 = layer1.neuron0.w0
    ...
    v0 = linear(p0, p1, x[0], x[1], p2)
    v1 = sigmoid(v0)
    v2 = linear(p3, p4, x[0], x[1], p5)
    v3 = sigmoid(v2)
    v4 = linear(p6, p7, v1, v3, p8)
    v5 = sigmoid(v4)
    v6 = half_sse(v5, t)
    return v6
    >>> print(tape.kernels())
    level 1: 2 x linear (per sample), n=2: one (2x2) @ (2xB) matrix product
    level 2: 2 x sigmoid (per sample)
    level 3: 1 x linear (per sample), n=2: one (1x2) @ (2xB) matrix product
    level 4: 1 x sigmoid (per sample)
    level 5: 1 x half_sse (per sample)

and then replays it on new inputs, a single sample or a whole batch, without creating any Value:

* ``tape.forward(X, t)`` with ``X`` of shape (n, 2) and ``t`` of shape (n,) gives the n
  per-sample outputs; ``tape.backward()`` then gives d L / d param for the batch loss
  ``L = mean_i out_i`` (``reduction="mean"``, the default) or ``L = sum_i out_i`` (``"sum"``), and
  optionally d L / d input for every sample. ``tape.value_and_grad(X, t)`` does both at once.
* ``tape.run(x, t)`` replays the list one instruction at a time on Python floats, with the same
  rule functions as the engine (the textbook interpreter; also the reference for custom ops).

**Batch replay.** At record time the instructions are compiled into *kernels*: the instructions
of one topological level that apply the same operation to operands of the same kind become ONE
array operation over all of them and over the whole batch. All ``linear`` nodes of a level that
read the same inputs x (an MLP layer) become one matrix product ``W @ X + b`` with W (k x n) and X
(n x batch); all ``sigmoid`` nodes of a level become one ``np`` call, and so on. Values live in
two arrays: ``V[row, sample]`` for nodes that depend on the per-sample inputs, ``U[row, 0]`` for
nodes that do not (parameters, constants, and operations over them only, such as an L2 penalty,
computed once per batch). Index arrays are precomputed; a kernel whose operand rows are
contiguous reads a view. The backward pass runs the same kernels in reverse, accumulating
gradients with ``+=`` on rows (``np.add.at`` where an operand row repeats), and sums over the
batch the gradient of every node of ``U``. Every built-in operation has an array kernel; a
custom operation (:func:`tinygrad_bp.custom_op`) is evaluated element by element with its own
``forward``/``local`` functions through ``np.vectorize``: correct, at scalar speed.

**What a tape captures.** The operations and their wiring (which node feeds which operand, in
order), which leaves are per-sample *inputs*, which are *params* (the Values whose gradients are
returned) and which are *constants* (every other leaf; ``requires_grad`` is False), and, for
:func:`trace`, the example's shapes. Values are NOT captured: params and constants are read from
their Values' ``.data`` at every replay, so optimizer updates are seen; inputs come from the
arrays passed in.

**No silent staleness.** A tape describes one graph structure. Python code that builds the graph
can make the structure depend on values; :func:`trace` watches for that while it runs ``fn``:

* a comparison of Values (``v > 0``, ``max(a, b)``, ``sorted``): ``Value.__lt__`` and friends read
  ``.data``. Each comparison is kept as a *guard* (subject, operator, other side, result) and
  re-evaluated, vectorised, on EVERY sample of every replay; a sample whose result differs raises
  :class:`~tinygrad_bp.errors.TapeMismatchError`. (``relu``/``abs`` are operations, not control
  flow, and need no guard.)
* reading a value out of the graph: ``float(v)``, ``v.item()``, ``format(v, spec)``,
  ``v.detach()``, a ``no_grad`` block, or ``v.data`` read from outside the library's own
  operation code (``losses.cross_entropy`` shifts by ``max(z.data)``; ``binary_cross_entropy``
  builds different graphs for targets 0 and 1). What the number is used for is invisible, so
  such a tape replays only when every sample is re-traced (``check="all"``) -- or, when only
  param-dependent values were read, with at least ``check="first"``. :func:`trace` refuses a
  weaker ``check`` at once, naming the place.
* Anything else (hidden Python state: a flag, a counter, a random draw) is caught by
  re-tracing: ``check="first"`` (the default) runs ``fn`` again with the scalar engine on the
  first sample of each replayed batch and compares the structure signature (every instruction
  and every constant's value); ``check="all"`` does so for every sample (scalar speed);
  ``check="none"`` skips it. A difference raises TapeMismatchError naming the first differing
  instruction. ``check="first"`` sees only the first sample of each batch: state that changes
  from sample to sample (a random draw per call, as in dropout) needs ``check="all"`` or the
  scalar engine. (Reading a value through ``str(v)`` or ``repr(v)`` is not watched either.)

Inputs of the wrong shape, a params list that is not the tape's own (``params=...``), and a model
whose parameter list changed (:class:`BatchObjective`) raise TapeMismatchError too. A replay that
leaves an operation's domain raises the engine's own error (DomainError, OperationOverflowError,
...) naming the operation, the inputs and the sample.

:meth:`Tape.record` captures an existing graph without ``fn``: it cannot see how the graph was
built, so it replays unchecked (guards and re-tracing need ``fn``): use :func:`trace` when the
structure could depend on values.

**Training.** :class:`BatchObjective` and :func:`batch_loss_and_grad` compute the batch loss
``mean_i loss(model(x_i), y_i) [+ penalty()]`` with one replay and ADD its gradient to every
parameter's ``.grad`` (as ``Value.backward`` does), so ``tinygrad_bp.optim.SGD``/``Adam`` step
unchanged.
"""

from __future__ import annotations

import inspect
import math
import operator
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Union

from .engine import toposort
from .errors import NonDifferentiableError, TapeMismatchError
from .rules import RULES, Rule
from .value import Value, _failed, _overflow, apply, linear, no_grad, observed

try:
    import numpy as np
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError("tinygrad_bp.tape needs numpy: pip install 'tinygrad_bp[numpy]'") from _error

__all__ = [
    "CHECK_MODES",
    "LOSSES",
    "BatchObjective",
    "BatchResult",
    "Gradients",
    "Instruction",
    "Replay",
    "Tape",
    "batch_loss_and_grad",
    "trace",
]

Check = Literal["none", "first", "all"]
Reduction = Literal["mean", "sum"]
ArrayLike = Any
Shape = tuple[int, ...]

#: Replay checks, weakest first: re-trace no sample, the first sample of each batch, every sample.
CHECK_MODES: tuple[str, ...] = ("none", "first", "all")

_V, _U = 0, 1  # the two value stores: per-sample rows (n x batch) and uniform rows (n x 1)
_DATA = operator.attrgetter("data")


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
        __name__,
    }
)
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
            if frame.f_globals.get("__name__") in _OWN_MODULES:
                return
        else:
            while frame.f_back is not None and frame.f_globals.get("__name__") in _OWN_MODULES:
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
    root: Value, params: dict[int, tuple[str, int]], inputs: dict[int, tuple[str, int]]
) -> list[Any]:
    """The canonical structure of ``root``'s graph: one entry per node, in topological order.

    A node is ``(op, positions of its operands)``, an input or a param ``("x", i)``/``("p", j)``
    (from the role maps ``inputs``/``params``), any other leaf ``("c", value)`` (``("?", value)``
    if it requires grad). Equal lists mean the same graph up to the identity of the input Values.
    One depth-first pass in :func:`tinygrad_bp.toposort`'s order; a node gets its position when finished.
    """
    entries: list[Any] = []
    position = {id(root): -1}
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
            entries.append(
                params.get(key) or inputs.get(key) or ("?" if child.requires_grad else "c", child.data)
            )
        else:
            position[id(node)] = len(entries)
            if n:
                entries.append((node.op, tuple([position[id(a)] for a in inputs_])))
            else:
                key = id(node)
                entries.append(
                    params.get(key) or inputs.get(key) or ("?" if node.requires_grad else "c", node.data)
                )
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


# =================================================================================================
# Operands: the rows a kernel reads, and where its gradient contributions go
# =================================================================================================


def _as_slice(flat: np.ndarray) -> slice | None:
    """``flat`` as a slice when it is a run of consecutive rows."""
    if flat.size and flat[-1] - flat[0] == flat.size - 1 and (flat.size == 1 or (np.diff(flat) == 1).all()):
        return slice(int(flat[0]), int(flat[-1]) + 1)
    return None


class _Rows:
    """The rows ``idx`` (any shape) of one store: read by ``take``, gradients added by ``add``."""

    def __init__(self, store: int, idx: np.ndarray, needs: tuple[bool, bool]) -> None:
        self.store = store
        self.idx = np.asarray(idx, dtype=np.intp)
        self.flat = self.idx.ravel()
        self.sl = _as_slice(self.flat)
        self.unique = np.unique(self.flat).size == self.flat.size
        self.needs = needs  # (without, with) gradients of the inputs

    def take(self, stores: Sequence[np.ndarray]) -> np.ndarray:
        """The values, shape ``idx.shape + (batch or 1,)``: a view when the rows are consecutive."""
        s = stores[self.store]
        if self.sl is None:
            return s[self.idx]
        if self.idx.ndim == 1:
            return s[self.sl]
        return s[self.sl].reshape(*self.idx.shape, s.shape[1])

    def add(self, grads: Sequence[np.ndarray], contribution: np.ndarray) -> None:
        """Add ``contribution`` into the gradient rows.

        ``contribution`` has shape ``idx.shape + (batch or 1,)``, or is broadcastable to it; the
        contributions to a uniform node are summed over the batch (d/dp of sum_i L_i).
        """
        c = contribution
        if c.ndim != 2 or c.shape[0] != self.flat.size:
            c = np.broadcast_to(c, (*self.idx.shape, c.shape[-1])).reshape(self.flat.size, c.shape[-1])
        if self.store == _U and c.shape[1] != 1:
            c = c.sum(axis=1, keepdims=True)
        g = grads[self.store]
        if self.sl is not None:
            g[self.sl] += c
        elif self.unique:
            g[self.flat] += c
        else:
            np.add.at(g, self.flat, c)


class _MixedRows:
    """Rows of a block whose entries are partly per-sample (V) and partly uniform (U)."""

    def __init__(self, idx: np.ndarray, is_v: np.ndarray, needs: tuple[bool, bool]) -> None:
        self.shape = idx.shape
        flat, mask = idx.ravel(), is_v.ravel()
        self.pos_v, self.pos_u = np.flatnonzero(mask), np.flatnonzero(~mask)
        self.v = _Rows(_V, flat[mask], needs)
        self.u = _Rows(_U, flat[~mask], needs)
        self.needs = needs

    def take(self, stores: Sequence[np.ndarray]) -> np.ndarray:
        batch = stores[_V].shape[1]
        out = np.empty((self.pos_v.size + self.pos_u.size, batch))
        out[self.pos_v] = self.v.take(stores)
        out[self.pos_u] = self.u.take(stores)
        return out.reshape(*self.shape, batch)

    def add(self, grads: Sequence[np.ndarray], contribution: np.ndarray) -> None:
        c = np.broadcast_to(contribution, (*self.shape, contribution.shape[-1]))
        c = c.reshape(-1, c.shape[-1])
        self.v.add(grads, c[self.pos_v])
        self.u.add(grads, c[self.pos_u])


Operand = Union[_Rows, _MixedRows]


# =================================================================================================
# Kernels: one array operation over a group of instructions, from the rule table's array forms
# =================================================================================================
# Each built-in operation's array forward and local derivatives are compiled from its row of the
# rule table (Rule.array()); nothing here restates a derivative. A kernel only decides HOW to
# apply them to a block of rows: broadcasting, and a matrix product where a layer allows one.


def _times(g: np.ndarray, d: Any) -> np.ndarray:
    """g * d, without a multiplication by the constants 1 and -1."""
    if isinstance(d, float):
        return g if d == 1.0 else -g if d == -1.0 else g * d
    return g * d


class _Kernel:
    """The instructions ``nodes`` of one level and one operation, evaluated as one array operation.

    Their outputs are the consecutive rows ``out`` of store ``store``.
    """

    op = "?"

    def __init__(
        self, nodes: list[int], store: int, out: slice, level: int, active: tuple[bool, bool]
    ) -> None:
        self.nodes = nodes
        self.store = store
        self.out = out
        self.level = level
        self.active = active  # does the backward pass need this kernel (without, with input grads)?

    def forward(self, stores: list[np.ndarray]) -> Any:
        """Compute and store the outputs; return what :meth:`backward` needs."""
        raise NotImplementedError

    def backward(self, stores: list[np.ndarray], grads: list[np.ndarray], saved: Any, mode: int) -> None:
        """Add the gradient contributions to the operands' gradient rows."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for :meth:`Tape.kernels`."""
        where = "per sample" if self.store == _V else "once per batch"
        return f"level {self.level}: {len(self.nodes)} x {self.op} ({where})"


def _array_forms(rule: Rule) -> tuple[Callable[..., Any], Callable[..., tuple[Any, ...]]]:
    """The rule's NumPy forward and local derivatives (a table row has them; a custom rule does not)."""
    forms = rule.array()
    if forms is None:
        msg = f"{rule.name}: a custom operation has no array form (it runs element by element)"
        raise TypeError(msg)
    return forms


class _Pointwise(_Kernel):
    """A built-in operation of fixed arity over (k, batch) rows: its rule's array form, elementwise."""

    def __init__(self, rule: Rule, operands: list[Operand], *args: Any) -> None:
        super().__init__(*args)
        self.op, self.operands = rule.name, operands
        self.fn, self.local = _array_forms(rule)

    def forward(self, stores: list[np.ndarray]) -> Any:
        values = [x.take(stores) for x in self.operands]
        stores[self.store][self.out] = self.fn(*values)
        return values

    def backward(self, stores: list[np.ndarray], grads: list[np.ndarray], saved: Any, mode: int) -> None:
        g = grads[self.store][self.out]
        derivatives = self.local(stores[self.store][self.out], *saved)
        for operand, d in zip(self.operands, derivatives):
            if operand.needs[mode]:
                operand.add(grads, _times(g, d))


class _Reduction(_Kernel):
    """A built-in operation over groups (``linear``, ``sum``, ``sse``, ...) for nodes of one width.

    Group operands are (k, n, batch or 1) blocks, single ones (k, batch or 1).
    When every node reads the same per-sample group (``shared``: a layer, all
    neurons reading the same x), that group is one (1, n, batch) block, and
    the array forms turn into matrix products: out = W @ X + b, and the
    contributions to W (summed over the batch) and to X (summed over the
    neurons) are G @ X^T and W^T @ G.
    """

    def __init__(self, rule: Rule, parts: list[Operand], shared: dict[int, _Rows], *args: Any) -> None:
        super().__init__(*args)
        self.op, self.parts, self.shared = rule.name, parts, shared
        self.is_group = rule.signature.is_group
        self.fn, self.local = _array_forms(rule)

    def _take(self, stores: list[np.ndarray]) -> list[np.ndarray]:
        values = []
        for j, part in enumerate(self.parts):
            shared = self.shared.get(j)
            values.append(shared.take(stores)[None] if shared is not None else part.take(stores))
        return values

    def forward(self, stores: list[np.ndarray]) -> Any:
        values = self._take(stores)
        stores[self.store][self.out] = self.fn(*values)
        return values

    def backward(self, stores: list[np.ndarray], grads: list[np.ndarray], saved: Any, mode: int) -> None:
        g = grads[self.store][self.out]
        derivatives = self.local(stores[self.store][self.out], *saved)
        for j, (part, d) in enumerate(zip(self.parts, derivatives)):
            shared = self.shared.get(j)
            target = shared if shared is not None else part
            if not target.needs[mode]:
                continue
            if not self.is_group[j]:
                target.add(grads, _times(g, d))
            elif shared is not None:
                target.add(grads, _sum_over_nodes(g, d, shared.flat.size))
            else:
                target.add(grads, _group_contribution(g, d, part))

    def describe(self) -> str:
        k = len(self.nodes)
        if not self.shared:
            return f"{super().describe()}: broadcast products"
        n = next(iter(self.shared.values())).flat.size
        return f"{super().describe()}, n={n}: one ({k}x{n}) @ ({n}xB) matrix product"


def _sum_over_nodes(g: np.ndarray, d: Any, n: int) -> np.ndarray:
    """sum_k g[k] * d[k, i]: the contribution to each element of a group every node reads, (n, batch)."""
    if isinstance(d, float):
        return np.broadcast_to(_times(g, d).sum(axis=0), (n, g.shape[1]))
    if d.shape[-1] == 1:  # d does not vary per sample: one (n, k) @ (k, batch) product
        return d[:, :, 0].T @ g
    return (g[:, None, :] * d).sum(axis=0)


def _group_contribution(g: np.ndarray, d: Any, part: Operand) -> np.ndarray:
    """g[k] * d[k, i]: the contribution to each element of a group, (k, n, batch or 1)."""
    if isinstance(d, float):
        return _times(g[:, None, :], d)
    if isinstance(part, _Rows) and part.store == _U and d.shape[0] == 1 and d.shape[-1] != 1:
        return (g @ d[0].T)[:, :, None]  # summed over the batch: one (k, batch) @ (batch, n) product
    return g[:, None, :] * d


class _Elementwise(_Kernel):
    """A custom operation: its rule's forward/local functions, element by element (np.vectorize)."""

    def __init__(self, rule: Rule, operands: list[Operand], *args: Any) -> None:
        super().__init__(*args)
        self.op, self.rule, self.operands = rule.name, rule, operands
        arity = len(operands)
        self.fn = np.vectorize(_checked_forward(rule), otypes=[float])
        self.local: Any
        local = _checked_local(rule)
        if arity == 1:
            self.local = np.vectorize(lambda out, x: local(out, x)[0], otypes=[float])
        else:
            self.local = np.vectorize(local, otypes=[float] * arity) if arity else None

    def forward(self, stores: list[np.ndarray]) -> Any:
        values = [x.take(stores) for x in self.operands]
        batch = stores[self.store].shape[1]
        shape = (len(self.nodes), batch)
        stores[self.store][self.out] = self.fn(*[np.broadcast_to(v, shape) for v in values])
        return values

    def backward(self, stores: list[np.ndarray], grads: list[np.ndarray], saved: Any, mode: int) -> None:
        if self.local is None:
            return
        g = grads[self.store][self.out]
        out = stores[self.store][self.out]
        derivatives = self.local(out, *[np.broadcast_to(v, out.shape) for v in saved])
        if len(self.operands) == 1:
            derivatives = (derivatives,)
        for operand, d in zip(self.operands, derivatives):
            if operand.needs[mode]:
                operand.add(grads, g * d)

    def describe(self) -> str:
        return f"{super().describe()}: custom, element by element"


def _checked_forward(rule: Rule) -> Callable[..., float]:
    """rule.forward, raising the engine's error (naming op and inputs) on a domain error."""

    def forward(*xs: float) -> float:
        try:
            return float(rule.forward(*xs))
        except (ArithmeticError, ValueError) as error:
            raise _failed(rule.name, xs, error) from None

    return forward


def _checked_local(rule: Rule) -> Callable[..., tuple[float, ...]]:
    """rule.local as a tuple of floats, NonDifferentiableError where it fails."""

    def local(out: float, *xs: float) -> tuple[float, ...]:
        try:
            return tuple(float(d) for d in rule.local(out, *xs))
        except (ArithmeticError, ValueError) as error:
            shown = ", ".join(repr(x) for x in xs)
            msg = f"{rule.name}: the local derivative is not finite at inputs ({shown}): {error}"
            raise NonDifferentiableError(msg) from None

    return local


# =================================================================================================
# Compiling a graph into kernels
# =================================================================================================


@dataclass
class _Plan:
    """The compiled batch program: where each node lives, and the kernels in topological order."""

    n_v: int
    n_u: int
    store: np.ndarray  # node id -> _V or _U
    row: np.ndarray  # node id -> row in its store
    kernels: list[_Kernel]
    needs: tuple[np.ndarray, np.ndarray]  # node id -> needs a gradient (without, with input grads)


def _node_properties(graph: _Graph) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Per node: whether it depends on an input, its level, whether it needs a gradient (w/o, with inputs)."""
    n_leaves, n_in, n_p = graph.n_leaves, graph.n_inputs, len(graph.params)
    total = n_leaves + len(graph.instructions)
    varying = np.zeros(total, dtype=bool)
    varying[:n_in] = True
    level = np.zeros(total, dtype=np.intp)
    needs_p = np.zeros(total, dtype=bool)
    needs_p[n_in : n_in + n_p] = True
    needs_x = needs_p.copy()
    needs_x[:n_in] = True
    for ins in graph.instructions:
        args = list(ins.args)
        varying[ins.out] = varying[args].any()
        level[ins.out] = 1 + (level[args].max() if args else 0)
        needs_p[ins.out] = needs_p[args].any()
        needs_x[ins.out] = needs_x[args].any()
    return varying, level, (needs_p, needs_x)


def _kind(ids: Sequence[int], varying: np.ndarray) -> str:
    """'V' if every node varies per sample, 'U' if none does, else 'M' (mixed)."""
    v = varying[list(ids)]
    return "V" if v.all() else "U" if not v.any() else "M"


def _is_pointwise(rule: Rule) -> bool:
    """A kernel per operand position (fixed arity, or custom) rather than per group of operands."""
    return rule.definition is None or rule.arity is not None


def _group_key(ins: Instruction, rule: Rule, varying: np.ndarray, level: np.ndarray) -> tuple[Any, ...]:
    """Instructions with equal keys become one kernel: same level, operation and operand layout.

    A per-sample group read alongside a uniform one (a layer: the neurons'
    weights and the x they all read) is keyed by its node ids too, so the
    neurons reading the same x share a kernel and a matrix product.
    """
    head = (int(level[ins.out]), bool(varying[ins.out]), ins.op, len(ins.args))
    if _is_pointwise(rule):
        return (*head, tuple(bool(varying[a]) for a in ins.args))
    blocks = [ins.args[a:b] for a, b in rule.signature.spans(len(ins.args))]
    kinds = tuple(_kind(block, varying) for block in blocks)
    groups = [j for j, is_group in enumerate(rule.signature.is_group) if is_group]
    if any(kinds[j] == "U" for j in groups):
        return (*head, kinds, *(blocks[j] for j in groups if kinds[j] == "V"))
    return (*head, kinds)


def _operand(
    idx: np.ndarray, varying: np.ndarray, row: np.ndarray, needs: tuple[np.ndarray, np.ndarray]
) -> Operand:
    """The rows of the node ids ``idx`` (k, ...) as an operand."""
    flag = (bool(needs[0][idx].any()), bool(needs[1][idx].any()))
    v = varying[idx]
    if v.all() and idx.size:
        return _Rows(_V, row[idx], flag)
    if not v.any():
        return _Rows(_U, row[idx], flag)
    return _MixedRows(row[idx], v, flag)


def _make_kernel(
    nodes: list[int], graph: _Graph, props: tuple[Any, ...], out: tuple[int, slice, int, tuple[bool, bool]]
) -> _Kernel:
    """The kernel of one group of instructions (all of one level, operation and layout)."""
    varying, row, needs = props
    rule = graph.rules[nodes[0] - graph.n_leaves]
    args = np.array([graph.instructions[n - graph.n_leaves].args for n in nodes], dtype=np.intp)
    args = args.reshape(len(nodes), -1)
    if _is_pointwise(rule):
        operands = [_operand(args[:, j], varying, row, needs) for j in range(args.shape[1])]
        if rule.definition is None:
            return _Elementwise(rule, operands, nodes, *out)
        return _Pointwise(rule, operands, nodes, *out)
    spans = rule.signature.spans(args.shape[1])
    parts = [
        _operand(args[:, lo:hi] if is_group else args[:, lo], varying, row, needs)
        for (lo, hi), is_group in zip(spans, rule.signature.is_group)
    ]
    groups = [j for j, is_group in enumerate(rule.signature.is_group) if is_group]
    stores = {j: part.store if isinstance(part := parts[j], _Rows) else None for j in groups}
    shared = {}
    if _U in stores.values():
        for j in groups:
            block = args[:, spans[j][0] : spans[j][1]]
            if stores[j] == _V and (block == block[0]).all():
                shared[j] = _operand(block[0], varying, row, needs)  # every node reads the same x
    return _Reduction(rule, parts, shared, nodes, *out)  # type: ignore[arg-type]  # shared: _Rows only


def _compile(graph: _Graph) -> _Plan:
    """Group the instructions by (level, operation, operand layout) and lay the stores out.

    Each group's outputs get consecutive rows, so a kernel writes one slice.
    """
    varying, level, needs = _node_properties(graph)
    n_in, n_leaves = graph.n_inputs, graph.n_leaves
    groups: dict[tuple[Any, ...], list[int]] = {}
    for ins, rule in zip(graph.instructions, graph.rules):
        groups.setdefault(_group_key(ins, rule, varying, level), []).append(ins.out)
    total = n_leaves + len(graph.instructions)
    store = np.where(varying, _V, _U)
    row = np.zeros(total, dtype=np.intp)
    row[:n_in] = np.arange(n_in)
    row[n_in:n_leaves] = np.arange(n_leaves - n_in)
    sizes = [n_in, n_leaves - n_in]
    reaches_output = np.zeros(total, dtype=bool)
    reaches_output[: n_leaves + graph.n_output_instructions] = True
    layout = []
    for key in sorted(groups, key=lambda k: k[0]):
        nodes = groups[key]
        s = int(store[nodes[0]])
        row[nodes] = np.arange(sizes[s], sizes[s] + len(nodes))
        layout.append((nodes, s, slice(sizes[s], sizes[s] + len(nodes)), key[0]))
        sizes[s] += len(nodes)
    kernels = []
    for nodes, s, out, lvl in layout:
        live = reaches_output[nodes]
        active = (bool((needs[0][nodes] & live).any()), bool((needs[1][nodes] & live).any()))
        kernels.append(_make_kernel(nodes, graph, (varying, row, needs), (s, out, lvl, active)))
    return _Plan(sizes[_V], sizes[_U], store, row, kernels, needs)


# =================================================================================================
# The tape
# =================================================================================================


@dataclass(frozen=True)
class Gradients:
    """Gradients of the replayed loss.

    ``params[j]`` is d L / d params[j] (the tape's params, in order). ``inputs`` holds, per argument
    of the replay, d L / d input with that argument's shape (per sample for a batch), or is None
    when input gradients were not asked for.
    """

    params: np.ndarray
    inputs: tuple[np.ndarray, ...] | None = None

    def add_to(self, params: Sequence[Value], accumulate: bool = True) -> None:
        """Write ``self.params`` into ``p.grad`` of each Value: added (default, as backward) or set."""
        if len(params) != len(self.params):
            raise TapeMismatchError(f"{len(params)} params given for {len(self.params)} gradients")
        values = self.params.tolist()
        if accumulate:
            for p, g in zip(params, values):
                p.grad += g
        else:
            for p, g in zip(params, values):
                p.grad = g


class Replay(NamedTuple):
    """Everything one replay computes.

    ``loss``: L = mean (or sum) of the per-sample outputs; ``outputs``: the per-sample outputs,
    shape (batch,); ``aux``: the aux outputs (fn returned (output, aux)), shape (batch, m);
    ``grads``: dL/dparams (and dL/dinputs if asked).
    """

    loss: float
    outputs: np.ndarray
    aux: np.ndarray
    grads: Gradients


class _Batch(NamedTuple):
    """A replay's inputs: one sample or a batch of ``n``, as an (n_inputs, n) array."""

    batched: bool
    n: int
    x: np.ndarray


def _is_batch(arrays: Sequence[np.ndarray], shapes: Sequence[Shape]) -> bool:
    """True if every array is a batch of its sample shape, False if every one is one sample."""
    for i, (a, s) in enumerate(zip(arrays, shapes)):
        if a.ndim not in (len(s), len(s) + 1) or a.shape[a.ndim - len(s) :] != s:
            expected = f"{s} for one sample or (n, *{s}) for a batch"
            raise TapeMismatchError(f"argument {i} has shape {a.shape}; the tape expects {expected}")
    batched = {a.ndim == len(s) + 1 for a, s in zip(arrays, shapes)}
    if len(batched) > 1:
        raise TapeMismatchError("either every argument is one sample or every argument is a batch")
    return batched.pop() if batched else False


class _Forward(NamedTuple):
    """The state a forward replay leaves for the backward pass."""

    stores: list[np.ndarray]
    saved: list[Any]
    batched: bool
    batch: int


class Tape:
    """A recorded graph: its Wengert list, and a compiled plan to replay it on batches.

    Make one with :func:`trace` (checked: it can re-run ``fn``) or :meth:`Tape.record` (an
    existing graph, unchecked). ``print(tape)`` shows the Wengert list; :meth:`kernels` the
    grouped array operations. ``tape.params`` are the Values whose gradients are returned.
    """

    def __init__(
        self,
        graph: _Graph,
        shapes: Sequence[Shape],
        names: Sequence[str],
        *,
        structure: Sequence[tuple[Any, ...]],
        fn: Callable[..., Any] | None = None,
        guards: Sequence[_Guard] = (),
        escapes: Sequence[_Escape] = (),
        check: Check = "none",
    ) -> None:
        self._graph = graph
        self._shapes = tuple(tuple(s) for s in shapes)
        self._names = tuple(names)
        self._fn = fn
        self.guards = tuple(guards)
        self.escapes = tuple(escapes)
        self._plan = _compile(graph)
        self._structure = list(structure)
        self._param_roles = _roles("p", graph.params)
        self._required = _required_check(self.escapes, self._plan)
        self.check = _check_mode(check, self)
        self._last: _Forward | None = None
        sizes = [math.prod(s) for s in self._shapes]
        self._offsets = tuple(int(sum(sizes[:i])) for i in range(len(sizes) + 1))
        if self._offsets[-1] != graph.n_inputs:
            raise ValueError(
                f"the shapes {self._shapes} hold {self._offsets[-1]} inputs, not {graph.n_inputs}"
            )

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def record(cls, output: Value, inputs: Sequence[Value], params: Sequence[Value] | None = None) -> Tape:
        """Record the existing graph of ``output``: ``inputs`` vary per sample, ``params`` get gradients.

        ``params=None`` takes every other leaf that requires grad, in order of appearance; with a
        list, a leaf that requires grad but is in neither list raises ValueError. Every other leaf is
        a constant. The tape replays ``forward(X)`` with X of shape (len(inputs),) or
        (batch, len(inputs)). It is unchecked: it cannot know whether the code that built the graph
        would build another one for other inputs (use :func:`trace` for that).
        """
        _check_output(output)
        inputs = list(inputs)
        for i, x in enumerate(inputs):
            if not isinstance(x, Value) or x.inputs:
                raise ValueError(f"record: inputs[{i}] must be a leaf Value (no inputs of its own)")
        if len({id(x) for x in inputs}) != len(inputs):
            raise ValueError("record: the same Value appears twice in inputs")
        graph, _ = _checked_capture([output], inputs, params)
        names = [f"x[{i}]" for i in range(len(inputs))]
        structure = _structure(output, _roles("p", graph.params), _roles("x", inputs))
        return cls(graph, [(len(inputs),)], names, structure=structure)

    # --- what was recorded ----------------------------------------------------------------------

    @property
    def params(self) -> list[Value]:
        """The Values whose gradients the replay returns, in order (read fresh at every replay)."""
        return list(self._graph.params)

    @property
    def constants(self) -> list[Value]:
        """The constant leaves (also read fresh at every replay)."""
        return list(self._graph.constants)

    @property
    def instructions(self) -> tuple[Instruction, ...]:
        """The Wengert list, in topological order (inputs first)."""
        return self._graph.instructions

    @property
    def shapes(self) -> tuple[Shape, ...]:
        """The shape of one sample of each replay argument: () for a number, (d,) for a vector."""
        return self._shapes

    @property
    def signature(self) -> tuple[tuple[Any, ...], ...]:
        """The output graph's canonical structure, compared by re-tracing (see :func:`trace`).

        One entry per node in topological order: ``(operation, operand positions)``, an input
        ``("x", i)``, a param ``("p", j)`` or a constant ``("c", value)``.
        """
        return tuple(self._current_structure())

    def _current_structure(self) -> list[tuple[Any, ...]]:
        """The recorded structure with the constants' current values."""
        constants = iter(self._graph.constants)
        return [("c", next(constants).data) if e[0] == "c" else e for e in self._structure]

    def __len__(self) -> int:
        return len(self._graph.instructions)

    def __repr__(self) -> str:
        g = self._graph
        return (
            f"<Tape: {g.n_inputs} inputs, {len(g.params)} params, {len(self)} instructions, "
            f"{len(self._plan.kernels)} kernels, check={self.check!r}>"
        )

    def __str__(self) -> str:
        return "\n".join(self._listing())

    def _name(self, node: int) -> str:
        g = self._graph
        if node < g.n_inputs:
            return self._names[node]
        if node < g.n_inputs + len(g.params):
            return f"p{node - g.n_inputs}"
        if node < g.n_leaves:
            return repr(g.constants[node - g.n_inputs - len(g.params)].data)
        return f"v{node - g.n_leaves}"

    def _line(self, ins: Instruction) -> str:
        args = [self._name(a) for a in ins.args]
        if len(args) == 2 and not ins.op.isidentifier():  # an infix operator: + - * / **
            rhs = f"{args[0]} {ins.op} {args[1]}"
        elif ins.op == "neg":
            rhs = f"-{args[0]}"
        else:
            rhs = f"{ins.op}({', '.join(args)})"
        return f"{self._name(ins.out)} = {rhs}"

    def _listing(self) -> list[str]:
        g = self._graph
        n_p = len(g.params)
        params = "none" if n_p == 0 else "p0" if n_p == 1 else f"p0..p{n_p - 1}"
        head = (
            f"# tape: inputs {', '.join(self._names) or 'none'}; params {params}; "
            f"{len(self)} instructions, {len(self._plan.kernels)} kernels"
        )
        lines = [head]
        lines += [f"#   p{j} = {p.label or 'Value'}" for j, p in enumerate(g.params) if p.label]
        lines += [self._line(ins) for ins in g.instructions]
        lines.append(f"return {self._name(g.outputs[0])}")
        return lines

    def kernels(self) -> str:
        """The compiled plan: one line per array operation, in the order the forward pass runs them."""
        return "\n".join(k.describe() for k in self._plan.kernels)

    # --- replay ---------------------------------------------------------------------------------

    def forward(
        self, *args: ArrayLike, check: Check | None = None, params: Sequence[Value] | None = None
    ) -> Any:
        """Replay the forward pass: the output for one sample (a float) or per sample of a batch.

        Each argument has the shape of its example (a number, or a vector of d numbers), or one
        more leading batch dimension (n,) / (n, d): then an array of n outputs is returned. Params
        and constants are read from their Values now. ``check`` overrides the tape's re-tracing
        mode; ``params``, if given, must be exactly the tape's params (TapeMismatchError otherwise).
        """
        self._check_params(params)
        state = self._forward(args, check)
        self._last = state
        out = self._values(state, self._graph.outputs[0])
        return float(out[0]) if not state.batched else out

    def aux(self) -> np.ndarray:
        """The aux outputs of the last forward replay (fn returned (loss, aux)): (batch, m) or (m,)."""
        if self._last is None:
            raise TapeMismatchError("aux(): call forward(...) first")
        table = self._aux(self._last)
        return table if self._last.batched else table[0]

    def _aux(self, state: _Forward) -> np.ndarray:
        rows = [self._values(state, node) for node in self._graph.outputs[1:]]
        return np.array(rows).T if rows else np.empty((state.batch, 0))

    def backward(
        self, reduction: Reduction = "mean", *, seed: ArrayLike | None = None, inputs: bool = False
    ) -> Gradients:
        """Gradients of the loss of the last :meth:`forward` replay.

        L = mean_i out_i (``"mean"``) or sum_i out_i (``"sum"``) over the batch; a single sample
        gives L = out. ``seed`` (one number per sample) replaces the reduction by L = sum_i seed_i out_i.
        With ``inputs=True`` the gradients w.r.t. the inputs are returned too.
        """
        if self._last is None:
            raise TapeMismatchError("backward(): call forward(...) first")
        return self._backward(self._last, _seeds(reduction, seed, self._last.batch), inputs)

    def value_and_grad(
        self,
        *args: ArrayLike,
        reduction: Reduction = "mean",
        inputs: bool = False,
        check: Check | None = None,
        params: Sequence[Value] | None = None,
    ) -> tuple[float, Gradients]:
        """(L, gradients) in one call: L = mean (or sum) of the outputs over the batch.

        Thread-safe (keeps no state on the tape), unlike forward() followed by backward().
        """
        result = self.replay(*args, reduction=reduction, inputs=inputs, check=check, params=params)
        return result.loss, result.grads

    def replay(
        self,
        *args: ArrayLike,
        reduction: Reduction = "mean",
        inputs: bool = False,
        check: Check | None = None,
        params: Sequence[Value] | None = None,
    ) -> Replay:
        """Forward and backward in one call, with everything: see :class:`Replay`."""
        self._check_params(params)
        state = self._forward(args, check)
        out = self._values(state, self._graph.outputs[0])
        seeds = _seeds(reduction, None, state.batch)
        loss = float(out.mean() if reduction == "mean" else out.sum()) if state.batched else float(out[0])
        grads = self._backward(state, seeds, inputs)
        return Replay(loss, out if state.batched else out[:1], self._aux(state), grads)

    def run(self, *sample: ArrayLike) -> tuple[float, Gradients]:
        """Replay ONE sample instruction by instruction on Python floats: (out, gradients).

        The textbook interpreter of a Wengert list: the forward pass applies each rule's
        ``forward`` in order; the backward pass walks the list backwards, adding g * local
        derivative into each operand's adjoint. Same rules, same float arithmetic as the engine.
        """
        batch = self._read(sample)
        if batch.batched:
            raise TapeMismatchError("run() replays one sample; use forward() for a batch")
        values = self._scalar_forward(batch.x[:, 0].tolist())
        self._scalar_guards(values)
        adjoint = np.array(self._scalar_backward(values))
        g = self._graph
        n_in, n_p = g.n_inputs, len(g.params)
        grads = Gradients(adjoint[n_in : n_in + n_p], self._split(adjoint[None, :n_in], batched=False))
        return values[g.outputs[0]], grads

    # --- replay internals -----------------------------------------------------------------------

    def _check_params(self, params: Sequence[Value] | None) -> None:
        if params is not None and list(params) != list(self._graph.params):
            raise TapeMismatchError(
                f"these {len(list(params))} params are not the tape's {len(self._graph.params)} params "
                "(a different model, or a parameter replaced): record a new tape"
            )

    def _read(self, args: Sequence[ArrayLike]) -> _Batch:
        """The replay's arguments as one (n_inputs, batch) array, or TapeMismatchError."""
        if len(args) != len(self._shapes):
            raise TapeMismatchError(f"the tape takes {len(self._shapes)} argument(s), got {len(args)}")
        arrays = [_as_array(a, i) for i, a in enumerate(args)]
        batched = _is_batch(arrays, self._shapes)
        n = arrays[0].shape[0] if batched and arrays else 1
        if batched and any(a.shape[0] != n for a in arrays):
            counts = [a.shape[0] for a in arrays]
            raise TapeMismatchError(f"the arguments hold different numbers of samples: {counts}")
        if n == 0:
            raise TapeMismatchError("an empty batch")
        x = np.empty((self._graph.n_inputs, n))
        for a, lo, hi in zip(arrays, self._offsets, self._offsets[1:]):
            x[lo:hi] = a.reshape(n, hi - lo).T
        if not np.isfinite(x).all():
            i, b = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(
                f"input {self._names[i]} of sample {b} is {x[i, b]!r}: inputs must be finite numbers"
            )
        return _Batch(batched, n, x)

    def _forward(self, args: Sequence[ArrayLike], check: Check | None) -> _Forward:
        batched, n, x = self._read(args)
        mode = _check_mode(self.check if check is None else check, self)
        plan, g = self._plan, self._graph
        stores = [np.empty((plan.n_v, n)), np.empty((plan.n_u, 1))]
        stores[_V][: g.n_inputs] = x
        n_p = len(g.params)
        n_c = len(g.constants)
        stores[_U][:n_p, 0] = np.fromiter(map(_DATA, g.params), dtype=float, count=n_p)
        stores[_U][n_p : n_p + n_c, 0] = np.fromiter(map(_DATA, g.constants), dtype=float, count=n_c)
        if mode != "none":
            self._retrace(x, n if mode == "all" else 1)
        with np.errstate(all="ignore"):
            saved = [k.forward(stores) for k in plan.kernels]
        if not (np.isfinite(stores[_V]).all() and np.isfinite(stores[_U]).all()):
            raise self._forward_error(stores)
        state = _Forward(stores, saved, batched, n)
        self._check_guards(state)
        return state

    def _values(self, state: _Forward, node: int) -> np.ndarray:
        """One node's value per sample, shape (batch,)."""
        values = self._row(state.stores, node)
        return values if self._plan.store[node] == _V else np.full(state.batch, values[0])

    def _backward(self, state: _Forward, seeds: np.ndarray, inputs: bool) -> Gradients:
        plan, g = self._plan, self._graph
        grads = [np.zeros_like(state.stores[_V]), np.zeros_like(state.stores[_U])]
        out = g.outputs[0]
        self._row(grads, out)[:] += seeds if plan.store[out] == _V else seeds.sum()
        mode = int(inputs)
        with np.errstate(all="ignore"):
            for kernel, saved in zip(reversed(plan.kernels), reversed(state.saved)):
                if kernel.active[mode]:
                    kernel.backward(state.stores, grads, saved, mode)
        if not (np.isfinite(grads[_V]).all() and np.isfinite(grads[_U]).all()):
            raise self._backward_error(state, grads)
        n_in, n_p = g.n_inputs, len(g.params)
        params = grads[_U][:n_p, 0].copy()
        return Gradients(params, self._split(grads[_V][:n_in].T, state.batched) if inputs else None)

    def _split(self, table: np.ndarray, batched: bool) -> tuple[np.ndarray, ...]:
        """(batch, n_inputs) -> one array per argument, shaped like that argument."""
        parts = []
        for s, lo, hi in zip(self._shapes, self._offsets, self._offsets[1:]):
            part = table[:, lo:hi].reshape(table.shape[0], *s)
            parts.append(part if batched else part[0])
        return tuple(parts)

    # --- staleness ------------------------------------------------------------------------------

    def _check_guards(self, state: _Forward) -> None:
        """Every comparison made while tracing must come out the same on every sample."""
        for guard in self.guards:
            lhs = self._values(state, guard.subject)
            rhs = guard.other if isinstance(guard.other, float) else self._values(state, guard.other)
            agree = _COMPARE[guard.op](lhs, rhs) == guard.result
            if not agree.all():
                b = int(np.flatnonzero(~agree)[0])
                raise TapeMismatchError(self._guard_message(guard, b, float(lhs[b])))

    def _guard_message(self, guard: _Guard, sample: int, value: float) -> str:
        other = guard.other if isinstance(guard.other, float) else self._name(guard.other)
        return (
            f"while tracing, fn compared {self._name(guard.subject)} {guard.op} {other} and got "
            f"{guard.result}; sample {sample} ({self._name(guard.subject)} = {value!r}) gives "
            f"{not guard.result}. fn's Python control flow depends on values, so that sample would build "
            "a different graph: express the choice with operations (relu, abs, ...) or evaluate those "
            "samples with the scalar engine"
        )

    def _retrace(self, x: np.ndarray, count: int) -> None:
        """Run fn again on the first ``count`` samples and compare the structure with the tape's."""
        if self._fn is None:
            raise TapeMismatchError(
                "this tape was recorded without fn (Tape.record): only check='none' is possible"
            )
        params = self._param_roles
        for b in range(count):
            sample = [
                x[lo:hi, b].reshape(s) for s, lo, hi in zip(self._shapes, self._offsets, self._offsets[1:])
            ]
            values, inputs = _make_inputs(sample, self._names)
            out = _output_of(self._fn(*values))[0]
            found = _structure(out, params, _roles("x", inputs))
            if found != self._structure and found != self._current_structure():
                raise TapeMismatchError(self._mismatch_message(found, b))

    def _mismatch_message(self, found: list[tuple[Any, ...]], b: int) -> str:
        expected = self._current_structure()
        k = next(
            (i for i, (e, f) in enumerate(zip(expected, found)) if e != f), min(len(expected), len(found))
        )
        old = expected[k] if k < len(expected) else None
        new = found[k] if k < len(found) else None
        hint = ""
        if old and new and old[0] == new[0] == "c":
            hint = " (a number computed from values in Python?)"
        elif new and new[0] == "?":
            hint = " (a parameter replaced or added? record a new tape)"
        return (
            f"re-tracing fn on sample {b} built a different graph than the tape's: node {k} of "
            f"{len(expected)} was {_describe_entry(old)}, now {_describe_entry(new)}{hint}"
        )

    # --- errors of a replay ---------------------------------------------------------------------

    def _row(self, arrays: list[np.ndarray], node: int) -> np.ndarray:
        """Node ``node``'s row of a value or gradient store pair: (batch,), or (1,) if uniform."""
        return arrays[self._plan.store[node]][self._plan.row[node]]

    def _sample_args(self, stores: list[np.ndarray], ins: Instruction, b: int) -> list[float]:
        """The operand values of ``ins`` for sample ``b``."""
        return [float(self._row(stores, a)[b if self._plan.store[a] == _V else 0]) for a in ins.args]

    def _first_bad(self, arrays: list[np.ndarray], node: int) -> int | None:
        """The first sample where the node's row is not finite (0 for a uniform row), or None."""
        bad = np.flatnonzero(~np.isfinite(self._row(arrays, node)))
        return int(bad[0]) if bad.size else None

    def _forward_error(self, stores: list[np.ndarray]) -> Exception:
        """The engine's error for the first operation that left its domain (or overflowed)."""
        for ins, rule in zip(self._graph.instructions, self._graph.rules):
            b = self._first_bad(stores, ins.out)
            if b is None:
                continue
            xs = self._sample_args(stores, ins, b)
            try:
                rule.forward(*xs)
            except (ArithmeticError, ValueError) as error:
                cause = _failed(rule.name, xs, error)
            else:
                cause = _overflow(rule.name, xs)
            return type(cause)(f"{cause} (replaying {self._line(ins)} on sample {b})")
        return ValueError("replay: a value is not finite")  # pragma: no cover - inputs are checked first

    def _backward_error(self, state: _Forward, grads: list[np.ndarray]) -> NonDifferentiableError:
        """NonDifferentiableError naming the operation whose local derivative is not finite.

        That is the last operation whose own gradient is finite while an operand's is not.
        """
        for ins in reversed(self._graph.instructions):
            if self._first_bad(grads, ins.out) is not None:
                continue
            bad = [b for b in (self._first_bad(grads, a) for a in ins.args) if b is not None]
            if bad:
                shown = ", ".join(repr(x) for x in self._sample_args(state.stores, ins, bad[0]))
                return NonDifferentiableError(
                    f"{ins.op}: the local derivative is not finite at inputs ({shown}) "
                    f"(replaying {self._line(ins)} on sample {bad[0]})"
                )
        return NonDifferentiableError("replay: a gradient is not finite")  # pragma: no cover

    # --- the scalar interpreter -----------------------------------------------------------------

    def _scalar_forward(self, x: list[float]) -> list[float]:
        g = self._graph
        values = [*x, *(p.data for p in g.params), *(c.data for c in g.constants)]
        for ins, rule in zip(g.instructions, g.rules):
            xs = [values[a] for a in ins.args]
            values.append(_checked_forward(rule)(*xs))
            if not math.isfinite(values[-1]):
                raise _overflow(rule.name, xs)
        return values

    def _scalar_guards(self, values: list[float]) -> None:
        for guard in self.guards:
            other = guard.other if isinstance(guard.other, float) else values[guard.other]
            if _COMPARE[guard.op](values[guard.subject], other) != guard.result:
                raise TapeMismatchError(self._guard_message(guard, 0, values[guard.subject]))

    def _scalar_backward(self, values: list[float]) -> list[float]:
        g = self._graph
        needs = self._plan.needs[1]
        adjoint = [0.0] * len(values)
        adjoint[g.outputs[0]] = 1.0
        for ins, rule in zip(
            reversed(g.instructions[: g.n_output_instructions]), reversed(g.rules[: g.n_output_instructions])
        ):
            if not needs[ins.out]:
                continue
            d = _checked_local(rule)(values[ins.out], *[values[a] for a in ins.args])
            for a, local in zip(ins.args, d):
                adjoint[a] += adjoint[ins.out] * local
        return adjoint


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _as_array(a: ArrayLike, i: int) -> np.ndarray:
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"argument {i} must be numbers (an array, a list or a number): {error}") from None


def _seeds(reduction: Reduction, seed: ArrayLike | None, n: int) -> np.ndarray:
    """The upstream gradient dL/d out_i of each sample."""
    if seed is not None:
        s = np.asarray(seed, dtype=np.float64).reshape(-1)
        if s.shape not in ((n,), (1,)):
            raise TapeMismatchError(f"seed has {s.size} entries for a batch of {n}")
        return np.broadcast_to(s, (n,)).copy()
    if reduction == "mean":
        return np.full(n, 1.0 / n)
    if reduction == "sum":
        return np.ones(n)
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


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


def _check_mode(check: str, tape: Tape) -> Check:
    """``check`` validated against the escapes seen while tracing."""
    if check not in CHECK_MODES:
        raise ValueError(f"check must be one of {CHECK_MODES}, got {check!r}")
    required = tape._required
    if CHECK_MODES.index(check) < CHECK_MODES.index(required[0]):
        raise TapeMismatchError(required[1] + f"; this tape replays only with check={required[0]!r}")
    if check != "none" and tape._fn is None:
        raise TapeMismatchError("a tape made by Tape.record has no fn to re-trace: use check='none'")
    return check  # type: ignore[return-value]


def _required_check(escapes: Sequence[_Escape], plan: _Plan) -> tuple[str, str]:
    """The weakest safe check, and why: 'all' if a per-sample value escaped, 'first' for a param's."""
    worst, why = "none", ""
    for e in escapes:
        if e.node is not None and plan.store[e.node] == _U and not plan.needs[0][e.node]:
            continue  # a constant's value: the same for every replay
        level = "first" if e.node is not None and plan.store[e.node] == _U else "all"
        if CHECK_MODES.index(level) > CHECK_MODES.index(worst):
            what = "a per-sample value" if level == "all" else "a parameter-dependent value"
            worst, why = level, f"fn read {what} ({e.how}) at {e.where}, so the graph may depend on it"
    return worst, why


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
    structure = _structure(output, _roles("p", graph.params), _roles("x", inputs))
    return Tape(graph, shapes, names, structure=structure, fn=fn, guards=guards, escapes=escapes, check=check)


# =================================================================================================
# Training: the batch objective
# =================================================================================================


def _as_list(out: Value | Sequence[Value]) -> list[Value]:
    return [out] if isinstance(out, Value) else list(out)


def _mse(out: Any, t: Any) -> Value:
    """mean_k (o_k - t_k)^2: ONE sse node, then / K (PyTorch's mse_loss over a batch of K outputs)."""
    o, tt = _as_list(out), _as_list(t)
    return apply("sse", *o, *tt) / len(o)


def _half_sse(out: Any, t: Any) -> Value:
    """1/2 sum_k (o_k - t_k)^2 (the articles' E)."""
    o, tt = _as_list(out), _as_list(t)
    return apply("half_sse", *o, *tt)


def _single(name: str, out: Any) -> Value:
    o = _as_list(out)
    if len(o) != 1:
        raise ValueError(f"loss {name!r} needs a model with one output, got {len(o)}")
    return o[0]


def _hinge(out: Any, t: Any) -> Value:
    """relu(1 - y s) for labels y in {-1, +1}."""
    return (1.0 - t * _single("hinge", out)).relu()


def _bce(out: Any, t: Any) -> Value:
    """-(t log p + (1 - t) log(1 - p)); p of exactly 0 or 1 raises DomainError (use bce_with_logits)."""
    p = _single("bce", out)
    return -(t * p.log() + (1.0 - t) * (1.0 - p).log())


def _bce_with_logits(out: Any, t: Any) -> Value:
    """t softplus(-z) + (1 - t) softplus(z) = -(t log s(z) + (1 - t) log(1 - s(z))).

    No term overflows or cancels, for any logit z (as ``losses.binary_cross_entropy_with_logits``).
    """
    z = _single("bce_with_logits", out)
    return t * (-z).softplus() + (1.0 - t) * z.softplus()


def _cross_entropy(out: Any, t: Any) -> Value:
    """logsumexp(z) - z . onehot, with the shift m = max(z) built from operations.

    m = z_1 + relu(z_2 - m_1) + ... (exact max up to rounding) keeps every e^(z - m) <= ~1; the
    gradient through m cancels (d/dm [m + log sum e^(z-m)] = 1 - sum softmax = 0).
    """
    z, onehot = _as_list(out), _as_list(t)
    m = z[0]
    for zi in z[1:]:
        m = m + (zi - m).relu()
    total = apply("sum", *[(zi - m).exp() for zi in z])
    return m + total.log() - linear(onehot, z, 0.0)


#: Per-sample losses by name, built from operations only (no Python control flow on values).
#: Integer class targets of a model with several outputs are one-hot encoded for
#: ``mse``/``half_sse``/``cross_entropy``.
LOSSES: dict[str, Callable[[Any, Any], Value]] = {
    "mse": _mse,
    "half_sse": _half_sse,
    "hinge": _hinge,
    "bce": _bce,
    "bce_with_logits": _bce_with_logits,
    "cross_entropy": _cross_entropy,
}


class BatchResult(NamedTuple):
    """What :class:`BatchObjective` returns: the batch loss and the model's outputs (batch, outputs)."""

    loss: float
    outputs: np.ndarray


class BatchObjective:
    """L = mean_i loss(model(x_i), y_i) [+ penalty()] and dL/dp, by one tape replay per batch.

    ``loss`` is a name of :data:`LOSSES` or a function ``loss(output, target) -> Value`` (output:
    the model's Value or list of Values for one sample; target: a Value or a list of Values);
    ``fn(model, x, y) -> Value`` replaces both. ``penalty()`` (no arguments, e.g. an L2 term of
    the parameters) is added once per batch: it does not depend on the samples, so the tape
    evaluates it once. ``reduction="sum"`` gives sum_i instead of the mean (no penalty then).

    Calling the objective ADDS dL/dp to every parameter's ``.grad`` (as ``backward`` does: zero the
    gradients first) and returns :class:`BatchResult` (loss, outputs per sample). The tape is
    traced on the first call, one per input/target shape, and checked as :func:`trace` says
    (``check``); a model whose ``parameters()`` no longer are the traced ones raises
    TapeMismatchError (call :meth:`reset` after changing the model).
    """

    def __init__(
        self,
        model: Any,
        loss: str | Callable[[Any, Any], Value] = "mse",
        *,
        fn: Callable[[Any, list[Value], Any], Value] | None = None,
        penalty: Callable[[], Value] | None = None,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if penalty is not None and reduction != "mean":
            raise ValueError("a penalty is added once per batch only with reduction='mean'")
        if isinstance(loss, str) and loss not in LOSSES:
            raise ValueError(
                f"unknown loss {loss!r}; choose one of {', '.join(map(repr, LOSSES))} or pass a function"
            )
        self.model = model
        self.loss = LOSSES[loss] if isinstance(loss, str) else loss
        self.one_hot = isinstance(loss, str) and loss in ("mse", "half_sse", "cross_entropy")
        self.fn = fn
        self.penalty = penalty
        self.reduction = reduction
        self.check = check
        self._tapes: dict[tuple[Shape, Shape], Tape] = {}
        self._n_outputs: int | None = None

    def reset(self) -> None:
        """Forget the recorded tapes (after changing the model's structure)."""
        self._tapes.clear()
        self._n_outputs = None

    def _sample_fn(self) -> Callable[[list[Value], Any], tuple[Value, list[Value]]]:
        model, loss, fn, penalty = self.model, self.loss, self.fn, self.penalty

        def sample(x: list[Value], y: Any) -> tuple[Value, list[Value]]:
            if fn is not None:
                value, outputs = fn(model, x, y), []
            else:
                out = model(x)
                value, outputs = loss(out, y), _as_list(out)
            if penalty is not None:
                value = value + penalty()
            return value, outputs

        return sample

    def _targets(self, x: np.ndarray, y: ArrayLike) -> np.ndarray:
        """Targets as floats; integer classes one-hot encoded for a named loss and several outputs."""
        t = np.asarray(y, dtype=np.float64)
        if not self.one_hot or t.ndim != 1 or self.fn is not None:
            return t
        if self._n_outputs is None:
            with no_grad():
                self._n_outputs = len(_as_list(self.model(x[0].tolist())))
        if self._n_outputs == 1:
            return t
        classes = t.astype(np.intp)
        if (classes != t).any() or classes.min() < 0 or classes.max() >= self._n_outputs:
            raise ValueError(f"class targets must be integers in [0, {self._n_outputs})")
        return np.eye(self._n_outputs)[classes]

    def _batch(self, X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise TapeMismatchError(f"X must be a non-empty batch of shape (n, d), got {x.shape}")
        return x, self._targets(x, y)

    def _tape_for(self, x: np.ndarray, t: np.ndarray) -> Tape:
        key = (x.shape[1:], t.shape[1:])
        params = list(self.model.parameters())
        tape = self._tapes.get(key)
        if tape is None:
            tape = trace(self._sample_fn(), x[0], t[0], params=params, check=self.check)
            self._tapes[key] = tape
        elif params != tape.params:
            raise TapeMismatchError(
                "the model's parameters are not the ones the tape was traced with (the model changed): "
                "call reset() to re-trace"
            )
        return tape

    def tape(self, X: ArrayLike, y: ArrayLike) -> Tape:
        """The tape for batches shaped like (X, y), traced on their first sample if new."""
        return self._tape_for(*self._batch(X, y))

    def replay(self, X: ArrayLike, y: ArrayLike) -> tuple[Tape, Replay]:
        """(the tape, its :class:`Replay` on this batch) without touching any ``.grad``."""
        x, t = self._batch(X, y)
        tape = self._tape_for(x, t)
        return tape, tape.replay(x, t, reduction=self.reduction)

    def __call__(self, X: ArrayLike, y: ArrayLike, *, accumulate: bool = True) -> BatchResult:
        """The batch loss and outputs; adds (``accumulate=False``: sets) dL/dp into each ``p.grad``."""
        tape, result = self.replay(X, y)
        result.grads.add_to(tape.params, accumulate)
        return BatchResult(result.loss, result.aux)


_objectives: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def model_cache(
    model: Any, name: str, fallback: weakref.WeakKeyDictionary[Any, dict[Any, Any]]
) -> dict[Any, Any]:
    """A dictionary of cached objectives that lives on ``model`` itself, so it dies with the model.

    The cached objectives refer back to the model; kept in a module-level
    WeakKeyDictionary, that reference would keep every model alive forever.
    On the model, the two form a cycle that the garbage collector frees. A
    model without a ``__dict__`` (slotted) uses ``fallback``.
    """
    store = getattr(model, "__dict__", None)
    if isinstance(store, dict):
        return store.setdefault(name, {})
    return fallback.setdefault(model, {})


def batch_loss_and_grad(
    model: Any,
    X: ArrayLike,
    y: ArrayLike,
    loss: str | Callable[[Any, Any], Value] = "mse",
    *,
    fn: Callable[[Any, list[Value], Any], Value] | None = None,
    penalty: Callable[[], Value] | None = None,
    reduction: Reduction = "mean",
    check: Check = "first",
    accumulate: bool = True,
) -> float:
    """L = mean_i loss(model(x_i), y_i) [+ penalty()]; ADDS dL/dp into every ``p.grad``.

    The functional form of :class:`BatchObjective`: the objective (and its tape) is cached per
    model and per (loss, fn, penalty, reduction, check), so repeated calls replay. Pass the same
    function objects on every call (a new lambda each time means a new trace).
    """
    key = (loss, fn, penalty, reduction, check)
    cache = model_cache(model, "_tinygrad_bp_objectives", _objectives)
    objective = cache.get(key)
    if objective is None:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        objective = cache[key] = BatchObjective(
            model, loss, fn=fn, penalty=penalty, reduction=reduction, check=check
        )
    return objective(X, y, accumulate=accumulate).loss
