"""The rule table: every operation, and the ONE place its derivatives are written.

Each row of :data:`TABLE` says, as Python expressions over the names of the
operation's inputs (and ``out``, its result):

* ``forward``: how the value is computed from the inputs' values;
* ``derivatives``: d out / d input, one per input;
* ``domain``: conditions the inputs must meet, each with the error message;
* ``methods``: the :class:`~tinygrad_bp.value.Value` methods that record it.

Everything else is derived from these rows (:mod:`tinygrad_bp.expressions`
compiles them):

* :data:`RULES` maps each name to a :class:`Rule` whose ``forward`` works on
  floats and whose ``local(out, *inputs)`` works on floats and on Values alike
  (a backward pass with ``create_graph`` records the derivative's own graph);
* :meth:`Rule.array` gives the NumPy form of both, for the tape's kernels;
* the Value operators and the engine's fast backward loop are generated
  from the rows by :mod:`tinygrad_bp.codegen` (``python scripts/generate.py``);
* ``formula``, the derivatives as a learner reads them, is shown by
  drawings, the stepper and ``explain``.

The value layer looks rules up by name when it records a node; the engine
looks them up again when it runs the chain rule backwards. Nodes never carry
functions of their own.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import DomainError
from .expressions import (
    CONSTANTS,
    FLOAT,
    FUNCTIONS,
    GENERIC,
    ArrayForms,
    Signature,
    array_forms,
    array_namespace,
    check_names,
    check_scalar,
    compile_expressions,
)

__all__ = ["BUILTIN", "RULES", "TABLE", "Definition", "Rule", "register"]


@dataclass(frozen=True)
class Definition:
    """One row of the table: an operation written as expressions (see the module docstring).

    ``inputs`` are names; ``*x`` is a group of any length. A derivative with
    respect to a group is written for one element (``d(w . x + b)/dw_i = x_i``
    is ``"x"``). ``given`` names numbers computed once per node from whole
    groups (``("m", "fmax(z)")``), in order; the forward and the derivatives
    may use them. ``fmax`` is a shift, not an operation: for Values (a
    backward pass with ``create_graph``) it is a plain number, so use it only
    where the result does not depend on it (as ``m`` in ``cross_entropy``).
    """

    name: str
    inputs: tuple[str, ...]
    forward: str
    derivatives: tuple[str, ...]
    domain: tuple[tuple[str, str], ...] = ()
    methods: tuple[str, ...] = ()
    given: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        where = f"rule {self.name!r}"
        if len(self.derivatives) != len(self.inputs):
            msg = f"{where}: {len(self.derivatives)} derivatives for {len(self.inputs)} inputs"
            raise ValueError(msg)
        names = [n.lstrip("*") for n in self.inputs]
        groups = [n.lstrip("*") for n in self.inputs if n.startswith("*")]
        known = list(names)
        for name, text in self.given:
            if not _fresh_name(name, [*known, "out"]):
                msg = (
                    f"{where}: the given name {name!r} is not a new identifier (not an input, out, a "
                    "function, a constant or a keyword, and neither starting nor ending with _)"
                )
                raise ValueError(msg)
            check_names(text, known, where)
            check_scalar(text, groups, f"{where}, given {name}")
            known.append(name)
        check_names(self.forward, known, where)
        for d in self.derivatives:
            check_names(d, [*known, "out"], where)
        for condition, _ in self.domain:
            check_names(condition, names, where)


def _fresh_name(name: str, taken: list[str]) -> bool:
    """True if ``name`` may name a given number (compiled, ``x_`` is an element of the group ``x``)."""
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and name not in (*taken, *FUNCTIONS, *CONSTANTS)
        and not name.startswith("_")
        and not name.endswith("_")
    )


@dataclass(frozen=True)
class Rule:
    """How one operation computes its value and its local derivatives.

    ``arity`` is the number of inputs, or ``None`` for an operation over
    groups of any length. ``forward(*xs)`` takes floats (raising DomainError
    outside the domain); ``local(out, *xs)`` returns the tuple
    ``(d out/d x_1, ..., d out/d x_n)`` for floats or for Values. ``formula``
    is the local derivative in words. ``definition`` is the table row (None
    for an operation made by :func:`~tinygrad_bp.custom.custom_op`).
    """

    name: str
    arity: int | None
    forward: Callable[..., float]
    local: Callable[..., tuple[Any, ...]]
    formula: str
    definition: Definition | None = None
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # made on first use

    @property
    def signature(self) -> Signature:
        """The inputs: names, and which of them are groups (made once per rule: backward reads it)."""
        if self.definition is not None:
            if "signature" not in self._cache:
                self._cache["signature"] = Signature(self.definition.inputs)
            signature: Signature = self._cache["signature"]
            return signature
        return Signature([f"x{i + 1}" for i in range(self.arity or 0)] if self.arity is not None else ["*x"])

    def array(self) -> tuple[Callable[..., Any], Callable[..., tuple[Any, ...]]] | None:
        """``(forward(*parts), local(out, *parts))`` on NumPy arrays, one array per input name.

        None for a custom rule (the tape applies its float functions element by element).
        """
        if self.definition is None:
            return None
        if "array" not in self._cache:
            d = self.definition
            self._cache["array"] = compile_expressions(
                d.name,
                Signature(d.inputs),
                d.forward,
                d.derivatives,
                "array",
                array_namespace(),
                d.domain,
                given=d.given,
            )
        forms: tuple[Callable[..., Any], Callable[..., tuple[Any, ...]]] = self._cache["array"]
        return forms

    def array_forms(self) -> ArrayForms | None:
        """The text of :meth:`array`'s expressions, for code that inlines them (None for a custom rule)."""
        if self.definition is None:
            return None
        if "text" not in self._cache:
            d = self.definition
            signature = Signature(d.inputs)
            self._cache["text"] = array_forms(signature, d.forward, d.derivatives, d.domain, d.given)
        text: ArrayForms = self._cache["text"]
        return text


def formula(definition: Definition) -> str:
    """The local derivatives as a learner reads them: ``d out/da = b, d out/db = a``."""
    inputs = [n.lstrip("*") + ("_i" if n.startswith("*") else "") for n in definition.inputs]
    derivatives = []
    for name, d in zip(inputs, definition.derivatives):
        shown = d
        for group in (n.lstrip("*") for n in definition.inputs if n.startswith("*")):
            shown = _subscript(shown, group)
        derivatives.append(f"d out/d{name} = {shown}")
    given = "".join(f"; {name} = {text}" for name, text in definition.given)
    return ", ".join(derivatives) + given


def _subscript(text: str, group: str) -> str:
    """``text`` with the group name ``x`` written ``x_i`` (one element of the group)."""
    import re

    return re.sub(rf"\b{group}\b", f"{group}_i", text)


def compile_rule(definition: Definition) -> Rule:
    """The Rule of a table row: its float forward and its generic local derivatives."""
    signature = Signature(definition.inputs)
    forward, _ = compile_expressions(
        definition.name,
        signature,
        definition.forward,
        definition.derivatives,
        "float",
        FLOAT,
        definition.domain,
        DomainError,
        given=definition.given,
    )
    _, local = compile_expressions(
        definition.name,
        signature,
        definition.forward,
        definition.derivatives,
        "generic",
        GENERIC,
        given=definition.given,
    )
    return Rule(definition.name, signature.arity, forward, local, formula(definition), definition)


RULES: dict[str, Rule] = {}


def register(rule: Rule, *, replace: bool = False) -> Rule:
    """Add ``rule`` to the table; a name already taken is refused unless ``replace`` is True."""
    if rule.name in RULES and not replace:
        msg = f"an operation named {rule.name!r} already has a rule"
        raise ValueError(msg)
    RULES[rule.name] = rule
    return rule


# --- the table ----------------------------------------------------------------------------------
# Every derivative of the package is written here, once. ``out`` is the operation's result.
# The rows are in order of how often networks use them: the fast backward loop tries them in
# this order. sum, linear, sse and half_sse are ONE node however many inputs (a neuron's
# weighted sum is one node).

_BASE_NEGATIVE = "the negative base {a!r} raised to the non-integer power {b!r} is not a real number"

TABLE: tuple[Definition, ...] = (
    Definition("+", ("a", "b"), "a + b", ("1.0", "1.0"), methods=("__add__", "__radd__")),
    Definition("*", ("a", "b"), "a * b", ("b", "a"), methods=("__mul__", "__rmul__")),
    Definition("linear", ("*w", "*x", "b"), "fsum(w * x) + b", ("x", "w", "1.0")),
    Definition("relu", ("a",), "a if a > 0.0 else 0.0", ("1.0 if a > 0.0 else 0.0",), methods=("relu",)),
    Definition("tanh", ("a",), "tanh(a)", ("1.0 - out * out",), methods=("tanh",)),
    # s(a) = 1/(1+e^-a): d/da = s(a)(1 - s(a))
    Definition("sigmoid", ("a",), "sigmoid(a)", ("out * (1.0 - out)",), methods=("sigmoid",)),
    Definition("-", ("a", "b"), "a - b", ("1.0", "-1.0"), methods=("__sub__", "__rsub__")),
    Definition("neg", ("a",), "-a", ("-1.0",), methods=("__neg__",)),
    Definition("sum", ("*x",), "fsum(x)", ("1.0",)),
    Definition("exp", ("a",), "exp(a)", ("out",), methods=("exp",)),
    Definition(
        "log",
        ("a",),
        "log(a)",
        ("1.0 / a",),
        domain=(("a > 0.0", "the input {a!r} is outside the domain x > 0"),),
        methods=("log",),
    ),
    # d(a/b)/db = -a/b^2 = -out/b
    Definition("/", ("a", "b"), "a / b", ("1.0 / b", "-out / b"), methods=("__truediv__", "__rtruediv__")),
    # d(a**b)/da = b a^(b-1) and d(a**b)/db = a^b log a, with their limits at a = 0: d/da is 0 for
    # b = 0 (a^0 = 1), +inf for 0 < b < 1; d/db is 0 (from the right). For a < 0, d/db is undefined.
    # The engine raises NonDifferentiableError only if an infinite or undefined partial is needed.
    Definition(
        "**",
        ("a", "b"),
        "a ** b",
        (
            "b * a ** (b - 1.0) if a != 0.0 or b >= 1.0 else (0.0 if b == 0.0 else inf)",
            "out * log(a) if a > 0.0 else (0.0 if a == 0.0 else nan)",
        ),
        domain=(
            ("a != 0.0 or b >= 0.0", "0.0 raised to the negative power {b!r} is undefined"),
            ("a >= 0.0 or is_integer(b)", _BASE_NEGATIVE),
        ),
        methods=("__pow__", "__rpow__"),
    ),
    # d sqrt(a)/da = 1/(2 sqrt a) = 0.5/out
    Definition(
        "sqrt", ("a",), "sqrt(a)", ("0.5 / out",),
        domain=(("a >= 0.0", "the input {a!r} is outside the domain x >= 0"),), methods=("sqrt",),
    ),
    # d|a|/da = sign(a), 0 at a = 0 (a subgradient)
    Definition(
        "abs",
        ("a",),
        "abs(a)",
        ("1.0 if a > 0.0 else (-1.0 if a < 0.0 else 0.0)",),
        methods=("__abs__", "abs"),
    ),
    Definition("sin", ("a",), "sin(a)", ("cos(a)",), methods=("sin",)),
    Definition("cos", ("a",), "cos(a)", ("-sin(a)",), methods=("cos",)),
    # log(1 + e^a): d/da = s(a)
    Definition("softplus", ("a",), "softplus(a)", ("sigmoid(a)",), methods=("softplus",)),
    Definition("sse", ("*p", "*t"), "fsum((p - t) * (p - t))", ("2.0 * (p - t)", "-2.0 * (p - t)")),
    Definition("half_sse", ("*p", "*t"), "0.5 * fsum((p - t) * (p - t))", ("p - t", "t - p")),
    # -(t log p + (1 - t) log(1 - p)) with each log clamped below at -100, as PyTorch does: a
    # probability of exactly 0 or 1 gives a finite loss, and a clamped log passes no gradient.
    Definition(
        "binary_cross_entropy",
        ("p", "t"),
        "-(t * (log(p) if p > exp(-100.0) else -100.0))"
        " - (1.0 - t) * (log(1.0 - p) if 1.0 - p > exp(-100.0) else -100.0)",
        (
            (
                "(1.0 - t) * (1.0 / (1.0 - p) if 1.0 - p > exp(-100.0) else 0.0)"
                " - t * (1.0 / p if p > exp(-100.0) else 0.0)"
            ),
            "(log(1.0 - p) if 1.0 - p > exp(-100.0) else -100.0) - (log(p) if p > exp(-100.0) else -100.0)",
        ),
        domain=(
            ("p >= 0.0 and p <= 1.0", "the probability {p!r} must lie in [0, 1]"),
            ("t >= 0.0 and t <= 1.0", "the target {t!r} must lie in [0, 1]"),
        ),
    ),
    # -sum_i t_i log softmax(z)_i for logits z and class probabilities t (one-hot: -log softmax(z)_k),
    # shifted by m = max z: e^(z_i - m) <= 1 never overflows, and log(s) + (m - z_i) keeps the
    # digits that (log(s) + m) - z_i would cancel. d/dz_i = (sum_j t_j) softmax(z)_i - t_i. A logit
    # more than 746 below m has e^(z_i - m) = 0 exactly: it is written so, and the test reads
    # numbers only, so that no Value ever holds z_i - m (with create_graph, a difference of two
    # huge logits would overflow); a class with t_i = 0 whose m - z_i overflows adds nothing.
    Definition(
        "cross_entropy",
        ("*z", "*t"),
        "fsum(t * (log(s) + (m - z)) if t != 0.0 or z - m > -inf else 0.0)",
        ("t_total * exp(z - m) / s - t if z - m > -746.0 else 0.0 - t", "log(s) + (m - z)"),
        given=(
            ("m", "fmax(z)"),
            ("s", "fsum(exp(z - m) if z - m > -746.0 else 0.0)"),
            ("t_total", "fsum(t)"),
        ),
    ),
)

for _definition in TABLE:
    register(compile_rule(_definition))
del _definition

BUILTIN: frozenset[str] = frozenset(RULES)
"""The names of the built-in operations (custom operations are added to RULES later)."""
