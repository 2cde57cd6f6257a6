"""The value layer: a :class:`Value` is one scalar node of a computation graph.

Every operation on Values looks its rule up in :data:`tinygrad_bp.rules.RULES`,
computes its result from plain floats and records a new node whose ``inputs``
are the operands in argument order. A node refers only to its inputs, never to
its consumers or to a function of its own, so graphs hold no reference cycles
and a dropped graph is freed by reference counting alone.

Running the graph backwards is the engine's job (:mod:`tinygrad_bp.engine`);
``Value.backward`` only hands over to it.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, Union

from .errors import (
    DomainError,
    OperationOverflowError,
    UnknownOperationError,
    ZeroDivisionInOperationError,
)
from .rules import RULES, Rule

__all__ = [
    "NO_GRAD",
    "Value",
    "as_value",
    "constant",
    "cos",
    "exp",
    "is_grad_enabled",
    "linear",
    "log",
    "no_grad",
    "relu",
    "sigmoid",
    "sin",
    "softplus",
    "sqrt",
    "tanh",
]

Number = Union[int, float]
Operand = Union["Value", int, float]
_F = TypeVar("_F", bound=Callable[..., Any])

_INF = math.inf
_NEG_INF = -math.inf


class _GradMode(threading.local):
    """Per-thread switch saying whether operations record a graph."""

    enabled = True


_grad_mode = _GradMode()
# How many threads have recording switched off. While it is 0 (the usual case) an operation
# need not read the thread-local switch at all: a module global is much cheaper to read.
_threads_without_grad = 0
_switch_lock = threading.Lock()


def _set_grad_enabled(*, enabled: bool) -> bool:
    """Switch recording on or off for this thread; return the previous setting."""
    global _threads_without_grad  # noqa: PLW0603 - the one place that writes it
    previous = _grad_mode.enabled
    if previous != enabled:
        with _switch_lock:
            _threads_without_grad += -1 if enabled else 1
            _grad_mode.enabled = enabled
    return previous


def is_grad_enabled() -> bool:
    """True unless this thread is inside :func:`no_grad`."""
    return _grad_mode.enabled


class no_grad:  # noqa: N801 - named like torch.no_grad, its model
    """Context manager and decorator: Values made inside record no graph.

    A result made inside has ``inputs == ()``, ``op == ""`` and
    ``requires_grad`` False. The switch is per thread. As a decorator it
    works with or without parentheses (``@no_grad()`` or ``@no_grad``).
    """

    def __new__(cls, func: _F | None = None) -> Any:
        """A context manager; or, given a function (``@no_grad``), that function wrapped."""
        if func is None:
            return super().__new__(cls)
        if not callable(func):
            msg = f"no_grad: expected a function to decorate, not {type(func).__name__}"
            raise TypeError(msg)
        return cls()(func)  # @no_grad without parentheses

    def __init__(self, func: _F | None = None) -> None:
        """``func`` is taken by ``__new__`` (the decorator without parentheses)."""
        del func

    def __enter__(self) -> None:
        self._previous = _set_grad_enabled(enabled=False)

    def __exit__(self, *exc_info: object) -> None:
        _set_grad_enabled(enabled=self._previous)

    def __call__(self, func: _F) -> _F:
        """Use as a decorator: ``func`` runs inside ``no_grad()`` (a generator: each time it resumes)."""
        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def generator(*args: Any, **kwargs: Any) -> Any:
                inner = func(*args, **kwargs)
                sent = None
                while True:
                    with no_grad():
                        try:
                            item = inner.send(sent)
                        except StopIteration as stop:
                            return stop.value
                    sent = yield item

            return generator  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


@contextmanager
def enable_grad() -> Iterator[None]:
    """Switch recording back on inside a :func:`no_grad` block."""
    previous = _set_grad_enabled(enabled=True)
    try:
        yield
    finally:
        _set_grad_enabled(enabled=previous)


def _check_data(data: object, where: str) -> float:
    """``data`` as a finite Python float, or TypeError/ValueError naming ``where``."""
    if type(data) is float:
        value = data
    elif isinstance(data, numbers.Real) and not isinstance(data, Value):
        value = float(data)
    else:
        msg = f"{where}: data must be a real number (int, float or NumPy real), not {type(data).__name__}"
        raise TypeError(msg)
    if not -_INF < value < _INF:
        msg = f"{where}: data must be a finite number, got {value!r}"
        raise DomainError(msg)
    return value


class _NoGradYet(float):
    """The 0.0 that a leaf's ``.grad`` holds until a backward pass reaches it (torch's ``grad is None``).

    It is a float equal to 0.0 in every way; only an optimizer asks ``p.grad is
    NO_GRAD`` to leave alone a parameter that received no gradient since
    ``zero_grad()``, as PyTorch's optimizers do. The first gradient a pass adds
    replaces it with a plain float.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "0.0"


NO_GRAD = _NoGradYet(0.0)


class Value:
    """A scalar in a computation graph.

    ``Value(data, label="", requires_grad=True)`` makes a leaf. Operations on
    Values (``+ - * / **``, unary ``-``, ``abs``, and the methods below) make
    new nodes; ``backward()`` fills ``.grad`` with d(this)/d(node).
    """

    # The operands live in _a and _b (one or two operands) or in the tuple _rest (none, or
    # more than two): no tuple per node for the common case, so the cyclic garbage collector
    # has one object per node to visit instead of two. ``inputs`` puts them back together.
    # _pass, _pending and _upstream belong to the engine: the number of the last backward
    # pass that reached this node, how many edges of that pass have yet to deliver their
    # gradient, and the gradient gathered so far.
    __slots__ = (
        "_a",
        "_b",
        "_data",
        "_pass",
        "_pending",
        "_rest",
        "_upstream",
        "grad",
        "label",
        "op",
        "requires_grad",
    )

    # NumPy must hand mixed expressions back to Value's own operators.
    __array_ufunc__ = None

    _data: float
    grad: Any
    label: str
    _a: Value | None
    _b: Value | None
    _rest: tuple[Value, ...]
    _pass: int
    _pending: int
    _upstream: Any
    op: str
    requires_grad: bool

    def __init__(self, data: Number, label: str = "", requires_grad: bool = True) -> None:
        if not isinstance(label, str):
            msg = f"Value: label must be a str, not {type(label).__name__}"
            raise TypeError(msg)
        self._data = _check_data(data, "Value")
        self.grad = NO_GRAD
        self.label = label
        self.requires_grad = bool(requires_grad)
        self.op = ""
        self._a = self._b = None
        self._rest = ()
        self._pass = 0

    @property
    def data(self) -> float:
        """The value, a finite Python float; assignable (optimizers write it), checked as ``Value(data)``."""
        return self._data

    @data.setter
    def data(self, value: Number) -> None:
        finite = type(value) is float and _NEG_INF < value < _INF
        self._data = value if finite else _check_data(value, "data")

    @property
    def inputs(self) -> tuple[Value, ...]:
        """The operands in argument order; a repeated operand is repeated (``(a * a).inputs == (a, a)``)."""
        a = self._a
        if a is None:
            return self._rest
        b = self._b
        return (a,) if b is None else (a, b)

    # --- arithmetic: each operator names its rule; the operand order is kept ---

    def __add__(self, other: Operand) -> Value:
        return _apply2("+", self, other)  # self + other

    def __radd__(self, other: Operand) -> Value:
        return _apply2("+", other, self)  # other + self

    def __sub__(self, other: Operand) -> Value:
        return _apply2("-", self, other)  # self - other

    def __rsub__(self, other: Operand) -> Value:
        return _apply2("-", other, self)  # other - self

    def __mul__(self, other: Operand) -> Value:
        return _apply2("*", self, other)  # self * other

    def __rmul__(self, other: Operand) -> Value:
        return _apply2("*", other, self)  # other * self

    def __truediv__(self, other: Operand) -> Value:
        return _apply2("/", self, other)  # self / other

    def __rtruediv__(self, other: Operand) -> Value:
        return _apply2("/", other, self)  # other / self

    def __pow__(self, other: Operand) -> Value:
        return _apply2("**", self, other)  # self ** other

    def __rpow__(self, other: Operand) -> Value:
        return _apply2("**", other, self)  # other ** self

    def __neg__(self) -> Value:
        return _apply1("neg", self)  # -self

    def __pos__(self) -> Value:
        return self

    def __abs__(self) -> Value:
        return _apply1("abs", self)  # |self|

    # --- elementary functions -------------------------------------------------

    def exp(self) -> Value:
        """e ** self."""
        return _apply1("exp", self)

    def log(self) -> Value:
        """Natural logarithm; the input must be > 0."""
        return _apply1("log", self)

    def sqrt(self) -> Value:
        """Square root; the input must be >= 0."""
        return _apply1("sqrt", self)

    def tanh(self) -> Value:
        """Hyperbolic tangent."""
        return _apply1("tanh", self)

    def sigmoid(self) -> Value:
        """1 / (1 + e ** -self), never overflowing."""
        return _apply1("sigmoid", self)

    def relu(self) -> Value:
        """max(self, 0)."""
        return _apply1("relu", self)

    def sin(self) -> Value:
        """Sine."""
        return _apply1("sin", self)

    def cos(self) -> Value:
        """Cosine."""
        return _apply1("cos", self)

    def softplus(self) -> Value:
        """log(1 + e ** self), never overflowing."""
        return _apply1("softplus", self)

    def abs(self) -> Value:
        """|self|."""
        return _apply1("abs", self)

    # --- comparisons read .data; == and hash stay identity (Values are dict keys) -

    def __lt__(self, other: Operand) -> bool:
        return self._data < _data_of(other)

    def __le__(self, other: Operand) -> bool:
        return self._data <= _data_of(other)

    def __gt__(self, other: Operand) -> bool:
        return self._data > _data_of(other)

    def __ge__(self, other: Operand) -> bool:
        return self._data >= _data_of(other)

    # --- micrograd's names, for its programs and notebooks (tinygrad_bp.micrograd) ---

    @property
    def _prev(self) -> set[Value]:
        """micrograd's ``_prev``: the set of operands (a number exponent of ``**`` is not one)."""
        inputs = self.inputs
        if self.op == "**" and _is_number(inputs[1]):
            inputs = inputs[:1]
        return set(inputs)

    @property
    def _op(self) -> str:
        """micrograd's ``_op``: ``"+"``, ``"*"``, ``"**2"``, ``"ReLU"``, ...; ``""`` for a leaf."""
        if self.op == "**" and _is_number(self.inputs[1]):
            return f"**{_micrograd_number(self.inputs[1].data)}"
        return _MICROGRAD_OPS.get(self.op, self.op)

    def _backward(self) -> None:
        """micrograd's ``_backward()``: one chain-rule step, input.grad += self.grad * d self / d input.

        For following the lecture by hand; ``backward()`` runs the whole pass.
        """
        inputs = self.inputs
        if not inputs:
            return
        local = RULES[self.op].local(self._data, *[x._data for x in inputs])
        for x, d in zip(inputs, local):
            if x.requires_grad:
                x.grad = x.grad + self.grad * float(d)

    # --- conversions --------------------------------------------------------

    def __float__(self) -> float:
        return self.data

    def __bool__(self) -> bool:
        """False for 0.0, as ``bool(torch.tensor(0.0))`` and ``bool(0.0)``: ``if loss:`` reads the data."""
        return self.data != 0.0

    def item(self) -> float:
        """The value as a Python float (as ``torch.Tensor.item``)."""
        return self.data

    def __format__(self, spec: str) -> str:
        return format(self.data, spec) if spec else repr(self)

    def __repr__(self) -> str:
        parts = [f"data={self.data!r}", f"grad={self.grad!r}"]
        if self.label:
            parts.append(f"label={self.label!r}")
        if self.op:
            parts.append(f"op={self.op!r}")
        if not self.requires_grad:
            parts.append("requires_grad=False")
        return f"Value({', '.join(parts)})"

    def detach(self) -> Value:
        """A new leaf with the same data that records nothing and needs no gradient."""
        return Value(self.data, self.label, requires_grad=False)

    # --- the backward pass ----------------------------------------------------

    def backward(self, gradient: Number = 1.0) -> None:
        """Reverse mode from this node: add d(self)/d(leaf) * gradient into every leaf's ``.grad``.

        Leaves that require grad accumulate across calls; an intermediate
        node's ``.grad`` is set to this pass's value.
        """
        from .engine import backward

        backward(self, gradient)


def _data_of(x: object) -> float:
    """The float inside a Value or a number, for comparisons."""
    if isinstance(x, Value):
        return x.data
    if isinstance(x, numbers.Real):
        return float(x)
    return NotImplemented  # type: ignore[return-value]


def constant(data: Number, label: str = "") -> Value:
    """A leaf that needs no gradient: how a plain number enters the graph."""
    return Value(data, label, requires_grad=False)


def as_value(x: Operand) -> Value:
    """``x`` itself if it is a Value, else a constant made from the number."""
    if isinstance(x, Value):
        return x
    return Value(_check_data(x, "as_value"), requires_grad=False)


# micrograd's names of the operations that it names differently.
_MICROGRAD_OPS = {"relu": "ReLU"}


def _is_number(x: Value) -> bool:
    """A constant made from a plain number: no inputs, no label, no gradient."""
    return not x.requires_grad and not x.label and not x.op


def _micrograd_number(x: float) -> str:
    """A number as micrograd writes it in an op name: 2 for 2.0, 0.5 for 0.5."""
    return str(int(x)) if x.is_integer() else repr(x)


# --- recording nodes ------------------------------------------------------------

_new = object.__new__


def _node(data: float, op: str, inputs: tuple[Value, ...]) -> Value:
    """A new node of ``op`` over ``inputs`` (nothing recorded under no_grad)."""
    node = _new(Value)
    node._data = data
    node.grad = 0.0
    node.label = ""
    node._pass = 0
    node._a = node._b = None
    if not _threads_without_grad or _grad_mode.enabled:
        node.op = op
        node._rest = inputs
        node.requires_grad = any(x.requires_grad for x in inputs)
    else:
        node.op = ""
        node._rest = ()
        node.requires_grad = False
    return node


def _unknown(op: str) -> UnknownOperationError:
    """The error for an operation without a rule: raised while the graph is built."""
    return UnknownOperationError(f"no derivative rule is registered for the operation {op!r}")


def _rule(op: str) -> Rule:
    """The rule of ``op``; a missing one fails now, while the graph is built."""
    try:
        return RULES[op]
    except KeyError:
        raise _unknown(op) from None


def _operand(x: object, op: str) -> Value | None:
    """A Value for an operand, or None when it cannot be one (the caller returns NotImplemented)."""
    if isinstance(x, Value):
        return x
    if isinstance(x, numbers.Real):
        return Value(_check_data(x, op), requires_grad=False)
    return None


def _failed(op: str, values: Sequence[float], error: Exception) -> Exception:
    """The family exception for an arithmetic error raised while computing ``op``."""
    shown = ", ".join(repr(v) for v in values)
    if isinstance(error, DomainError):
        return error
    if isinstance(error, ZeroDivisionError):
        return ZeroDivisionInOperationError(f"{op}: division by zero (inputs {shown})")
    if isinstance(error, ValueError):
        return DomainError(f"{op}: inputs ({shown}) are outside the domain: {error}")
    return _overflow(op, values)


def _overflow(op: str, values: Sequence[float]) -> OperationOverflowError:
    """The error for a result that does not fit in a float."""
    shown = ", ".join(repr(v) for v in values)
    return OperationOverflowError(f"{op}: the result is too large for a float (inputs {shown})")


def _apply1(op: str, a: Value) -> Value:
    """Record ``op(a)``."""
    try:
        rule = RULES[op]
    except KeyError:
        raise _unknown(op) from None
    x = a._data
    try:
        out = rule.forward(x)
    except (ArithmeticError, ValueError) as error:
        raise _failed(op, (x,), error) from None
    if not _NEG_INF < out < _INF:
        raise _overflow(op, (x,))
    # The node, written out here rather than in a helper: this is the hot path.
    node = _new(Value)
    node._data = out
    node.grad = 0.0
    node.label = ""
    node._pass = 0
    if not _threads_without_grad or _grad_mode.enabled:
        node.op = op
        node._a = a
        node._b = None
        node.requires_grad = a.requires_grad
    else:
        node.op = ""
        node._a = node._b = None
        node._rest = ()
        node.requires_grad = False
    return node


def _apply2(op: str, a: object, b: object) -> Value:
    """Record ``op(a, b)``; a plain number operand becomes a constant Value."""
    try:
        rule = RULES[op]
    except KeyError:
        raise _unknown(op) from None
    if type(a) is not Value:
        a = _operand(a, op)
        if a is None:
            return NotImplemented  # type: ignore[return-value]
    if type(b) is not Value:
        b = _operand(b, op)
        if b is None:
            return NotImplemented  # type: ignore[return-value]
    x = a._data  # type: ignore[union-attr]
    y = b._data  # type: ignore[union-attr]
    try:
        out = rule.forward(x, y)
    except (ArithmeticError, ValueError) as error:
        raise _failed(op, (x, y), error) from None
    if not _NEG_INF < out < _INF:
        raise _overflow(op, (x, y))
    node = _new(Value)
    node._data = out
    node.grad = 0.0
    node.label = ""
    node._pass = 0
    if not _threads_without_grad or _grad_mode.enabled:
        node.op = op
        node._a = a
        node._b = b
        node.requires_grad = a.requires_grad or b.requires_grad  # type: ignore[union-attr]
    else:
        node.op = ""
        node._a = node._b = None
        node._rest = ()
        node.requires_grad = False
    return node


def apply(op: str, *operands: Operand) -> Value:
    """Record ``op`` over any number of operands (numbers become constants).

    The general form behind every operation; custom operations use it.
    """
    rule = _rule(op)
    inputs = tuple([x if type(x) is Value else as_value(x) for x in operands])
    if rule.arity is not None and len(inputs) != rule.arity:
        msg = f"{op}: takes {rule.arity} input(s), got {len(inputs)}"
        raise TypeError(msg)
    values = [x._data for x in inputs]
    try:
        out = rule.forward(*values)
    except (ArithmeticError, ValueError) as error:
        raise _failed(op, values, error) from None
    if not isinstance(out, (float, int)):
        msg = f"{op}: the forward function returned {type(out).__name__}, not a real number"
        raise TypeError(msg)
    out = float(out)
    if math.isnan(out):  # only a user's forward function can return NaN
        shown = ", ".join(repr(v) for v in values)
        msg = f"{op}: the forward function returned NaN at inputs ({shown})"
        raise DomainError(msg)
    if not _NEG_INF < out < _INF:
        raise _overflow(op, values)
    return _node(out, op, inputs)


# --- functions: the same operations for Values and numbers -------------------------


def _unary(op: str, math_fn: Callable[[float], float]) -> Callable[[Any], Any]:
    """A function that records ``op`` on a Value and computes ``math_fn`` on a number."""

    def function(x: Any) -> Any:
        if isinstance(x, Value):
            return _apply1(op, x)
        return math_fn(float(x))

    function.__name__ = op
    function.__doc__ = f"{op}(x): records {op!r} for a Value, else computes it for a number."
    return function


exp = _unary("exp", RULES["exp"].forward)
log = _unary("log", RULES["log"].forward)
sqrt = _unary("sqrt", RULES["sqrt"].forward)
tanh = _unary("tanh", RULES["tanh"].forward)
sigmoid = _unary("sigmoid", RULES["sigmoid"].forward)
relu = _unary("relu", RULES["relu"].forward)
sin = _unary("sin", RULES["sin"].forward)
cos = _unary("cos", RULES["cos"].forward)
softplus = _unary("softplus", RULES["softplus"].forward)


def sum(values: Iterable[Operand]) -> Value:  # noqa: A001 - torch.sum's name, on purpose
    """x_1 + ... + x_n as ONE node with n inputs (not a chain of n - 1 additions)."""
    items = tuple(values)
    if not items:
        return constant(0.0)
    return apply("sum", *items)


def linear(weights: Sequence[Operand], inputs: Sequence[Operand], bias: Operand = 0.0) -> Value:
    """w . x + b as ONE node: a neuron's pre-activation.

    Inputs are recorded as (w_1..w_n, x_1..x_n, b); d/dw_i = x_i, d/dx_i = w_i, d/db = 1.
    """
    if len(weights) != len(inputs):
        msg = f"linear: {len(weights)} weights but {len(inputs)} inputs"
        raise ValueError(msg)
    return apply("linear", *weights, *inputs, bias)
