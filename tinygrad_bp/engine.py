"""The engine: reverse mode over a recorded graph, using the rule table.

Read :func:`reference_backward` first: the whole of reverse mode in about
twenty lines (a topological order, a dictionary of gradients, one rule lookup
per node). The stepper shows exactly its steps, and the fast path below is
tested against it on random graphs.

No recursion anywhere, so graphs of any depth work at Python's default
recursion limit.

The fast path computes the same thing as the reference, faster:

* The order (``_order``) is :func:`toposort`'s, an iterative depth-first
  post-order, built with stamps on the nodes instead of a set; walked
  backwards, each node has all of its gradient before it passes shares on,
  and the sums are added in exactly the reference pass's order, so the two
  agree to the last bit. (The checked pass and ``create_graph`` use Kahn's
  order instead: ``_mark`` stamps each node with the number of edges into
  it, and a node is released once all of its consumers have delivered.)
* The loop (``_run_fast``) is generated from the rule table by
  :mod:`tinygrad_bp.codegen`: one branch per operation with its derivatives
  written inline, so a node costs no rule lookup and no function call. It
  checks nothing as it goes; the leaves are checked at the end, and a pass
  that went wrong is run again by ``_run_checked``, which checks every sum
  and raises the error naming the operation.
* Gradients are gathered in each node's private ``_upstream`` slot, never in
  ``.grad``, and copied to ``.grad`` only when the pass has finished, so a
  second pass can never compound the first (micrograd's issue #53) and a
  pass that fails writes nothing. Between passes the slot holds at most the
  last float pass's number, never a Value. A lock lets one pass run at a
  time. (A per-pass dictionary would do the same job at about twice the
  cost per edge.)
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from .errors import NonDifferentiableError, OperationOverflowError, UnusedInputError
from .expressions import FLOAT
from .rules import RULES
from .value import Value, _operand, _set_grad_enabled, constant, escaped, use_engine

__all__ = [
    "BackwardStep",
    "backward",
    "grad",
    "gradients",
    "local_derivatives",
    "reference_backward",
    "reference_gradients",
    "toposort",
]


# One backward pass at a time: passes keep their running sums on the nodes.
_pass_lock = threading.RLock()
_INF = float("inf")
_NEG_INF = -_INF
_pass_numbers = itertools.count(1)


def toposort(root: Value | Sequence[Value], *, only_requires_grad: bool = False) -> list[Value]:
    """Every node reachable from ``root`` (a Value or several), inputs before the nodes that use them.

    Iterative depth-first post-order, as HIPS autograd's ``toposort``; with
    several roots, the first root's graph comes first. With
    ``only_requires_grad`` the walk skips nodes that need no gradient.
    """
    roots = [root] if isinstance(root, Value) else list(root)
    order: list[Value] = []
    seen: set[int] = set()
    for start in roots:
        if id(start) in seen:
            continue
        seen.add(id(start))
        stack: list[tuple[Value, int]] = [(start, 0)]
        while stack:
            node, i = stack.pop()
            inputs = node.inputs
            while i < len(inputs):
                child = inputs[i]
                i += 1
                if id(child) not in seen and (child.requires_grad or not only_requires_grad):
                    seen.add(id(child))
                    stack.append((node, i))
                    stack.append((child, 0))
                    break
            else:
                order.append(node)
    return order


# --- the reference: reverse mode as a learner reads it -----------------------------------------


def local_derivatives(node: Value) -> tuple[float, ...]:
    """``(d node / d input_i)`` for each input occurrence, at the inputs' data, from the rule table.

    Raises:
        NonDifferentiableError: a local derivative is undefined there (sqrt at 0, ...).

    """
    if not node.inputs:
        return ()
    values = [x.data for x in node.inputs]
    try:
        return tuple(float(d) for d in RULES[node.op].local(node.data, *values))
    except (ArithmeticError, ValueError) as error:
        shown = ", ".join(repr(v) for v in values)
        msg = f"{node.op}: the local derivative is not finite at inputs ({shown}): {error}"
        raise NonDifferentiableError(msg) from None


# One step of the reference pass: the node, d root / d node, and for each input occurrence that
# needs a gradient (position, input, local derivative, contribution = upstream * local).
BackwardStep = tuple[Value, float, list[tuple[int, Value, float, float]]]


def reference_backward(
    root: Value, seed: float = 1.0, grads: dict[Value, float] | None = None
) -> Iterator[BackwardStep]:
    """Reverse mode, one node at a time: the chain rule as a learner reads it.

    ``grads[n]`` collects d root / d n. Visiting the nodes in reverse
    topological order means every node that uses ``n`` has passed its share to
    ``n`` before ``n`` is visited, so its gradient is complete by then; it
    passes upstream * (d n / d input) to each input: the chain rule, summed
    over every path. Yields each step; pass ``grads`` to keep the totals.
    Nothing in the graph is touched.
    """
    grads = {} if grads is None else grads
    grads[root] = seed
    for node in reversed(toposort(root, only_requires_grad=True)):
        if not node.inputs:
            continue  # a leaf: its gradient is final
        upstream = grads[node]
        contributions = []
        for i, (x, local) in enumerate(zip(node.inputs, local_derivatives(node))):
            if x.requires_grad:
                grads[x] = grads.get(x, 0.0) + upstream * local
                contributions.append((i, x, local, upstream * local))
        yield node, upstream, contributions


def reference_gradients(root: Value, seed: float = 1.0) -> dict[Value, float]:
    """d root / d node for every node that needs a gradient, by :func:`reference_backward`."""
    grads: dict[Value, float] = {}
    if root.requires_grad:
        for _ in reference_backward(root, seed, grads):
            pass
    return grads


# --- the fast path ------------------------------------------------------------------------------


class _Marked(NamedTuple):
    """The nodes one pass reaches that need a gradient: operations (``root`` first if it is one), leaves."""

    inner: list[Value]
    leaves: list[Value]

    def all(self) -> list[Value]:
        return self.inner + self.leaves


def _mark(root: Value, empty: Any = None) -> _Marked:
    """Stamp every node reachable from ``root`` that needs a gradient for a new pass.

    Each node gets the pass number, ``_pending`` = the number of edges into it
    (a repeated operand counts once per occurrence) and ``_upstream = empty``
    (0.0 for the fast path, None where the sums may be Values).
    """
    number = next(_pass_numbers)
    root._pass = number
    root._pending = 0
    root._upstream = empty
    inner: list[Value] = [root] if root.op else []
    leaves: list[Value] = [] if root.op else [root]
    for node in inner:  # the list grows while it is walked: each operation is visited once
        # node.inputs, written out (this is the hot path): see Value.inputs
        a = node._a
        if a is None:
            children = node._b  # the tuple of operands
        else:
            b = node._b
            if a.requires_grad:
                if a._pass == number:
                    a._pending += 1
                else:
                    a._pass = number
                    a._pending = 1
                    a._upstream = empty
                    (inner if a.op else leaves).append(a)
            if b is None or not b.requires_grad:
                continue
            children = (b,)
        for child in children:
            if child.requires_grad:
                if child._pass == number:
                    child._pending += 1
                else:
                    child._pass = number
                    child._pending = 1
                    child._upstream = empty
                    (inner if child.op else leaves).append(child)
    return _Marked(inner, leaves)


def _order(root: Value) -> _Marked:  # noqa: C901, PLR0912, PLR0915 - the hot path, written out
    """The operations below ``root`` that need a gradient, each after its inputs (root last); and the leaves.

    An iterative depth-first post-order (no recursion), the same order as
    :func:`toposort`'s: a node is pushed,
    expanded (its inputs pushed above it), and appended to the order when it
    comes back up. ``_pending`` says how far a node has got (0 pushed, 1
    expanded, 2 done); an input met again while it still waits lower in the
    stack is pushed again, so that it is done before the node that needs it.
    Every node gets ``_upstream = 0.0``.
    """
    number = next(_pass_numbers)
    root._pass = number
    root._upstream = 0.0
    if not root.op:
        return _Marked([], [root])
    root._pending = 0
    order: list[Value] = []
    leaves: list[Value] = []
    stack = [root]
    while stack:
        node = stack.pop()
        state = node._pending
        if state:
            if state == 1:
                node._pending = 2
                order.append(node)
            continue
        node._pending = 1
        stack.append(node)
        # The inputs are pushed last to first, so the first input is done first: the order is
        # toposort's, and the gradients are summed in reference_backward's order, to the last bit.
        # Each input: a new one is stamped (and pushed if it is an operation); one still waiting
        # lower in the stack is pushed again, so that it is done before this node. Written out
        # for _a, _b and the tuple of operands (this is the hot path): see Value.inputs.
        a = node._a
        if a is None:
            for child in reversed(node._b):
                if child.requires_grad:
                    if child._pass != number:
                        child._pass = number
                        child._upstream = 0.0
                        if child.op:
                            child._pending = 0
                            stack.append(child)
                        else:
                            leaves.append(child)
                    elif child.op and not child._pending:
                        stack.append(child)
            continue
        b = node._b
        if b is not None and b.requires_grad:
            if b._pass != number:
                b._pass = number
                b._upstream = 0.0
                if b.op:
                    b._pending = 0
                    stack.append(b)
                else:
                    leaves.append(b)
            elif b.op and not b._pending:
                stack.append(b)
        if a.requires_grad:
            if a._pass != number:
                a._pass = number
                a._upstream = 0.0
                if a.op:
                    a._pending = 0
                    stack.append(a)
                else:
                    leaves.append(a)
            elif a.op and not a._pending:
                stack.append(a)
    return _Marked(order, leaves)


def _accumulation_overflow(node: Value) -> OperationOverflowError:
    """The error for a leaf whose ``.grad`` plus this pass's gradient overflows."""
    label = f" {node.label!r}" if node.label else ""
    msg = f"backward: the gradient accumulated in leaf{label} is too large for a float"
    return OperationOverflowError(msg)


def _forget(marked: _Marked) -> None:
    """Empty the ``_upstream`` slots of a pass (they must never keep a recorded Value alive)."""
    for nodes in marked:
        for node in nodes:
            node._upstream = None


def _run_checked(root: Value, seed: Any) -> None:
    """As the fast path, one rule lookup per node and every sum checked: raises the precise error.

    A node is released once every edge into it has delivered its share
    (Kahn's order), so each node's local derivatives are taken exactly once.
    Run only when the fast pass has failed, to say where and why.
    """
    root._upstream = seed
    ready = [root]
    rules = RULES
    while ready:
        node = ready.pop()
        if not node.op:
            continue  # a leaf: its gradient is complete
        g = node._upstream
        local = rules[node.op].local
        a = node._a
        try:
            if a is None:
                inputs = node._b
                derivatives = local(node._data, *[x._data for x in inputs])
            elif node._b is None:
                inputs = (a,)
                derivatives = local(node._data, a._data)
            else:
                b = node._b
                inputs = (a, b)
                derivatives = local(node._data, a._data, b._data)
        except (ArithmeticError, ValueError) as error:
            raise _not_differentiable(node, error) from None
        for child, d in zip(inputs, derivatives):
            if child.requires_grad:
                previous = child._upstream
                total = g * d if previous is None else previous + g * d  # the sum over edges into child
                if not _NEG_INF < total < _INF:  # an undefined partial, or a float overflow
                    raise _not_finite(node, d)
                child._upstream = total
                left = child._pending - 1
                child._pending = left
                if not left:
                    ready.append(child)


def _run_recording(root: Value, seed: Any) -> None:
    """As :func:`_run`, with local derivatives and products recorded as Values (create_graph)."""
    root._upstream = seed
    ready = [root]
    while ready:
        node = ready.pop()
        if not node.op:
            continue
        g = node._upstream
        for child, d in zip(node.inputs, _local_values(node)):
            if child.requires_grad:
                contribution = _times(g, d)
                previous = child._upstream
                total = contribution if previous is None else previous + contribution
                if not _NEG_INF < total < _INF:
                    raise _not_finite(node, d)
                child._upstream = total
                child._pending -= 1
                if child._pending == 0:
                    ready.append(child)


def _local_values(node: Value) -> tuple[Any, ...]:
    """The local derivatives of ``node`` as Values with graphs of their own (create_graph).

    Only those of inputs that need a gradient are computed (a table row's ``local`` takes
    ``needs``, one flag per input name); the others are 0.0.
    """
    rule = RULES[node.op]
    inputs = node.inputs
    try:
        if rule.definition is None:  # a custom rule: its own local, for every input
            return rule.local(node, *inputs)
        spans = rule.signature.spans(len(inputs))
        needs = [any(x.requires_grad for x in inputs[lo:hi]) for lo, hi in spans]
        return rule.local(node, *inputs, needs=needs)
    except (ArithmeticError, ValueError) as error:
        raise _not_differentiable(node, error) from None


def _not_finite(node: Value, d: Any) -> ArithmeticError:
    """The error for a gradient that stopped being a finite float at ``node`` (see :func:`_not_finite_at`)."""
    return _not_finite_at(node.op, [x._data for x in node.inputs], d)


def _not_finite_at(op: str, values: Sequence[float], d: Any) -> ArithmeticError:
    """The error for a gradient that stopped being a finite float at an operation ``op`` on ``values``.

    The local derivative ``d`` is undefined there (nan, or infinite at an
    input of exactly 0, where the table's singularities are: sqrt at 0, a**b
    at a = 0): NonDifferentiableError. It is infinite at nonzero inputs (1/a
    at a = 5e-324: a real number, too large for a float), or multiplying and
    summing finite numbers overflowed: OperationOverflowError. (The tape's
    replay raises the same errors.)
    """
    shown = ", ".join(repr(v) for v in values)
    if math.isnan(d) or (not _NEG_INF < d < _INF and 0.0 in values):
        return _not_differentiable_at(op, values, d)
    if not _NEG_INF < d < _INF:
        return OperationOverflowError(
            f"backward through {op} at inputs ({shown}): the local derivative is too large for a float"
        )
    return OperationOverflowError(
        f"backward through {op} at inputs ({shown}): the gradient is too large for a float"
    )


def _not_differentiable(node: Value, cause: object) -> NonDifferentiableError:
    """The error for a local derivative that is infinite or undefined where it is needed."""
    return _not_differentiable_at(node.op, [x.data for x in node.inputs], cause)


def _not_differentiable_at(op: str, values: Sequence[float], cause: object) -> NonDifferentiableError:
    """The error for a local derivative of ``op`` at ``values`` that is infinite or undefined."""
    shown = ", ".join(repr(x) for x in values)
    return NonDifferentiableError(f"{op}: the local derivative is not finite at inputs ({shown}): {cause}")


def _float_pass(root: Value, seed: float, *, accumulate: bool) -> _Marked:
    """The nodes of a float pass from ``root``, their ``_upstream`` filled; nothing written.

    The generated loop :func:`_run_fast` runs first, unchecked. If it fails, or
    a leaf's sum is not a finite float (an infinite or undefined local
    derivative, or an overflow, reaches every leaf below it: each node that
    needs a gradient has an input that does), the pass is run again by
    :func:`_run_checked`, which raises the error naming the operation. With
    ``accumulate``, a leaf whose ``.grad`` plus this pass overflows raises
    OperationOverflowError.
    """
    marked = _order(root)
    try:
        with _NoRecording():
            if marked.inner:
                _run_fast(marked.inner, seed)
            else:
                root._upstream = seed
    except (ArithmeticError, ValueError):
        return _checked_pass(root, seed, marked, accumulate=accumulate)
    except BaseException:
        _forget(marked)
        raise
    for node in marked.leaves:
        total = node._grad + node._upstream if accumulate else node._upstream
        if not _NEG_INF < total < _INF:
            if _NEG_INF < node._upstream < _INF:
                _forget(marked)
                raise _accumulation_overflow(node)
            return _checked_pass(root, seed, marked, accumulate=accumulate)
    return marked


def _checked_pass(root: Value, seed: float, failed: _Marked, *, accumulate: bool) -> _Marked:
    """After a failed fast pass: the checked pass, which raises the precise error."""
    _forget(failed)
    marked = _mark(root)
    try:
        with _NoRecording():
            _run_checked(root, seed)
    except BaseException:
        _forget(marked)
        raise
    for node in marked.leaves:
        if accumulate and not _NEG_INF < node._grad + node._upstream < _INF:
            _forget(marked)
            raise _accumulation_overflow(node)
    return marked


def gradients(root: Value, seed: Any = 1.0, *, create_graph: bool = False) -> dict[Value, Any]:
    """d root / d node * seed for every node reachable from ``root`` that needs a gradient.

    ``seed`` is the upstream gradient d L / d root. Nothing is written to any
    ``.grad``. With ``create_graph`` the results are Values whose own graphs
    can be differentiated again.
    """
    escaped(None, "grad()")  # a traced function reads values out of the graph
    with _pass_lock:
        if create_graph:
            marked = _mark(root)
            try:
                with _Recording():
                    _run_recording(root, seed)
                return {node: node._upstream for node in marked.all()}
            finally:
                _forget(marked)
        marked = _float_pass(root, seed, accumulate=False)
        return {node: node._upstream for node in marked.all()}  # floats may stay in the slots


def _times(g: Any, d: Any) -> Any:
    """g * d, skipping the multiplication by a constant 1 so recorded graphs stay small."""
    if type(d) is float and d == 1.0:
        return g
    return g * d


def _check_seed(gradient: object) -> float:
    value = _operand(gradient, "backward")
    if value is None:
        msg = f"backward: gradient must be a real number, not {type(gradient).__name__}"
        raise TypeError(msg)
    return value.data


def backward(root: Value, gradient: float = 1.0) -> None:
    """Reverse mode from ``root``; see :meth:`Value.backward`.

    Leaves (nodes without inputs) that require grad accumulate into ``.grad``;
    every other node reached is set to this pass's gradient. If the pass
    fails, no ``.grad`` has been written.
    """
    escaped(None, "backward()")  # a traced function reads values out of the graph
    if not isinstance(root, Value):
        msg = f"backward: expected a Value, not {type(root).__name__}"
        raise TypeError(msg)
    if not root.requires_grad:
        msg = "backward: this Value does not require grad (it depends on no Value that does)"
        raise ValueError(msg)
    seed = _check_seed(gradient)
    with _pass_lock:
        inner, leaves = _float_pass(root, seed, accumulate=True)
        # Floats only: _upstream may keep this pass's number (never a Value, never a graph).
        for node in inner:
            node._grad = node._upstream
        for node in leaves:
            node._grad += node._upstream


use_engine(backward)  # Value.backward() runs this pass


# --- the fast path's loop, generated from the rule table ------------------------------------------

# --- generated from the rule table by scripts/generate.py (tinygrad_bp/codegen.py): do not edit ---
def _run_fast(order: list[Value], seed: float) -> None:  # noqa: C901, PLR0912, PLR0915 - a branch per rule
    """Add d root/d node * seed into ``_upstream`` of every node of ``order`` and of their inputs.

    ``order`` holds the operations that need a gradient, each after its inputs, the root last
    (``_order``); walked backwards, every node has received all of its gradient before it
    passes shares on. Generated from the rule table: each branch is one row's derivatives,
    written inline. Operations are told apart by name, the most common first (the table's
    order); any other name, such as a custom operation's, takes the last branch, which asks
    the rule table. Nothing is checked here: the caller checks the leaves and, on a
    failure, reruns the checked pass for its error.
    """
    order[-1]._upstream = seed
    for node in reversed(order):
        op = node.op
        g = node._upstream
        if op == "+":
            a = node._a
            b = node._b
            if a.requires_grad:
                a._upstream += g
            if b.requires_grad:
                b._upstream += g
        elif op == "*":
            a = node._a
            b = node._b
            if a.requires_grad:
                a._upstream += g * (b._data)
            if b.requires_grad:
                b._upstream += g * (a._data)
        elif op == "linear":
            inputs = node._b if node._a is None else node.inputs
            n = (len(inputs) - 1) // 2
            ws = inputs[0:n]
            xs = inputs[n:n + n]
            bs = inputs[n + n]
            for w_, x_ in zip(ws, xs):
                if w_.requires_grad:
                    w_._upstream += g * (x_._data)
            for w_, x_ in zip(ws, xs):
                if x_.requires_grad:
                    x_._upstream += g * (w_._data)
            if bs.requires_grad:
                bs._upstream += g
        elif op == "relu":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (1.0 if a._data > 0.0 else 0.0)
        elif op == "tanh":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (1.0 - node._data * node._data)
        elif op == "sigmoid":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (node._data * (1.0 - node._data))
        elif op == "-":
            a = node._a
            b = node._b
            if a.requires_grad:
                a._upstream += g
            if b.requires_grad:
                b._upstream += -g
        elif op == "neg":
            a = node._a
            if a.requires_grad:
                a._upstream += -g
        elif op == "sum":
            inputs = node._b if node._a is None else node.inputs
            n = len(inputs)
            xs = inputs[0:n]
            for x_, in zip(xs):
                if x_.requires_grad:
                    x_._upstream += g
        elif op == "exp":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (node._data)
        elif op == "log":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (1.0 / a._data)
        elif op == "/":
            a = node._a
            b = node._b
            if a.requires_grad:
                a._upstream += g * (1.0 / b._data)
            if b.requires_grad:
                b._upstream += g * (-node._data / b._data)
        elif op == "**":
            a = node._a
            b = node._b
            if a.requires_grad:
                a._upstream += g * (b._data * a._data ** (b._data - 1.0) if a._data != 0.0 or b._data >= 1.0 else 0.0 if b._data == 0.0 else FLOAT.inf)  # noqa: E501 - one expression, as the table writes it
            if b.requires_grad:
                b._upstream += g * (node._data * FLOAT.log(a._data) if a._data > 0.0 else 0.0 if a._data == 0.0 else FLOAT.nan)  # noqa: E501 - one expression, as the table writes it
        elif op == "sqrt":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (0.5 / node._data)
        elif op == "abs":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (1.0 if a._data > 0.0 else -1.0 if a._data < 0.0 else 0.0)
        elif op == "sin":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (FLOAT.cos(a._data))
        elif op == "cos":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (-FLOAT.sin(a._data))
        elif op == "softplus":
            a = node._a
            if a.requires_grad:
                a._upstream += g * (FLOAT.sigmoid(a._data))
        elif op == "sse":
            inputs = node._b if node._a is None else node.inputs
            n = (len(inputs)) // 2
            ps = inputs[0:n]
            ts = inputs[n:n + n]
            for p_, t_ in zip(ps, ts):
                if p_.requires_grad:
                    p_._upstream += g * (2.0 * (p_._data - t_._data))
            for p_, t_ in zip(ps, ts):
                if t_.requires_grad:
                    t_._upstream += g * (-2.0 * (p_._data - t_._data))
        elif op == "half_sse":
            inputs = node._b if node._a is None else node.inputs
            n = (len(inputs)) // 2
            ps = inputs[0:n]
            ts = inputs[n:n + n]
            for p_, t_ in zip(ps, ts):
                if p_.requires_grad:
                    p_._upstream += g * (p_._data - t_._data)
            for p_, t_ in zip(ps, ts):
                if t_.requires_grad:
                    t_._upstream += g * (t_._data - p_._data)
        elif op == "binary_cross_entropy":
            p = node._a
            t = node._b
            if p.requires_grad:
                p._upstream += g * ((1.0 - t._data) * (1.0 / (1.0 - p._data) if 1.0 - p._data > FLOAT.exp(-100.0) else 0.0) - t._data * (1.0 / p._data if p._data > FLOAT.exp(-100.0) else 0.0))  # noqa: E501 - one expression, as the table writes it
            if t.requires_grad:
                t._upstream += g * ((FLOAT.log(1.0 - p._data) if 1.0 - p._data > FLOAT.exp(-100.0) else -100.0) - (FLOAT.log(p._data) if p._data > FLOAT.exp(-100.0) else -100.0))  # noqa: E501 - one expression, as the table writes it
        elif op == "cross_entropy":
            inputs = node._b if node._a is None else node.inputs
            n = (len(inputs)) // 2
            zs = inputs[0:n]
            ts = inputs[n:n + n]
            z = [x._data for x in zs]
            t = [x._data for x in ts]
            m = FLOAT.fmax(z)
            s = FLOAT.fsum([FLOAT.exp(z_ - m) if z_ - m > -746.0 else 0.0 for z_, t_ in zip(z, t)])
            t_total = FLOAT.fsum(t)
            for z_, t_ in zip(zs, ts):
                if z_.requires_grad:
                    z_._upstream += g * (t_total * FLOAT.exp(z_._data - m) / s - t_._data if z_._data - m > -746.0 else 0.0 - t_._data)  # noqa: E501 - one expression, as the table writes it
            for z_, t_ in zip(zs, ts):
                if t_.requires_grad:
                    t_._upstream += g * (FLOAT.log(s) + (m - z_._data))
        else:
            inputs = node.inputs
            derivatives = RULES[op].local(node._data, *[x._data for x in inputs])
            for x, d in zip(inputs, derivatives):
                if x.requires_grad:
                    x._upstream += g * (float(d))
# --- end of generated code ---


class _NoRecording:
    """Switch recording off for the duration of a float-only pass."""

    def __enter__(self) -> None:
        self._previous = _set_grad_enabled(enabled=False)

    def __exit__(self, *exc_info: object) -> None:
        _set_grad_enabled(enabled=self._previous)


class _Recording(_NoRecording):
    """Switch recording on for a create_graph pass."""

    def __enter__(self) -> None:
        self._previous = _set_grad_enabled(enabled=True)


def _as_list(x: object, what: str) -> list[Value]:
    """One Value or an iterable of Values as a list; TypeError naming ``what`` otherwise."""
    items = [x] if isinstance(x, Value) else list(x)  # type: ignore[call-overload]
    for i, item in enumerate(items):
        if not isinstance(item, Value):
            msg = f"grad: {what}[{i}] must be a Value, not {type(item).__name__}"
            raise TypeError(msg)
    return items


def _seeds(grad_outputs: object, outputs: list[Value], create_graph: bool) -> list[Any]:
    """The seed d L / d output for each output: 1.0 when ``grad_outputs`` is None."""
    if grad_outputs is None:
        return [1.0] * len(outputs)
    given = [grad_outputs] if not isinstance(grad_outputs, (list, tuple)) else list(grad_outputs)
    if len(given) != len(outputs):
        msg = f"grad: {len(given)} grad_outputs for {len(outputs)} outputs"
        raise ValueError(msg)
    return [g if create_graph and isinstance(g, Value) else _check_seed(g) for g in given]


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a + b


def grad(
    outputs: Value | Iterable[Value],
    inputs: Value | Iterable[Value],
    grad_outputs: float | Value | Sequence[float | Value] | None = None,
    *,
    create_graph: bool = False,
    allow_unused: bool = False,
    materialize_grads: bool = False,
) -> list[Any]:
    """d outputs / d input for each input, leaving every ``.grad`` untouched (``torch.autograd.grad``).

    ``grad_outputs`` scales each output's seed (1.0 by default); with several
    outputs the gradients add up: sum_k grad_outputs[k] * d outputs[k] / d input.
    Returns floats, or with ``create_graph=True`` Values that can be
    differentiated again (second and higher derivatives). An input that the
    outputs do not depend on raises :class:`~tinygrad_bp.errors.UnusedInputError`
    (a RuntimeError, as in torch, and a ValueError) unless ``allow_unused=True``,
    which gives None for it, or ``materialize_grads=True``, which gives 0.0.
    """
    roots = _as_list(outputs, "outputs")
    wanted = _as_list(inputs, "inputs")
    seeds = _seeds(grad_outputs, roots, create_graph)
    totals: dict[Value, Any] = {}
    for root, seed in zip(roots, seeds):
        if root.requires_grad:
            for node, g in gradients(root, seed, create_graph=create_graph).items():
                totals[node] = _add(totals.get(node), g)
    result: list[Any] = []
    for i, x in enumerate(wanted):
        if x in totals:
            g = totals[x]
            # A derivative that came out as a plain number is still returned as a Value.
            result.append(constant(g) if create_graph and not isinstance(g, Value) else g)
        elif materialize_grads:
            result.append(constant(0.0) if create_graph else 0.0)
        elif allow_unused:
            result.append(None)
        else:
            name = f" ({x.label!r})" if x.label else ""
            msg = (
                f"grad: inputs[{i}]{name} is not used to compute the outputs "
                "(or does not require grad); pass allow_unused=True to get None for it, "
                "or materialize_grads=True to get 0.0"
            )
            raise UnusedInputError(msg)
    return result
