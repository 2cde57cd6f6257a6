"""The Tape: a compiled Wengert list, replayed on whole batches (forward, backward, checks)."""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from tinygrad_bp.engine import _accumulation_overflow, _not_differentiable_at, _not_finite_at
from tinygrad_bp.errors import NonDifferentiableError, OperationOverflowError, TapeMismatchError
from tinygrad_bp.value import Value, _failed, _overflow

try:
    import numpy as np
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError("tinygrad_bp.tape needs numpy: pip install 'tinygrad_bp[numpy]'") from _error

from .kernels import _ARGUMENTS, Stores, _checked_forward, _checked_local, _compile, _Plan
from .parameters import HeldParameters
from .parameters import all_finite as _all_finite
from .parameters import held_elsewhere as _held_elsewhere
from .program import Program
from .recording import (
    _DATA,
    _U,
    _V,
    CHECK_MODES,
    ArrayLike,
    Check,
    Instruction,
    Reduction,
    Shape,
    _check_output,
    _checked_capture,
    _describe_entry,
    _Escape,
    _Graph,
    _Guard,
    _make_inputs,
    _output_of,
    _roles,
    _structure,
)

if TYPE_CHECKING:
    from tinygrad_bp.rules import Rule

_E = TypeVar("_E", bound=Exception)  # an error, said again with where the replay was

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

    def add_to(self, params: Sequence[Value], *, accumulate: bool = True) -> None:
        """Write ``self.params`` into ``p.grad`` of each Value: added (default, as backward) or set."""
        if len(params) != len(self.params):
            raise TapeMismatchError(f"{len(params)} params given for {len(self.params)} gradients")
        values = self.params.tolist()
        if accumulate:  # the slot behind .grad: this loop runs on every replay
            for p, g in zip(params, values):
                p._grad += g
        else:
            for p, g in zip(params, values):
                p._grad = g


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

    stores: Stores
    batched: bool
    batch: int
    scratch: _Scratch | None  # the reusable arrays it ran in, if any
    arrays: list[np.ndarray]  # the arguments, when they are not in the V store
    filled: bool  # are the inputs in their rows of the V store (else only in ``arrays``)?


class _Scratch(NamedTuple):
    """The value and gradient stores of one batch size, kept for the next replay of that size."""

    stores: Stores
    grads: Stores


#: A replay's arrays are kept for the next replay of the same size up to this many bytes.
MAX_SCRATCH_BYTES = 64 * 2**20


class _Workspace(threading.local):
    """Per thread: the scratch arrays of the last two batch sizes a one-shot replay ran.

    Fresh arrays of this size cost more than the kernels that fill them (the operating system
    hands out new pages); reusing them is safe because :meth:`Tape.replay` copies out
    everything it returns, and it is per thread, so replays in two threads never share one.
    """

    def __init__(self) -> None:
        self.by_size: dict[int, _Scratch] = {}

    def drop_arguments(self) -> None:
        """Forget the last replay's arguments: the kept arrays hold no view of the caller's."""
        for scratch in self.by_size.values():
            del scratch.stores[_ARGUMENTS:]

    def get(self, n: int, plan: _Plan) -> _Scratch | None:
        """The scratch arrays of batch size ``n`` (None for a batch too big to keep: fresh ones then)."""
        scratch = self.by_size.get(n)
        if scratch is None:
            if 2 * 8 * (plan.n_v * n + plan.n_u) > MAX_SCRATCH_BYTES:
                return None
            if len(self.by_size) >= 2:
                self.by_size.pop(next(iter(self.by_size)))
            stores = _fresh_stores(plan, n)
            scratch = self.by_size[n] = _Scratch(stores, _gradient_stores(plan, stores))
        return scratch


def _program(plan: _Plan, graph: _Graph) -> Program:
    """The plan's generated passes; the caller seeds the output's gradient, reads the params' and inputs'."""
    out = graph.outputs[0]
    params = {(_U, r) for r in range(len(graph.params))}
    inputs = {(_V, r) for r in range(graph.n_inputs)}
    wanted = [
        {(int(plan.store[node]), int(plan.row[node])) for node in np.flatnonzero(w)} for w in plan.wanted
    ]
    return Program(plan, (int(plan.store[out]), int(plan.row[out])), (params, params | inputs), wanted)


def _zero(grads: Stores) -> None:
    """Zero a set of gradient stores (the arguments' rows are rows of the first)."""
    for store in grads[:_ARGUMENTS]:
        store.fill(0.0)


def _fresh_stores(plan: _Plan, n: int) -> Stores:
    """Value stores for a batch of ``n``: zeros (a view may span padding); the arguments come per replay."""
    return Stores([np.zeros((plan.n_v, n)), np.zeros((plan.n_u, 1))])


def _gradient_stores(plan: _Plan, stores: Sequence[np.ndarray]) -> Stores:
    """Zeroed gradient stores shaped like ``stores``; each argument's gradients are its inputs' V rows."""
    grads = Stores([np.zeros_like(stores[_V]), np.zeros_like(stores[_U])])
    grads += [grads[_V][lo:hi] for lo, hi in itertools.pairwise(plan.offsets)]
    return grads


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
        sizes = [math.prod(s) for s in self._shapes]
        self._offsets = tuple(int(sum(sizes[:i])) for i in range(len(sizes) + 1))
        self._pairs = list(itertools.pairwise(self._offsets))  # each argument's (first, end) input
        if self._offsets[-1] != graph.n_inputs:
            raise ValueError(
                f"the shapes {self._shapes} hold {self._offsets[-1]} inputs, not {graph.n_inputs}"
            )
        self._plan = _compile(graph, self._offsets)
        self._program = _program(self._plan, graph)
        out = graph.outputs[0]
        self._out = (int(self._plan.store[out]), int(self._plan.row[out]))  # the output's (store, row)
        self._structure = list(structure)
        self._param_roles = _roles("p", graph.params)
        self._param_ids = frozenset(map(id, graph.params))
        self._required = _required_check(self.escapes, self._plan)
        self.check = _check_mode(check, self)
        self._last: _Forward | None = None
        self._workspace = _Workspace()
        self._aux_rows = _consecutive_rows(self._plan, graph.outputs[1:])
        read = [*graph.outputs, *(g.subject for g in self.guards), *(g.other for g in self.guards)]
        inputs_read = any(isinstance(node, int) and node < graph.n_inputs for node in read)
        self._inputs_in_store = self._plan.reads_input_rows or inputs_read  # else read where they are

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

    def to_torch(self, dtype: Any = None) -> Any:
        """The tape's graph as a ``torch.nn.Module`` (float64; the params one ``nn.Parameter``).

        ``module(*inputs)`` computes the per-sample outputs on batched tensors on
        any device, with torch's autograd: see :mod:`tinygrad_bp.tape.to_torch`.
        """
        from .to_torch import to_torch

        return to_torch(self, dtype)

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

    def program(self, name: str | None = None) -> str:
        """The Python that replays the plan: one function for the forward pass, one per backward mode.

        Each kernel is a line or a few: the rule table's array expressions over views of the rows
        it reads, written into the rows it computes (see :mod:`tinygrad_bp.tape.program`).
        ``name`` picks one function: ``"forward"``, ``"backward_0"`` (the params' gradients) or
        ``"backward_1"`` (the inputs' too); None gives all three.
        """
        if name is None:
            return self._program.source
        if name not in self._program.sources:
            names = ", ".join(map(repr, self._program.sources))
            raise ValueError(f"program: name must be one of {names} or None, not {name!r}")
        return self._program.sources[name]

    # --- replay ---------------------------------------------------------------------------------

    def forward(
        self,
        *args: ArrayLike,
        check: Check | None = None,
        params: Sequence[Value] | HeldParameters | None = None,
    ) -> Any:
        """Replay the forward pass: the output for one sample (a float) or per sample of a batch.

        Each argument has the shape of its example (a number, or a vector of d numbers), or one
        more leading batch dimension (n,) / (n, d): then an array of n outputs is returned. Params
        and constants are read from their Values now. ``check`` overrides the tape's re-tracing
        mode; ``params``, if given, must be exactly the tape's params (TapeMismatchError otherwise),
        as a list of Values or held as arrays (:class:`~tinygrad_bp.tape.HeldParameters`, whose
        ``data`` is then read instead of the Values).
        """
        held = self._check_params(params)
        state = self._forward(args, self._mode(check), held, reuse=False)
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
        """The aux outputs, (batch, m): one copy of their rows when they lie together (a layer's outputs)."""
        if self._aux_rows is not None:
            return state.stores[_V][self._aux_rows].T.copy()
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
        with np.errstate(all="ignore"):
            return self._backward(self._last, _seeds(reduction, seed, self._last.batch), inputs)

    def value_and_grad(
        self,
        *args: ArrayLike,
        reduction: Reduction = "mean",
        inputs: bool = False,
        check: Check | None = None,
        params: Sequence[Value] | HeldParameters | None = None,
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
        params: Sequence[Value] | HeldParameters | None = None,
    ) -> Replay:
        """Forward and backward in one call, with everything: see :class:`Replay`."""
        held = self._check_params(params)
        try:
            mode = self._mode(check)
            if mode == "none":
                with np.errstate(all="ignore"):  # one block for the whole replay: fn does not run
                    state = self._forward(args, mode, held, reuse=True, quiet=True)
                    return self._replay(state, reduction, inputs)
            state = self._forward(args, mode, held, reuse=True)
            with np.errstate(all="ignore"):
                return self._replay(state, reduction, inputs)
        finally:
            self._workspace.drop_arguments()

    def _replay(self, state: _Forward, reduction: Reduction, inputs: bool) -> Replay:
        """The rest of :meth:`replay`, after its forward pass (where NumPy's warnings are off)."""
        store, row = self._out
        out = state.stores[store][row].copy() if store == _V else self._values(state, self._graph.outputs[0])
        seeds = _seeds(reduction, None, state.batch)
        total = float(out.sum())  # (numpy's mean is this sum divided by n, through a slower path)
        if not math.isfinite(total):  # every output is finite: their sum overflowed
            msg = f"replay: the {reduction} of the batch's {state.batch} losses is too large for a float"
            raise OperationOverflowError(msg)
        loss = (total / state.batch if reduction == "mean" else total) if state.batched else float(out[0])
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

    def _check_params(self, params: Sequence[Value] | HeldParameters | None) -> HeldParameters | None:
        """Held params (whose Values are checked once per tape), None to read them from the Values.

        Params given as a list must be the tape's own; TapeMismatchError otherwise, and also
        when the Values are held as arrays by a hold() block (their numbers are not current).
        """
        if isinstance(params, HeldParameters):
            if self not in params.checked_by:
                self._require_own(params.params)
                params.checked_by.add(self)
            return params
        if params is not None:
            self._require_own(params)
        if _held_elsewhere(self._param_ids):
            raise TapeMismatchError(
                "this tape's params are held as arrays by a hold() block, so their Values are not "
                "current: replay through that block's objective, or after the block"
            )
        return None

    def _require_own(self, params: Sequence[Value]) -> None:
        if list(params) != list(self._graph.params):
            raise TapeMismatchError(
                f"these {len(list(params))} params are not the tape's {len(self._graph.params)} params "
                "(a different model, or a parameter replaced): record a new tape"
            )

    def _read(self, args: Sequence[ArrayLike]) -> _Batch:
        """The replay's arguments as one (n_inputs, batch) array, or TapeMismatchError."""
        arrays, batched, n = self._arguments(args)
        x = np.empty((self._graph.n_inputs, n))
        with np.errstate(all="ignore"):  # the check's sum may overflow: it then looks element by element
            self._fill(arrays, x)
        return _Batch(batched, n, x)

    def _arguments(self, args: Sequence[ArrayLike]) -> tuple[list[np.ndarray], bool, int]:
        """(the arguments as float arrays, whether they are a batch, the batch size), checked."""
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
        return arrays, batched, n

    def _fill(self, arrays: list[np.ndarray], x: np.ndarray) -> None:
        """Write the arguments into the (n_inputs, batch) rows ``x``; ValueError for a non-finite one."""
        n = x.shape[1]
        for a, lo, hi in zip(arrays, self._offsets, self._offsets[1:]):
            x[lo:hi] = a.reshape(n, hi - lo).T
        if not _all_finite(x):
            i, b = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(
                f"input {self._names[i]} of sample {b} is {float(x[i, b])!r}: inputs must be finite numbers"
            )

    def _check_inputs(self, arrays: list[np.ndarray]) -> None:
        """ValueError naming the first input that is not finite (by input, then sample), as _fill does."""
        if _all_finite(*arrays):
            return
        n = arrays[0].shape[0] if arrays[0].ndim > len(self._shapes[0]) else 1
        x = np.empty((self._graph.n_inputs, n))
        self._fill(arrays, x)

    def _forward(
        self,
        args: Sequence[ArrayLike],
        mode: Check,
        held: HeldParameters | None,
        *,
        reuse: bool,
        quiet: bool = False,
    ) -> _Forward:
        """Run the kernels forward, re-tracing as ``mode`` (checked by :meth:`_mode`) says.

        ``held``: the params held as arrays (else they are read from the Values); ``reuse``: run
        in this thread's scratch arrays (the caller copies out what it keeps). The finiteness
        checks run where NumPy's warnings are off (``quiet``: the caller turned them off): their
        first sum may overflow (it then looks element by element), which is no reason to warn.
        """
        arrays, batched, n = self._arguments(args)
        scratch = self._workspace.get(n, self._plan) if reuse else None
        stores = scratch.stores if scratch else _fresh_stores(self._plan, n)
        # one replay reads its inputs where they are; forward() keeps a copy, for backward() later
        fill = self._inputs_in_store or mode != "none" or not reuse
        with _QUIET if quiet else np.errstate(all="ignore"):
            self._load(stores, arrays, held, fill=fill)
            if mode == "none":
                self._run_kernels(stores, arrays, filled=fill)
        if mode != "none":  # fn runs with the caller's NumPy settings
            self._retrace(stores[_V][: self._graph.n_inputs], n if mode == "all" else 1)
            with np.errstate(all="ignore"):
                self._run_kernels(stores, arrays, filled=fill)
        state = _Forward(stores, batched, n, scratch, [] if fill else arrays, fill)
        self._check_guards(state)
        return state

    def _mode(self, check: Check | None) -> Check:
        """The re-tracing mode of one replay: ``check``, or the tape's own; validated."""
        return _check_mode(self.check if check is None else check, self)

    def _load(
        self, stores: Stores, arrays: list[np.ndarray], held: HeldParameters | None, *, fill: bool
    ) -> None:
        """The leaves: the arguments (copied into their rows if ``fill``), the params and the constants."""
        g = self._graph
        x = stores[_V][: g.n_inputs]
        pairs = self._pairs
        if fill:
            self._fill(arrays, x)
            stores[_ARGUMENTS:] = [x[lo:hi] for lo, hi in pairs]
        else:
            self._check_inputs(arrays)
            n = x.shape[1]
            stores[_ARGUMENTS:] = [a.reshape(n, hi - lo).T for a, (lo, hi) in zip(arrays, pairs)]
        n_p = len(g.params)
        n_c = len(g.constants)
        if held is None:
            stores[_U][:n_p, 0] = np.fromiter(map(_DATA, g.params), dtype=float, count=n_p)
        else:
            stores[_U][:n_p, 0] = held.checked_data()
        stores[_U][n_p : n_p + n_c, 0] = np.fromiter(map(_DATA, g.constants), dtype=float, count=n_c)

    def _run_kernels(self, stores: Stores, arrays: list[np.ndarray], *, filled: bool) -> None:
        """The generated forward pass; the error of the first operation that left its domain or overflowed."""
        g = self._graph
        self._program.forward(stores)
        # the leaves are finite (inputs checked first, params and constants by construction)
        computed = (stores[_V][g.n_inputs :], stores[_U][g.n_leaves - g.n_inputs :])
        if not _all_finite(*computed):
            if not filled:  # the error names the operands' values: the inputs' too
                self._fill(arrays, stores[_V][: g.n_inputs])
            raise self._forward_error(stores)

    def _values(self, state: _Forward, node: int) -> np.ndarray:
        """One node's value per sample, shape (batch,)."""
        values = self._row(state.stores, node)
        return values if self._plan.store[node] == _V else np.full(state.batch, values[0])

    def _backward(self, state: _Forward, seeds: np.ndarray, inputs: bool) -> Gradients:
        """The gradients of sum_i seeds_i out_i, checked finite, copied out of the stores.

        Called where NumPy's warnings are off (the check's sum may overflow, then it looks closer).
        """
        g = self._graph
        grads = _gradient_stores(self._plan, state.stores) if state.scratch is None else state.scratch.grads
        try:
            self._run_backward(state, grads, seeds, inputs)  # (it writes or zeroes every row it reads)
        except BaseException:  # a custom operation's derivative raised: no row of it may last
            _zero(grads)
            raise
        if not _all_finite(grads[_V][0 if inputs else g.n_inputs :], grads[_U]):
            raise self._failed_backward(state, grads, seeds, inputs)
        n_in, n_p = g.n_inputs, len(g.params)
        # + 0.0: a copy, and -0.0 (a first contribution written as it is) read as backward's 0.0
        params = grads[_U][:n_p, 0] + 0.0
        if not inputs:
            return Gradients(params)
        return Gradients(params, self._split(grads[_V][:n_in].T + 0.0, state.batched))

    def _run_backward(self, state: _Forward, grads: Stores, seeds: np.ndarray, inputs: bool) -> None:
        """The generated backward pass, from the seeds dL/d out_i."""
        store, row = self._out
        grads[store][row] = seeds if store == _V else seeds.sum()
        self._program.backward[int(inputs)](state.stores, grads)

    def _failed_backward(
        self, state: _Forward, grads: Stores, seeds: np.ndarray, inputs: bool
    ) -> ArithmeticError:
        """The error of a backward pass whose gradients are not all finite.

        The pass runs again in zeroed stores, so that every row holds this pass's gradient
        (the rows it does not write hold another pass's); the stores are zeroed again after.
        """
        _zero(grads)
        try:
            self._run_backward(state, grads, seeds, inputs)
            if not state.filled:  # the error names the operands' values: the inputs' too
                self._fill(state.arrays, state.stores[_V][: self._graph.n_inputs])
            return self._backward_error(state, grads, inputs)
        finally:
            _zero(grads)

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
            out, aux = _output_of(self._fn(*values))
            roots = [out, *aux] if len(self._graph.outputs) > 1 or aux else out
            found = _structure(roots, params, _roles("x", inputs))
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
            return self._replaying(cause, ins, b)
        return ValueError("replay: a value is not finite")  # pragma: no cover - inputs are checked first

    def _replaying(self, error: _E, ins: Instruction, sample: int) -> _E:
        """The engine's error for one operation, saying which line of the tape and which sample."""
        return type(error)(f"{error} (replaying {self._line(ins)} on sample {sample})")

    def _backward_error(self, state: _Forward, grads: list[np.ndarray], inputs: bool) -> ArithmeticError:
        """The engine's error for the operation whose contribution to a gradient is not finite.

        That is the last operation (of those whose gradient the pass computes) whose own gradient
        is finite while its contribution to an operand is not: g times its local derivative, on
        some sample. An operand's gradient alone does not tell: a parameter's sums every
        operation's contribution over the batch. If no contribution is to blame, a sum of finite
        ones overflowed in a leaf, as the engine says too.
        """
        wanted = self._plan.wanted[int(inputs)]
        instructions = list(zip(self._graph.instructions, self._graph.rules))
        for ins, rule in reversed(instructions):
            if not wanted[ins.out] or self._first_bad(grads, ins.out) is not None:
                continue
            bad = [j for j, a in enumerate(ins.args) if self._first_bad(grads, a) is not None]
            found = self._bad_contribution(state, grads, ins, rule, bad) if bad else None
            if found is not None:
                b, error = found
                return self._replaying(error, ins, b)
        return self._accumulation_error(state, grads, inputs)

    def _bad_contribution(
        self, state: _Forward, grads: list[np.ndarray], ins: Instruction, rule: Rule, positions: list[int]
    ) -> tuple[int, ArithmeticError] | None:
        """(sample, error): the first sample where g * d out/d x_j (j of ``positions``) is not finite."""
        per_sample = self._plan.store[ins.out] == _V
        outs, upstream = self._row(state.stores, ins.out), self._row(grads, ins.out)
        for b in range(state.batch if per_sample else 1):
            xs = self._sample_args(state.stores, ins, b)
            try:
                local = rule.local(float(outs[b]), *xs)
            except (ArithmeticError, ValueError) as error:
                return b, _not_differentiable_at(ins.op, xs, error)
            g = float(upstream[b])
            for j in positions:
                d = float(local[j])
                if not math.isfinite(g * d):
                    return b, _not_finite_at(ins.op, xs, d)
        return None

    def _accumulation_error(self, state: _Forward, grads: list[np.ndarray], inputs: bool) -> ArithmeticError:
        """OperationOverflowError where a sum of finite contributions overflowed, named as backward does.

        The first such node (nearest the output): if the sum of its contributions on one sample
        overflows, backward on that sample raises it at the operation whose contribution tips
        the sum; if only their sum over the batch does (a parameter's), it is the leaf's
        accumulated gradient, as in backward called once per sample.
        """
        g = self._graph
        wanted = self._plan.wanted[int(inputs)]
        nearest_first = [*(ins.out for ins in reversed(g.instructions)), *range(g.n_leaves)]
        bad = (n for n in nearest_first if wanted[n] and self._first_bad(grads, n) is not None)
        node = next(bad, None)
        if node is None:  # pragma: no cover - the check found a gradient that is not finite
            return NonDifferentiableError("replay: a gradient is not finite")
        tipping = self._tipping_contribution(state, grads, node, wanted)
        if tipping is not None:
            return tipping
        if g.n_inputs <= node < g.n_inputs + len(g.params):
            return _accumulation_overflow(g.params[node - g.n_inputs])
        what = self._name(node)
        return OperationOverflowError(f"backward: the gradient of {what} is too large for a float")

    def _tipping_contribution(
        self, state: _Forward, grads: list[np.ndarray], node: int, wanted: np.ndarray
    ) -> ArithmeticError | None:
        """The error at the operation whose contribution makes ``node``'s gradient on one sample overflow."""
        users = [
            (ins, rule, j)
            for ins, rule in zip(reversed(self._graph.instructions), reversed(self._graph.rules))
            if wanted[ins.out]
            for j, a in enumerate(ins.args)
            if a == node
        ]
        for b in range(state.batch):
            total = 0.0
            for ins, rule, j in users:  # in backward's order
                at = b if self._plan.store[ins.out] == _V else 0
                xs = self._sample_args(state.stores, ins, at)
                d = float(rule.local(float(self._row(state.stores, ins.out)[at]), *xs)[j])
                total += float(self._row(grads, ins.out)[at]) * d
                if not math.isfinite(total):
                    error = _not_finite_at(ins.op, xs, d)
                    return self._replaying(error, ins, b)
        return None

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


_QUIET = contextlib.nullcontext()  # NumPy's warnings are already off

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _consecutive_rows(plan: _Plan, nodes: Sequence[int]) -> slice | None:
    """The value store's rows of ``nodes`` as one slice, when they are consecutive per-sample rows."""
    if not nodes or any(plan.store[node] != _V for node in nodes):
        return None
    rows = [int(plan.row[node]) for node in nodes]
    if rows != list(range(rows[0], rows[0] + len(rows))):
        return None
    return slice(rows[0], rows[0] + len(rows))


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
