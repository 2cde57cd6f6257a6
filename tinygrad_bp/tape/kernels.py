"""Compiling a Wengert list into array kernels: rows, the table's array forms, grouping by level."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from tinygrad_bp.errors import NonDifferentiableError
from tinygrad_bp.value import _failed

try:
    import numpy as np
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError("tinygrad_bp.tape needs numpy: pip install 'tinygrad_bp[numpy]'") from _error

from .recording import _U, _V, Instruction, _Graph

if TYPE_CHECKING:
    from tinygrad_bp.expressions import ArrayForms
    from tinygrad_bp.rules import Rule

    from .program import Emitter

# =================================================================================================
# Operands: the rows a kernel reads, and where its gradient contributions go
# =================================================================================================


_FANCY, _STEP, _BLOCK, _STRIDED = range(4)  # how a _Rows reads its rows: see _layout


def _layout(idx: np.ndarray) -> tuple[int, Any]:
    """How to read the rows ``idx`` of a store as a view, when they allow one.

    ``_STEP``: a 1-D run lo, lo+s, lo+2s, ... (a slice with a step); ``_BLOCK``: consecutive rows
    in any shape (a slice, reshaped); ``_STRIDED``: a (k, n) block whose row i is lo + i*a + (0..n-1)
    with a > n (a layer's weights, each neuron's followed by its bias), read as the first n
    columns of a (k, a) reshape; ``_FANCY``: anything else (a copy by fancy indexing).
    """
    flat = idx.ravel()
    if flat.size == 0:
        return _FANCY, None
    lo = int(flat[0])
    steps = np.diff(flat)
    if flat.size == 1 or (steps == 1).all():
        return (_STEP, slice(lo, lo + flat.size)) if idx.ndim == 1 else (_BLOCK, slice(lo, lo + flat.size))
    if idx.ndim == 1 and steps[0] > 0 and (steps == steps[0]).all():
        return _STEP, slice(lo, lo + int(steps[0]) * flat.size, int(steps[0]))
    if idx.ndim == 2 and idx.shape[0] > 1:
        k, n = idx.shape
        a = int(idx[1, 0] - idx[0, 0])
        if a > n and (idx == lo + a * np.arange(k)[:, None] + np.arange(n)[None, :]).all():
            return _STRIDED, (slice(lo, lo + k * a), (k, a), n)
    return _FANCY, None


#: Stores from this index on are the replay's arguments, one (size, batch) view each: inputs are
#: read where the caller's arrays hold them (their gradients: the first rows of the V store).
_ARGUMENTS = 2


class Stores(list["np.ndarray"]):
    """A replay's value (or gradient) stores, [V, U, argument 0, ...], often kept for the next replay.

    ``views`` caches each operand's view of these very arrays: made once, reused by every
    replay that runs in them, and dropped with them.
    """

    __slots__ = ("views",)

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        super().__init__(arrays)
        self.views: dict[Any, Any] = {}


class _Rows:
    """The rows ``idx`` (any shape) of one store: read by ``take``, gradients added by ``add``."""

    def __init__(self, store: int, idx: np.ndarray, needs: tuple[bool, bool]) -> None:
        self.store = store
        self.idx = np.asarray(idx, dtype=np.intp)
        self.flat = self.idx.ravel()
        self.kind, self.where = _layout(self.idx)
        self.key = id(self)  # its views' key: this operand lives as long as the plan, so the id is its own
        self.unique = np.unique(self.flat).size == self.flat.size
        self.needs = needs  # (without, with) gradients of the inputs

    @property
    def end(self) -> int:
        """One past the last row a view of these rows spans (a strided block reaches past its last row)."""
        if self.kind == _STRIDED:
            return int(self.where[0].stop)
        return int(self.flat.max()) + 1 if self.flat.size else 0

    def take(self, stores: Sequence[np.ndarray]) -> np.ndarray:
        """The values, shape ``idx.shape + (batch or 1,)``: a view unless the rows are scattered.

        The view of reused :class:`Stores` is made once and kept with them.
        """
        s = stores[self.store]
        if self.kind == _FANCY:
            return s[self.idx]
        if self.store >= _ARGUMENTS:  # an argument's rows: a new array at every replay
            return self._view(s)
        views = stores.views  # type: ignore[attr-defined]  # the replays' stores are Stores
        view = views.get(self.key)
        if view is None:
            view = views[self.key] = self._view(s)
        return view

    def view(self, stores: Sequence[np.ndarray]) -> np.ndarray:
        """A new view of these rows of ``stores`` (not scattered ones), as :meth:`take` reads them."""
        return self._view(stores[self.store])

    def _view(self, s: np.ndarray) -> np.ndarray:
        if self.kind == _STEP:
            return s[self.where]
        if self.kind == _BLOCK:
            return s[self.where].reshape(*self.idx.shape, s.shape[1])
        rows, shape, n = self.where
        return s[rows].reshape(*shape, s.shape[1])[:, :n]

    def add(self, grads: Sequence[np.ndarray], contribution: np.ndarray) -> None:
        """Add ``contribution`` into the gradient rows.

        ``contribution`` has shape ``idx.shape + (batch or 1,)``, or is broadcastable to it; the
        contributions to a uniform node are summed over the batch (d/dp of sum_i L_i).
        """
        c = contribution
        if self.store == _U and c.shape[-1] != 1:
            c = c.sum(axis=-1, keepdims=True)
        if self.kind != _FANCY:  # a view of the gradient rows: added in place
            view = self.take(grads)
            view += c
            return
        g = grads[self.store]
        if c.ndim != 2 or c.shape[0] != self.flat.size:
            c = np.broadcast_to(c, (*self.idx.shape, c.shape[-1])).reshape(self.flat.size, c.shape[-1])
        if self.unique:
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
Offsets = tuple[int, ...]


# =================================================================================================
# Kernels: one array operation over a group of instructions, from the rule table's array forms
# =================================================================================================
# Each built-in operation's array forward and local derivatives are its row of the rule table,
# as text (Rule.array_forms()), which a kernel writes into the tape's program; nothing here
# restates a derivative. A kernel only decides HOW to apply them to a block of rows:
# broadcasting, and a matrix product where a layer allows one.


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

    def emit_forward(self, p: Emitter) -> None:
        """Write the lines that compute the outputs into their rows (see :mod:`.program`)."""
        raise NotImplementedError

    def emit_backward(self, p: Emitter, mode: int) -> None:
        """Write the lines that add the gradient contributions to the operands' rows."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for :meth:`Tape.kernels`."""
        where = "per sample" if self.store == _V else "once per batch"
        return f"level {self.level}: {len(self.nodes)} x {self.op} ({where})"


def _array_forms(rule: Rule) -> ArrayForms:
    """The rule's NumPy expressions (a table row has them; a custom rule does not)."""
    forms = rule.array_forms()
    if forms is None:
        msg = f"{rule.name}: a custom operation has no array form (it runs element by element)"
        raise TypeError(msg)
    return forms


class _Pointwise(_Kernel):
    """A built-in operation of fixed arity over (k, batch) rows: its rule's array form, elementwise."""

    def __init__(self, rule: Rule, operands: list[Operand], *args: Any) -> None:
        super().__init__(*args)
        self.op, self.operands = rule.name, operands
        self.forms = _array_forms(rule)

    def emit_forward(self, p: Emitter) -> None:
        names = {name: p.values(x, name) for name, x in zip(self.forms.names, self.operands)}
        p.store(p.out(self), self.forms, self.forms.forward, names)

    def emit_backward(self, p: Emitter, mode: int) -> None:
        wanted = [j for j, operand in enumerate(self.operands) if operand.needs[mode]]
        names = p.inputs(self, self.forms, self.operands, [self.forms.derivatives[j] for j in wanted])
        g = p.grad_out(self)
        for j in wanted:
            operand = self.operands[j]
            contribution = p.times(g, self.forms, self.forms.derivatives[j], names)
            p.add(operand, contribution, batch_sum=_batch_sum(self, operand))


def _batch_sum(kernel: _Kernel, target: Operand) -> bool:
    """Whether the contribution is per sample while the target's rows are uniform (summed over the batch)."""
    return kernel.store == _V and isinstance(target, _Rows) and target.store == _U


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
        self.forms = _array_forms(rule)

    def _operands(self) -> list[Operand]:
        """The operand of each input name: a group every node reads is its (1, n, batch) block."""
        return [self.shared.get(j, part) for j, part in enumerate(self.parts)]

    def emit_forward(self, p: Emitter) -> None:
        names = p.inputs(self, self.forms, self._operands(), [self.forms.forward], shared=self.shared)
        p.store(p.out(self), self.forms, self.forms.forward, names)

    def emit_backward(self, p: Emitter, mode: int) -> None:
        targets = self._operands()
        wanted = [j for j, target in enumerate(targets) if target.needs[mode]]
        texts = [self.forms.derivatives[j] for j in wanted]
        names = p.inputs(self, self.forms, targets, texts, shared=self.shared)
        g = p.grad_out(self)
        for j in wanted:
            text, target = self.forms.derivatives[j], targets[j]
            if not self.is_group[j]:  # g * d, as a pointwise kernel
                p.add(target, p.times(g, self.forms, text, names), batch_sum=_batch_sum(self, target))
            elif j in self.shared:  # one (n, k) @ (k, batch) product: written into the rows
                d, n = p.derivative(self.forms, text, names), self.shared[j].flat.size
                p.add(target, f"{p.obj(_sum_over_nodes, 'sum_over_nodes')}({g}, {d}, {n})", takes_out=True)
            else:  # g[k] * d[k, i], summed over the batch by the helper for a uniform group
                d, uniform = p.derivative(self.forms, text, names), _batch_sum(self, target)
                p.add(target, f"{p.obj(_group_contribution, 'group')}({g}, {d}, {uniform})", takes_out=True)

    def describe(self) -> str:
        k = len(self.nodes)
        if not self.shared:
            return f"{super().describe()}: broadcast products"
        n = next(iter(self.shared.values())).flat.size
        if "_m.dot(" not in self.forms.forward:  # (only fsum(w * x) becomes a matrix product)
            return f"{super().describe()}, n={n}: every node reads the same group, broadcast"
        return f"{super().describe()}, n={n}: one ({k}x{n}) @ ({n}xB) matrix product"


def _sum_over_nodes(g: np.ndarray, d: Any, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """sum_k g[k] * d[k, i]: the contribution to each element of a group every node reads, (n, batch).

    With ``out``, it is written there (and returned).
    """
    if isinstance(d, float):
        result = np.broadcast_to(_times(g, d).sum(axis=0), (n, g.shape[1]))
    elif d.shape[-1] == 1:  # d does not vary per sample: one (n, k) @ (k, batch) product
        return np.matmul(d[:, :, 0].T, g, out=out)
    else:
        result = (g[:, None, :] * d).sum(axis=0)
    if out is None:
        return result
    out[...] = result
    return out


def _group_contribution(g: np.ndarray, d: Any, uniform: bool, out: np.ndarray | None = None) -> np.ndarray:
    """g[k] * d[k, i]: the contribution to each element of a group, (k, n, batch).

    ``uniform``: the group's rows are uniform (weights) while g is per sample: the contribution
    is summed over the batch, (k, n, 1); with d one row every node shares, one (k, batch) @
    (batch, n) product. With ``out``, it is written there (and returned).
    """
    if isinstance(d, float):
        c = _times(g[:, None, :], d)
    elif uniform and d.shape[0] == 1 and d.shape[-1] != 1:
        if out is None:
            return (g @ d[0].T)[:, :, None]
        np.matmul(g, d[0].T, out=out[:, :, 0])
        return out
    else:
        c = g[:, None, :] * d
    if uniform and c.shape[-1] != 1:
        c = c.sum(axis=-1, keepdims=True)
    if out is None:
        return c
    out[...] = c
    return out


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

    def emit_forward(self, p: Emitter) -> None:
        p.line(f"{p.obj(self, 'custom')}.forward(S)")

    def emit_backward(self, p: Emitter, mode: int) -> None:
        if self.local is None:
            return
        p.grad_out(self)
        for operand in self.operands:
            if operand.needs[mode]:
                p.accumulates_into(operand)
        p.line(f"{p.obj(self, 'custom')}.backward(S, G, {mode})")

    def forward(self, stores: Stores) -> None:
        """Compute the outputs element by element and store them."""
        values = [x.take(stores) for x in self.operands]
        batch = stores[self.store].shape[1]
        shape = (len(self.nodes), batch)
        stores[self.store][self.out] = self.fn(*[np.broadcast_to(v, shape) for v in values])

    def backward(self, stores: Stores, grads: Stores, mode: int) -> None:
        """Add g * local derivative, element by element, to the operands that need it in this mode."""
        g = grads[self.store][self.out]
        out = stores[self.store][self.out]
        values = [x.take(stores) for x in self.operands]
        derivatives = self.local(out, *[np.broadcast_to(v, out.shape) for v in values])
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
    needs: tuple[np.ndarray, np.ndarray]  # node id -> depends on a param (without, with the inputs)
    wanted: tuple[np.ndarray, np.ndarray]  # ... and the output depends on it: its gradient is computed
    offsets: Offsets  # the arguments' input rows: argument i holds inputs offsets[i]..offsets[i + 1]
    reads_input_rows: bool  # does a kernel read inputs from the V store (which must then hold them)?


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


def _reaching(graph: _Graph) -> np.ndarray:
    """Per node: does the output (the first root) depend on it? Only those get a gradient, as in backward."""
    reach = np.zeros(graph.n_leaves + len(graph.instructions), dtype=bool)
    reach[graph.outputs[0]] = True
    for ins in reversed(graph.instructions):
        if reach[ins.out]:
            reach[list(ins.args)] = True
    return reach


def _kind(ids: Sequence[int], varying: np.ndarray) -> str:
    """'V' if every node varies per sample, 'U' if none does, else 'M' (mixed)."""
    v = varying[list(ids)]
    return "V" if v.all() else "U" if not v.any() else "M"


def _is_pointwise(rule: Rule) -> bool:
    """A kernel per operand position (fixed arity, or custom) rather than per group of operands."""
    return rule.definition is None or rule.arity is not None


def _group_key(
    ins: Instruction, rule: Rule, varying: np.ndarray, level: np.ndarray, wanted: tuple[np.ndarray, ...]
) -> tuple[Any, ...]:
    """Instructions with equal keys become one kernel: same level, operation and operand layout.

    And the same need of a gradient: a node whose gradient is 0 (an aux output) never shares a
    kernel with one that has one, where 0 times an infinite local derivative would be nan.

    A per-sample group read alongside a uniform one (a layer: the neurons'
    weights and the x they all read) is keyed by its node ids too, so the
    neurons reading the same x share a kernel and a matrix product.
    """
    needed = tuple(bool(w[ins.out]) for w in wanted)
    head = (int(level[ins.out]), bool(varying[ins.out]), ins.op, len(ins.args), needed)
    if _is_pointwise(rule):
        return (*head, tuple(bool(varying[a]) for a in ins.args))
    blocks = [ins.args[a:b] for a, b in rule.signature.spans(len(ins.args))]
    kinds = tuple(_kind(block, varying) for block in blocks)
    groups = [j for j, is_group in enumerate(rule.signature.is_group) if is_group]
    if any(kinds[j] == "U" for j in groups):
        return (*head, kinds, *(blocks[j] for j in groups if kinds[j] == "V"))
    return (*head, kinds)


def _operand(
    idx: np.ndarray,
    varying: np.ndarray,
    row: np.ndarray,
    needs: tuple[np.ndarray, np.ndarray],
    offsets: Offsets,
) -> Operand:
    """The rows of the node ids ``idx`` (k, ...) as an operand.

    Rows that are all inputs of one argument are read from that argument (no copy of it).
    """
    flag = (bool(needs[0][idx].any()), bool(needs[1][idx].any()))
    v = varying[idx]
    if idx.size and idx.max() < offsets[-1]:
        i = int(np.searchsorted(offsets, idx.min(), side="right")) - 1
        if idx.max() < offsets[i + 1]:
            rows = _Rows(_ARGUMENTS + i, idx - offsets[i], flag)
            if rows.kind == _FANCY or rows.end <= offsets[i + 1] - offsets[i]:
                return rows  # (a view reaching past the argument's last row needs the padded V store)
    if v.all() and idx.size:
        return _Rows(_V, row[idx], flag)
    if not v.any():
        return _Rows(_U, row[idx], flag)
    return _MixedRows(row[idx], v, flag)


def _make_kernel(
    nodes: list[int], graph: _Graph, props: tuple[Any, ...], out: tuple[int, slice, int, tuple[bool, bool]]
) -> _Kernel:
    """The kernel of one group of instructions (all of one level, operation and layout)."""
    varying, row, needs, offsets = props
    rule = graph.rules[nodes[0] - graph.n_leaves]
    args = np.array([graph.instructions[n - graph.n_leaves].args for n in nodes], dtype=np.intp)
    args = args.reshape(len(nodes), -1)
    if _is_pointwise(rule):
        operands = [_operand(args[:, j], varying, row, needs, offsets) for j in range(args.shape[1])]
        if rule.definition is None:
            return _Elementwise(rule, operands, nodes, *out)
        return _Pointwise(rule, operands, nodes, *out)
    spans = rule.signature.spans(args.shape[1])
    parts = [
        _operand(args[:, lo:hi] if is_group else args[:, lo], varying, row, needs, offsets)
        for (lo, hi), is_group in zip(spans, rule.signature.is_group)
    ]
    groups = [j for j, is_group in enumerate(rule.signature.is_group) if is_group]
    stores = {j: part.store if isinstance(part := parts[j], _Rows) else None for j in groups}
    shared = {}
    if _U in stores.values():
        for j in groups:
            block = args[:, spans[j][0] : spans[j][1]]
            per_sample = stores[j] is not None and stores[j] != _U
            if per_sample and (block == block[0]).all():
                shared[j] = _operand(block[0], varying, row, needs, offsets)  # every node reads the same x
    return _Reduction(rule, parts, shared, nodes, *out)  # type: ignore[arg-type]  # shared: _Rows only


def _compile(graph: _Graph, offsets: Offsets | None = None) -> _Plan:
    """Group the instructions by (level, operation, operand layout) and lay the stores out.

    Each group's outputs get consecutive rows, so a kernel writes one slice. ``offsets``
    cut the inputs into the replay's arguments (default: one argument).
    """
    offsets = (0, graph.n_inputs) if offsets is None else tuple(offsets)
    varying, level, needs = _node_properties(graph)
    reach = _reaching(graph)
    wanted = (needs[0] & reach, needs[1] & reach)
    n_in, n_leaves = graph.n_inputs, graph.n_leaves
    groups: dict[tuple[Any, ...], list[int]] = {}
    for ins, rule in zip(graph.instructions, graph.rules):
        groups.setdefault(_group_key(ins, rule, varying, level, wanted), []).append(ins.out)
    total = n_leaves + len(graph.instructions)
    store = np.where(varying, _V, _U)
    row = np.zeros(total, dtype=np.intp)
    row[:n_in] = np.arange(n_in)
    row[n_in:n_leaves] = np.arange(n_leaves - n_in)
    sizes = [n_in, n_leaves - n_in]
    layout = []
    for key in sorted(groups, key=lambda k: k[0]):
        nodes = groups[key]
        s = int(store[nodes[0]])
        row[nodes] = np.arange(sizes[s], sizes[s] + len(nodes))
        layout.append((nodes, s, slice(sizes[s], sizes[s] + len(nodes)), key[0]))
        sizes[s] += len(nodes)
    kernels = []
    for nodes, s, out, lvl in layout:
        active = (bool(wanted[0][nodes].any()), bool(wanted[1][nodes].any()))
        kernels.append(_make_kernel(nodes, graph, (varying, row, wanted, offsets), (s, out, lvl, active)))
    reads_inputs = False
    for rows in (r for k in kernels for r in _rows_of(k)):
        if rows.store < _ARGUMENTS:  # room for the views that reach past the end
            sizes[rows.store] = max(sizes[rows.store], rows.end)
        reads_inputs |= rows.store == _V and bool(rows.flat.size) and int(rows.flat.min()) < n_in
    return _Plan(sizes[_V], sizes[_U], store, row, kernels, needs, wanted, offsets, reads_inputs)


def _rows_of(kernel: _Kernel) -> list[_Rows]:
    """Every block of rows a kernel reads."""
    operands = [*getattr(kernel, "operands", ()), *getattr(kernel, "parts", ())]
    operands += getattr(kernel, "shared", {}).values()
    rows: list[_Rows] = []
    for operand in operands:
        rows += [operand.v, operand.u] if isinstance(operand, _MixedRows) else [operand]
    return rows
