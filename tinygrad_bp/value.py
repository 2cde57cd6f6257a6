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
import sys
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
from .expressions import FLOAT
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
        escaped(None, "a no_grad block")  # values made inside become constants of a trace
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


# --- the engine's pass: the value layer records, the engine runs backward ----------------------


class _EngineHook:
    """Where ``Value.backward`` finds the backward pass: set once by tinygrad_bp.engine at import."""

    @staticmethod
    def backward(root: Value, gradient: Number) -> None:  # noqa: ARG004 - the pass's signature
        msg = "Value.backward: import tinygrad_bp (its engine runs the backward pass)"
        raise RuntimeError(msg)


_engine: Any = _EngineHook()


def use_engine(backward: Callable[[Value, Number], None]) -> None:
    """Hand the value layer the backward pass (the engine calls this once, when it is imported).

    Data flows one way: the engine reads the graphs this layer records, and
    this layer never imports the engine.
    """
    _engine.backward = backward


# --- the trace hook: how tinygrad_bp.tape learns what a traced function does with values --------


class _TraceHook(threading.local):
    """The trace observer of this thread (while :func:`observed` runs), or None."""

    observer: Any = None


_trace_hook = _TraceHook()
# How many threads have an observer. While it is 0 (the usual case) nothing reads the
# thread-local hook: checking a module global is all a Value pays for the hook.
_threads_observed = 0


@contextmanager
def observed(observer: Any) -> Iterator[None]:
    """Report to ``observer`` what this thread does with Values inside the block.

    The explicit hook by which :func:`tinygrad_bp.tape.trace` watches a traced
    function (the value layer calls it; nothing is swapped or patched):

    * ``observer.compare(subject, op, other, result)`` for each comparison
      ``subject < other`` (``op`` is ``"<"``, ``"<="``, ``">"`` or ``">="``);
    * ``observer.escape(node, how, frame)`` whenever a number leaves the
      graph: ``.data`` or ``.grad`` read, ``float()``, ``item()``, ``bool()``,
      ``format()`` with a spec, ``detach()``, a ``no_grad`` block (``node`` is
      None), and a backward pass or ``grad()`` (reported by the engine).
      ``frame`` is the frame of the code that did it.

    Other threads are not observed.
    """
    global _threads_observed  # noqa: PLW0603 - the one place that writes it
    previous = _trace_hook.observer
    with _switch_lock:
        _threads_observed += 1
    _trace_hook.observer = observer
    try:
        yield
    finally:
        _trace_hook.observer = previous
        with _switch_lock:
            _threads_observed -= 1


def escaped(node: Value | None, how: str, depth: int = 1) -> None:
    """Tell this thread's observer, if any, that a number left the graph (``how``), ``depth`` frames up."""
    if _threads_observed:
        observer = _trace_hook.observer
        if observer is not None:
            observer.escape(node, how, sys._getframe(depth + 1))


def _finite_float(x: object) -> float | None:
    """``x`` as a finite float; None for a bool, a non-number, inf, nan or an int too large for a float.

    How settings, state dicts and files check a number (they name what is wrong themselves).
    """
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    try:
        value = float(x)
    except OverflowError:  # an int such as 10**400
        return None
    return value if _NEG_INF < value < _INF else None


def _check_data(data: object, where: str) -> float:
    """``data`` as a finite Python float, or TypeError/ValueError naming ``where``."""
    if type(data) is float:
        value = data
    elif isinstance(data, numbers.Real) and not isinstance(data, Value):
        try:
            value = float(data)
        except OverflowError:  # an int such as 10**400
            if isinstance(data, int):  # its size from its bits: str() of a huge int is refused by Python
                shown = f"an int of about {int(abs(data).bit_length() * 0.30103) + 1} digits"
            else:
                shown = f"{type(data).__name__} {str(data)[:40]}"
            msg = f"{where}: {shown} is too large for a float"
            raise OperationOverflowError(msg) from None
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

    # The operands live in _a and _b (one or two operands; _b is None for one), or, when _a is
    # None, _b holds the tuple of them (() for a leaf, or more than two operands): no tuple per
    # node for the common case, so the cyclic garbage collector has one object per node to
    # visit instead of two, and one slot fewer. ``inputs`` puts them back together.
    # _pass, _pending and _upstream belong to the engine: the number of the last backward
    # pass that reached this node, how many edges of that pass have yet to deliver their
    # gradient, and the gradient gathered so far.
    __slots__ = (
        "_a",
        "_b",
        "_data",
        "_grad",
        "_pass",
        "_pending",
        "_upstream",
        "label",
        "op",
        "requires_grad",
    )

    # NumPy must hand mixed expressions back to Value's own operators.
    __array_ufunc__ = None

    _data: float
    _grad: Any
    label: str
    # Typed Any on purpose: the engine's hot loops read them without narrowing; ``inputs`` is the
    # typed view (_a: the first operand or None; _b: the second, None, or the tuple of all).
    _a: Any
    _b: Any
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
        self._grad = NO_GRAD
        self.label = label
        self.requires_grad = bool(requires_grad)
        self.op = ""
        self._a = None
        self._b = ()
        self._pass = 0

    @property
    def data(self) -> float:
        """The value, a finite Python float; assignable (optimizers write it), checked as ``Value(data)``."""
        if _threads_observed and _trace_hook.observer is not None:
            _trace_hook.observer.escape(self, ".data", sys._getframe(1))
        return self._data

    @data.setter
    def data(self, value: Number) -> None:
        finite = type(value) is float and _NEG_INF < value < _INF
        self._data = value if finite else _check_data(value, "data")

    @property
    def grad(self) -> Any:
        """d(root)/d(this node) from the last backward pass (leaves: summed over passes); assignable."""
        if _threads_observed and _trace_hook.observer is not None:
            _trace_hook.observer.escape(None, ".grad", sys._getframe(1))
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        self._grad = value

    @property
    def inputs(self) -> tuple[Value, ...]:
        """The operands in argument order; a repeated operand is repeated (``(a * a).inputs == (a, a)``)."""
        a = self._a
        if a is None:
            return self._b  # type: ignore[no-any-return]  # _b holds the tuple of operands here
        b = self._b
        return (a,) if b is None else (a, b)

    # --- the operators: each records its rule from the table (tinygrad_bp.rules), operands in order ---
    # Generated from the table's rows by tinygrad_bp/codegen.py: read one and you know them all.

    # --- generated from the rule table by scripts/generate.py (tinygrad_bp/codegen.py): do not edit ---
    def __add__(self, other: Operand) -> Value:
        """Record the rule "+" with a = self and b = other.

        out = a + b
        d out/da = 1.0
        d out/db = 1.0
        """
        if type(other) is not Value:
            converted = _operand(other, "+")
            if converted is None:
                return NotImplemented
            other = converted
        a = self._data
        b = other._data
        out = a + b
        if not _NEG_INF < out < _INF:
            raise _overflow("+", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "+"
            node._a = self
            node._b = other
            node.requires_grad = self.requires_grad or other.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __radd__(self, other: Operand) -> Value:
        """Record the rule "+" with a = other and b = self.

        out = a + b
        d out/da = 1.0
        d out/db = 1.0
        """
        if type(other) is not Value:
            converted = _operand(other, "+")
            if converted is None:
                return NotImplemented
            other = converted
        a = other._data
        b = self._data
        out = a + b
        if not _NEG_INF < out < _INF:
            raise _overflow("+", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "+"
            node._a = other
            node._b = self
            node.requires_grad = other.requires_grad or self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __mul__(self, other: Operand) -> Value:
        """Record the rule "*" with a = self and b = other.

        out = a * b
        d out/da = b
        d out/db = a
        """
        if type(other) is not Value:
            converted = _operand(other, "*")
            if converted is None:
                return NotImplemented
            other = converted
        a = self._data
        b = other._data
        out = a * b
        if not _NEG_INF < out < _INF:
            raise _overflow("*", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "*"
            node._a = self
            node._b = other
            node.requires_grad = self.requires_grad or other.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __rmul__(self, other: Operand) -> Value:
        """Record the rule "*" with a = other and b = self.

        out = a * b
        d out/da = b
        d out/db = a
        """
        if type(other) is not Value:
            converted = _operand(other, "*")
            if converted is None:
                return NotImplemented
            other = converted
        a = other._data
        b = self._data
        out = a * b
        if not _NEG_INF < out < _INF:
            raise _overflow("*", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "*"
            node._a = other
            node._b = self
            node.requires_grad = other.requires_grad or self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def relu(self) -> Value:
        """Record the rule "relu" with a = self.

        out = a if a > 0.0 else 0.0
        d out/da = 1.0 if a > 0.0 else 0.0
        """
        a = self._data
        out = a if a > 0.0 else 0.0
        if not _NEG_INF < out < _INF:
            raise _overflow("relu", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "relu"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def tanh(self) -> Value:
        """Record the rule "tanh" with a = self.

        out = tanh(a)
        d out/da = 1.0 - out * out
        """
        a = self._data
        try:
            out = FLOAT.tanh(a)
        except (ArithmeticError, ValueError) as error:
            raise _failed("tanh", (a,), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("tanh", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "tanh"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def sigmoid(self) -> Value:
        """Record the rule "sigmoid" with a = self.

        out = sigmoid(a)
        d out/da = out * (1.0 - out)
        """
        a = self._data
        try:
            out = FLOAT.sigmoid(a)
        except (ArithmeticError, ValueError) as error:
            raise _failed("sigmoid", (a,), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("sigmoid", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "sigmoid"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __sub__(self, other: Operand) -> Value:
        """Record the rule "-" with a = self and b = other.

        out = a - b
        d out/da = 1.0
        d out/db = -1.0
        """
        if type(other) is not Value:
            converted = _operand(other, "-")
            if converted is None:
                return NotImplemented
            other = converted
        a = self._data
        b = other._data
        out = a - b
        if not _NEG_INF < out < _INF:
            raise _overflow("-", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "-"
            node._a = self
            node._b = other
            node.requires_grad = self.requires_grad or other.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __rsub__(self, other: Operand) -> Value:
        """Record the rule "-" with a = other and b = self.

        out = a - b
        d out/da = 1.0
        d out/db = -1.0
        """
        if type(other) is not Value:
            converted = _operand(other, "-")
            if converted is None:
                return NotImplemented
            other = converted
        a = other._data
        b = self._data
        out = a - b
        if not _NEG_INF < out < _INF:
            raise _overflow("-", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "-"
            node._a = other
            node._b = self
            node.requires_grad = other.requires_grad or self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __neg__(self) -> Value:
        """Record the rule "neg" with a = self.

        out = -a
        d out/da = -1.0
        """
        a = self._data
        out = -a
        if not _NEG_INF < out < _INF:
            raise _overflow("neg", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "neg"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def exp(self) -> Value:
        """Record the rule "exp" with a = self.

        out = exp(a)
        d out/da = out
        """
        a = self._data
        try:
            out = FLOAT.exp(a)
        except (ArithmeticError, ValueError) as error:
            raise _failed("exp", (a,), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("exp", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "exp"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def log(self) -> Value:
        """Record the rule "log" with a = self.

        out = log(a)
        d out/da = 1.0 / a
        """
        a = self._data
        if not (a > 0.0):
            raise DomainError(f"log: the input {a!r} is outside the domain x > 0")
        try:
            out = FLOAT.log(a)
        except (ArithmeticError, ValueError) as error:
            raise _failed("log", (a,), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("log", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "log"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __truediv__(self, other: Operand) -> Value:
        """Record the rule "/" with a = self and b = other.

        out = a / b
        d out/da = 1.0 / b
        d out/db = -out / b
        """
        if type(other) is not Value:
            converted = _operand(other, "/")
            if converted is None:
                return NotImplemented
            other = converted
        a = self._data
        b = other._data
        try:
            out = a / b
        except (ArithmeticError, ValueError) as error:
            raise _failed("/", (a, b), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("/", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "/"
            node._a = self
            node._b = other
            node.requires_grad = self.requires_grad or other.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __rtruediv__(self, other: Operand) -> Value:
        """Record the rule "/" with a = other and b = self.

        out = a / b
        d out/da = 1.0 / b
        d out/db = -out / b
        """
        if type(other) is not Value:
            converted = _operand(other, "/")
            if converted is None:
                return NotImplemented
            other = converted
        a = other._data
        b = self._data
        try:
            out = a / b
        except (ArithmeticError, ValueError) as error:
            raise _failed("/", (a, b), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("/", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "/"
            node._a = other
            node._b = self
            node.requires_grad = other.requires_grad or self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __pow__(self, other: Operand) -> Value:
        """Record the rule "**" with a = self and b = other.

        out = a ** b
        d out/da = b * a ** (b - 1.0) if a != 0.0 or b >= 1.0 else (0.0 if b == 0.0 else inf)
        d out/db = out * log(a) if a > 0.0 else (0.0 if a == 0.0 else nan)
        """
        if type(other) is not Value:
            converted = _operand(other, "**")
            if converted is None:
                return NotImplemented
            other = converted
        a = self._data
        b = other._data
        if not (a != 0.0 or b >= 0.0):
            raise DomainError(f"**: 0.0 raised to the negative power {b!r} is undefined")
        if not (a >= 0.0 or FLOAT.is_integer(b)):
            raise DomainError(f"**: the negative base {a!r} raised to the non-integer power {b!r} is not a real number")  # noqa: E501 - one expression, as the table writes it
        try:
            out = a ** b
        except (ArithmeticError, ValueError) as error:
            raise _failed("**", (a, b), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("**", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "**"
            node._a = self
            node._b = other
            node.requires_grad = self.requires_grad or other.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __rpow__(self, other: Operand) -> Value:
        """Record the rule "**" with a = other and b = self.

        out = a ** b
        d out/da = b * a ** (b - 1.0) if a != 0.0 or b >= 1.0 else (0.0 if b == 0.0 else inf)
        d out/db = out * log(a) if a > 0.0 else (0.0 if a == 0.0 else nan)
        """
        if type(other) is not Value:
            converted = _operand(other, "**")
            if converted is None:
                return NotImplemented
            other = converted
        a = other._data
        b = self._data
        if not (a != 0.0 or b >= 0.0):
            raise DomainError(f"**: 0.0 raised to the negative power {b!r} is undefined")
        if not (a >= 0.0 or FLOAT.is_integer(b)):
            raise DomainError(f"**: the negative base {a!r} raised to the non-integer power {b!r} is not a real number")  # noqa: E501 - one expression, as the table writes it
        try:
            out = a ** b
        except (ArithmeticError, ValueError) as error:
            raise _failed("**", (a, b), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("**", (a, b))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "**"
            node._a = other
            node._b = self
            node.requires_grad = other.requires_grad or self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def sqrt(self) -> Value:
        """Record the rule "sqrt" with a = self.

        out = sqrt(a)
        d out/da = 0.5 / out
        """
        a = self._data
        if not (a >= 0.0):
            raise DomainError(f"sqrt: the input {a!r} is outside the domain x >= 0")
        try:
            out = FLOAT.sqrt(a)
        except (ArithmeticError, ValueError) as error:
            raise _failed("sqrt", (a,), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("sqrt", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "sqrt"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def __abs__(self) -> Value:
        """Record the rule "abs" with a = self.

        out = abs(a)
        d out/da = 1.0 if a > 0.0 else (-1.0 if a < 0.0 else 0.0)
        """
        a = self._data
        try:
            out = FLOAT.abs(a)
        except (ArithmeticError, ValueError) as error:
            raise _failed("abs", (a,), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("abs", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "abs"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node
    abs = __abs__

    def sin(self) -> Value:
        """Record the rule "sin" with a = self.

        out = sin(a)
        d out/da = cos(a)
        """
        a = self._data
        try:
            out = FLOAT.sin(a)
        except (ArithmeticError, ValueError) as error:
            raise _failed("sin", (a,), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("sin", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "sin"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def cos(self) -> Value:
        """Record the rule "cos" with a = self.

        out = cos(a)
        d out/da = -sin(a)
        """
        a = self._data
        try:
            out = FLOAT.cos(a)
        except (ArithmeticError, ValueError) as error:
            raise _failed("cos", (a,), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("cos", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "cos"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node

    def softplus(self) -> Value:
        """Record the rule "softplus" with a = self.

        out = softplus(a)
        d out/da = sigmoid(a)
        """
        a = self._data
        try:
            out = FLOAT.softplus(a)
        except (ArithmeticError, ValueError) as error:
            raise _failed("softplus", (a,), error) from None
        if not _NEG_INF < out < _INF:
            raise _overflow("softplus", (a,))
        node = _new(Value)
        node._data = out
        node._grad = 0.0
        node.label = ""
        node._pass = 0
        if not _threads_without_grad or _grad_mode.enabled:
            node.op = "softplus"
            node._a = self
            node._b = None
            node.requires_grad = self.requires_grad
        else:
            node.op = ""
            node._a = None
            node._b = ()
            node.requires_grad = False
        return node
    # --- end of generated code ---

    def __pos__(self) -> Value:
        return self

    # --- comparisons read .data; == and hash stay identity (Values are dict keys) -

    def __lt__(self, other: Operand) -> bool:
        y = _data_of(other)
        return NotImplemented if y is NotImplemented else _compare(self, "<", other, self._data < y)

    def __le__(self, other: Operand) -> bool:
        y = _data_of(other)
        return NotImplemented if y is NotImplemented else _compare(self, "<=", other, self._data <= y)

    def __gt__(self, other: Operand) -> bool:
        y = _data_of(other)
        return NotImplemented if y is NotImplemented else _compare(self, ">", other, self._data > y)

    def __ge__(self, other: Operand) -> bool:
        y = _data_of(other)
        return NotImplemented if y is NotImplemented else _compare(self, ">=", other, self._data >= y)

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
        rule = RULES.get(self.op)
        if rule is None:
            msg = f"_backward: no derivative rule for the operation {self.op!r}, and no _backward of its own"
            raise UnknownOperationError(msg)
        local = rule.local(self._data, *[x._data for x in inputs])
        for x, d in zip(inputs, local):
            if x.requires_grad:
                x.grad = x.grad + self.grad * float(d)

    # --- conversions --------------------------------------------------------

    def __float__(self) -> float:
        escaped(self, "__float__()")
        return self._data

    def __bool__(self) -> bool:
        """False for 0.0, as ``bool(torch.tensor(0.0))`` and ``bool(0.0)``: ``if loss:`` reads the data."""
        escaped(self, "__bool__()")
        return self._data != 0.0

    def item(self) -> float:
        """The value as a Python float (as ``torch.Tensor.item``)."""
        escaped(self, "item()")
        return self._data

    def __format__(self, spec: str) -> str:
        if not spec:
            return repr(self)
        escaped(self, "__format__()")
        return format(self._data, spec)

    def __repr__(self) -> str:
        parts = [f"data={self._data!r}", f"grad={self._grad!r}"]
        if self.label:
            parts.append(f"label={self.label!r}")
        if self.op:
            parts.append(f"op={self.op!r}")
        if not self.requires_grad:
            parts.append("requires_grad=False")
        return f"Value({', '.join(parts)})"

    def detach(self) -> Value:
        """A new leaf with the same data that records nothing and needs no gradient."""
        escaped(self, "detach()")
        return Value(self._data, self.label, requires_grad=False)

    # --- the backward pass ----------------------------------------------------

    def backward(self, gradient: Number = 1.0) -> None:
        """Reverse mode from this node: add d(self)/d(leaf) * gradient into every leaf's ``.grad``.

        Leaves that require grad accumulate across calls; an intermediate
        node's ``.grad`` is set to this pass's value. The pass is the engine's
        (:func:`tinygrad_bp.engine.backward`, which the engine hands to the
        value layer when it is imported: the value layer never imports it).
        """
        _engine.backward(self, gradient)


def _data_of(x: object) -> Any:
    """What a Value compares with: the float of a Value, an int as it is, another real as a float.

    Python compares a float with any int exactly (even 10**400). Anything else
    gives NotImplemented, so ``Value(1.0) < "x"`` raises Python's own TypeError.
    """
    if isinstance(x, Value):
        return x._data
    if isinstance(x, int):
        return x
    if isinstance(x, numbers.Real):
        return float(x)
    return NotImplemented


def _compare(subject: Value, op: str, other: object, result: bool) -> bool:
    """``result`` of ``subject <op> other``, reported to this thread's trace observer if any."""
    if _threads_observed:
        observer = _trace_hook.observer
        if observer is not None:
            observer.compare(subject, op, other, bool(result))
    return result


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
    node._grad = 0.0  # the slot behind .grad
    node.label = ""
    node._pass = 0
    if not _threads_without_grad or _grad_mode.enabled:
        attach(node, op, inputs)
    else:
        attach(node, "", ())
    return node


def attach(node: Value, op: str, inputs: tuple[Value, ...]) -> None:
    """Make ``node`` a node of ``op`` over ``inputs`` (a leaf for ``()``): the one layout of operands.

    One or two operands live in ``_a`` and ``_b``; none or more than two in
    ``_b`` as a tuple, with ``_a`` None. The engine's loops rely on it.
    """
    node.op = op
    node.requires_grad = False
    for x in inputs:
        if x.requires_grad:
            node.requires_grad = True
            break
    if 1 <= len(inputs) <= 2:
        node._a = inputs[0]
        node._b = inputs[1] if len(inputs) == 2 else None
    else:
        node._a = None
        node._b = inputs


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
    if isinstance(error, ValueError) and "fsum" in str(error):  # a product or term overflowed to inf
        return OperationOverflowError(
            f"{op}: an intermediate product or sum is too large for a float (inputs {shown})"
        )
    if isinstance(error, ValueError):
        return DomainError(f"{op}: inputs ({shown}) are outside the domain: {error}")
    return _overflow(op, values)


def _overflow(op: str, values: Sequence[float]) -> OperationOverflowError:
    """The error for a result that does not fit in a float."""
    shown = ", ".join(repr(v) for v in values)
    return OperationOverflowError(f"{op}: the result is too large for a float (inputs {shown})")


def apply(op: str, *operands: Operand) -> Value:
    """Record ``op`` over any number of operands (numbers become constants).

    The general form behind every operation; custom operations use it.
    """
    rule = _rule(op)
    inputs = tuple([x if type(x) is Value else as_value(x) for x in operands])
    if rule.arity is not None and len(inputs) != rule.arity:
        msg = f"{op}: takes {rule.arity} input(s), got {len(inputs)}"
        raise TypeError(msg)
    if rule.arity is None and rule.signature.group_length(len(inputs)) is None:
        msg = f"{op}: {len(inputs)} operands do not fit its inputs {rule.signature.describe()}"
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
            return getattr(x, op)()
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
    items = tuple([x if type(x) is Value else as_value(x) for x in values])
    if not items:
        return constant(0.0)
    return _record_sum(items)


def linear(weights: Sequence[Operand], inputs: Sequence[Operand], bias: Operand = 0.0) -> Value:
    """w . x + b as ONE node: a neuron's pre-activation.

    Inputs are recorded as (w_1..w_n, x_1..x_n, b); d/dw_i = x_i, d/dx_i = w_i, d/db = 1.
    """
    if len(weights) != len(inputs):
        msg = f"linear: {len(weights)} weights but {len(inputs)} inputs"
        raise ValueError(msg)
    operands = (*weights, *inputs, bias)
    try:
        return _record_linear(operands)  # type: ignore[arg-type]  # a number fails on ._data: below
    except AttributeError:  # a number among the operands (it has no ._data): make it a constant
        return _record_linear(tuple([x if type(x) is Value else as_value(x) for x in operands]))


# --- the recorders of the operations over groups --------------------------------------------------

# --- generated from the rule table by scripts/generate.py (tinygrad_bp/codegen.py): do not edit ---
def _record_linear(inputs: tuple[Value, ...]) -> Value:
    """The rule "linear" over the operands (*w, *x, b): one node.

    out = fsum(w * x) + b
    """
    xs = [x._data for x in inputs]
    n = (len(xs) - 1) // 2
    w = xs[0:n]
    x = xs[n:n + n]
    b = xs[n + n]
    try:
        out = FLOAT.fsum(map(FLOAT.mul, w, x)) + b
    except (ArithmeticError, ValueError) as error:
        raise _failed("linear", xs, error) from None
    if not _NEG_INF < out < _INF:
        raise _overflow("linear", xs)
    return _node(out, "linear", inputs)


def _record_sum(inputs: tuple[Value, ...]) -> Value:
    """The rule "sum" over the operands (*x): one node.

    out = fsum(x)
    """
    xs = [x._data for x in inputs]
    n = len(xs)
    x = xs[0:n]
    try:
        out = FLOAT.fsum(x)
    except (ArithmeticError, ValueError) as error:
        raise _failed("sum", xs, error) from None
    if not _NEG_INF < out < _INF:
        raise _overflow("sum", xs)
    return _node(out, "sum", inputs)


def _record_sse(inputs: tuple[Value, ...]) -> Value:
    """The rule "sse" over the operands (*p, *t): one node.

    out = fsum((p - t) * (p - t))
    """
    xs = [x._data for x in inputs]
    n = (len(xs)) // 2
    p = xs[0:n]
    t = xs[n:n + n]
    try:
        out = FLOAT.fsum([(p_ - t_) * (p_ - t_) for p_, t_ in zip(p, t)])
    except (ArithmeticError, ValueError) as error:
        raise _failed("sse", xs, error) from None
    if not _NEG_INF < out < _INF:
        raise _overflow("sse", xs)
    return _node(out, "sse", inputs)


def _record_half_sse(inputs: tuple[Value, ...]) -> Value:
    """The rule "half_sse" over the operands (*p, *t): one node.

    out = 0.5 * fsum((p - t) * (p - t))
    """
    xs = [x._data for x in inputs]
    n = (len(xs)) // 2
    p = xs[0:n]
    t = xs[n:n + n]
    try:
        out = 0.5 * FLOAT.fsum([(p_ - t_) * (p_ - t_) for p_, t_ in zip(p, t)])
    except (ArithmeticError, ValueError) as error:
        raise _failed("half_sse", xs, error) from None
    if not _NEG_INF < out < _INF:
        raise _overflow("half_sse", xs)
    return _node(out, "half_sse", inputs)


def _record_cross_entropy(inputs: tuple[Value, ...]) -> Value:
    """The rule "cross_entropy" over the operands (*z, *t): one node.

    out = fsum(t * (log(s) + (m - z)) if t != 0.0 or z - m > -inf else 0.0)
    m = fmax(z)
    s = fsum(exp(z - m) if z - m > -746.0 else 0.0)
    t_total = fsum(t)
    """
    xs = [x._data for x in inputs]
    n = (len(xs)) // 2
    z = xs[0:n]
    t = xs[n:n + n]
    try:
        m = FLOAT.fmax(z)
        s = FLOAT.fsum([FLOAT.exp(z_ - m) if z_ - m > -746.0 else 0.0 for z_, t_ in zip(z, t)])
        out = FLOAT.fsum([t_ * (FLOAT.log(s) + (m - z_)) if t_ != 0.0 or z_ - m > -FLOAT.inf else 0.0 for z_, t_ in zip(z, t)])  # noqa: E501 - one expression, as the table writes it
    except (ArithmeticError, ValueError) as error:
        raise _failed("cross_entropy", xs, error) from None
    if not _NEG_INF < out < _INF:
        raise _overflow("cross_entropy", xs)
    return _node(out, "cross_entropy", inputs)
# --- end of generated code ---
