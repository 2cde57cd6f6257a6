"""The rule table's expressions, compiled for three kinds of number.

Each operation's value and local derivatives are written ONCE, in the rule
table (:mod:`tinygrad_bp.rules`), as short Python expressions over the names
of its inputs (and ``out``, the operation's result)::

    "*":    forward "a * b",  derivatives ("b", "a")
    a made-up "clip below 1": forward "a if a > 1.0 else 1.0", derivatives ("1.0 if a > 1.0 else 0.0",)

This module turns such an expression into a function for:

* ``"float"``: plain floats (the forward pass; the engine's fast path is
  generated from the same text by :mod:`tinygrad_bp.codegen`);
* ``"generic"``: floats or Values alike, so that a backward pass with
  ``create_graph=True`` records the derivative as a graph of its own.
  Comparisons read the numbers (``a == 0.0`` compares ``a.data``, not identity);
* ``"array"``: NumPy arrays, for the tape's kernels. ``x if c else y``
  becomes ``where(c, x, y)``, ``and``/``or``/``not`` become the elementwise
  logical functions, and ``fsum(w * x)`` of two groups a matrix product where
  the shapes allow.

An input written ``*x`` is a group of any length (``sum``'s terms, the weights
of ``linear``). In a forward expression a group appears only inside a
reduction, ``fsum`` (its sum) or ``fmax`` (its largest element); a derivative
with respect to a group is written for one element and holds for each
(``d(w . x + b)/dw_i = x_i`` is ``"x"``). A row may name intermediate
values (``given``: ``m = fmax(z)``), computed once, before its forward and
its derivatives; a reduction inside an element's expression is written as
such a name, so that it is computed once per node, not once per element.
``fmax`` is a shift, not an operation: for Values it gives a plain number (no
gradient flows through it), so a row uses it only where its result does not
depend on it.

The functions an expression may call are the same in every backend:
:data:`FUNCTIONS`.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FLOAT", "FUNCTIONS", "GENERIC", "Signature", "array_namespace", "compile_expressions"]

# The functions an expression may call, and constants it may name: each backend provides them all.
FUNCTIONS = (
    "abs", "exp", "log", "sqrt", "tanh", "sin", "cos", "sigmoid", "softplus", "fsum", "fmax", "is_integer",
)  # fmt: skip
# The functions over a whole group (one number from all its elements).
REDUCTIONS = ("fsum", "fmax")
CONSTANTS = ("inf", "nan")


def _sigmoid(x: float) -> float:
    """1 / (1 + e^-x), written so that no branch can overflow."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _softplus(x: float) -> float:
    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), never overflowing."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


# The elementary functions: math, NumPy and torch give them the same names.
ELEMENTARY = ("exp", "log", "sqrt", "tanh", "sin", "cos")


def backend(library: Any, **functions: Any) -> types.SimpleNamespace:
    """The namespace an expression runs in: ``library``'s elementary functions, inf, nan, ``functions``."""
    elementary = {name: getattr(library, name) for name in ELEMENTARY}
    return types.SimpleNamespace(**elementary, inf=math.inf, nan=math.nan, **functions)


def array_backend(library: Any, **functions: Any) -> types.SimpleNamespace:
    """An array library's namespace (NumPy, torch), with branches and logic elementwise."""
    return backend(
        library,
        abs=library.abs,
        is_integer=lambda x: library.floor(x) == x,
        where=library.where,
        logical_and=library.logical_and,
        logical_or=library.logical_or,
        logical_not=library.logical_not,
        spread=_spread,
        **functions,
    )


def _spread(x: Any) -> Any:
    """A (k, batch) number per node beside a (k, n, batch) group: (k, 1, batch) (a float as it is)."""
    return x[:, None] if getattr(x, "ndim", 0) >= 2 else x


_OPERATORS_BY_NAME = {"mul": operator.mul, "add": operator.add, "sub": operator.sub}

FLOAT = backend(
    math,
    abs=abs,
    sigmoid=_sigmoid,
    softplus=_softplus,
    fsum=math.fsum,
    fmax=max,
    is_integer=float.is_integer,
    **_OPERATORS_BY_NAME,
)
"""The float backend: the math module, plus a sigmoid and a softplus that never overflow."""


def _generic(name: str) -> Callable[[Any], Any]:
    """``name`` of a float from :data:`FLOAT`, or the Value method of that name for a Value."""
    on_float = getattr(FLOAT, name)

    def function(x: Any) -> Any:
        return on_float(x) if isinstance(x, (float, int)) else getattr(x, name)()

    function.__name__ = name
    function.__doc__ = f"{name}(x) of a float, or x.{name}() recorded for a Value."
    return function


def _data(x: Any) -> Any:
    """The number inside a Value; a float as it is (comparisons in generic expressions)."""
    return x if isinstance(x, (float, int)) else x.data


def _generic_fsum(terms: Sequence[Any]) -> Any:
    """math.fsum of floats (exactly rounded); when a term is a Value, a recorded chain of ``+``.

    (For a second derivative only: this layer sits below the value layer and its n-ary sum.)
    """
    terms = list(terms)
    if all(isinstance(t, (float, int)) for t in terms):
        return math.fsum(terms)
    return sum(terms[1:], terms[0])


def _generic_fmax(terms: Sequence[Any]) -> float:
    """The largest number among floats or Values: a plain float (a shift the result does not depend on)."""
    return float(max(_data(t) for t in terms))


GENERIC = types.SimpleNamespace(
    **{name: _generic(name) for name in (*ELEMENTARY, "sigmoid", "softplus")},
    abs=abs,
    fsum=_generic_fsum,
    fmax=_generic_fmax,
    is_integer=lambda x: float(_data(x)).is_integer(),
    inf=math.inf,
    nan=math.nan,
    data=_data,
    **_OPERATORS_BY_NAME,
)
"""The generic backend: each function works on a float and on a Value (recording the graph)."""

_ARRAY: types.SimpleNamespace | None = None


def array_namespace() -> types.SimpleNamespace:
    """The NumPy backend (NumPy is imported on first use: only the tape needs it)."""
    global _ARRAY  # noqa: PLW0603 - built once, on first use
    if _ARRAY is None:
        import numpy as np

        def sigmoid(a: Any) -> Any:
            """The float sigmoid's two branches, elementwise: no overflow."""
            e = np.exp(-np.abs(a))
            return np.where(a >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))

        def softplus(a: Any) -> Any:
            """max(a, 0) + log1p(e^-|a|), elementwise."""
            return np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))

        def fsum(terms: Any) -> Any:
            """The sum over a group: axis 1 of a (k, n, batch) array."""
            return terms.sum(axis=1)

        def fmax(terms: Any) -> Any:
            """The largest element of a group: axis 1 of a (k, n, batch) array."""
            return terms.max(axis=1)

        def dot(w: Any, x: Any) -> Any:
            """fsum(w * x) over a group: one matrix product when w is one row per node and x is shared."""
            if w.shape[-1] == 1 and x.shape[0] == 1 and w.ndim == x.ndim == 3:
                return w[:, :, 0] @ x[0]
            return (w * x).sum(axis=1)

        _ARRAY = array_backend(
            np, sigmoid=sigmoid, softplus=softplus, fsum=fsum, fmax=fmax, dot=dot
        )
    return _ARRAY


# --- signatures: which inputs are single numbers and which are groups --------------------------


class Signature:
    """The inputs of an operation: names, where ``*x`` is a group of any length.

    ``split(xs)`` cuts the flat operand list into the named parts; every group
    has the same length n, so an operation with g groups and s single inputs
    takes g * n + s operands.
    """

    def __init__(self, inputs: Sequence[str]) -> None:
        self.names = tuple(name.lstrip("*") for name in inputs)
        self.is_group = tuple(name.startswith("*") for name in inputs)
        self.groups = tuple(n for n, g in zip(self.names, self.is_group) if g)
        self.arity = None if self.groups else len(self.names)

    def group_length(self, count: int) -> int | None:
        """n for ``count`` operands, or None if ``count`` does not fit the signature."""
        singles = len(self.names) - len(self.groups)
        if not self.groups:
            return 0 if count == singles else None
        n, rest = divmod(count - singles, len(self.groups))
        return n if n >= 0 and not rest else None

    def spans(self, count: int) -> list[tuple[int, int]]:
        """The (start, stop) of each named part in a list of ``count`` operands."""
        n = self.group_length(count)
        if n is None:
            msg = f"{count} operands do not fit the inputs {self.describe()}"
            raise ValueError(msg)
        spans, start = [], 0
        for is_group in self.is_group:
            stop = start + (n if is_group else 1)
            spans.append((start, stop))
            start = stop
        return spans

    def describe(self) -> str:
        """The inputs as written, ``(*w, *x, b)``."""
        return "(" + ", ".join(("*" if g else "") + n for n, g in zip(self.names, self.is_group)) + ")"


# --- the transforms ----------------------------------------------------------------------------


def _parse(source: str) -> ast.expr:
    return ast.parse(source, mode="eval").body


def _names(tree: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


class _Qualify(ast.NodeTransformer):
    """Function calls and constants go through the backend namespace ``_m`` (``exp(a)`` -> ``_m.exp(a)``)."""

    def __init__(self, namespace: str = "_m") -> None:
        self.namespace = namespace

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in FUNCTIONS or node.id in CONSTANTS:
            qualified = ast.Attribute(ast.Name(self.namespace, ast.Load()), node.id, ast.Load())
            return ast.copy_location(qualified, node)
        return node


class _CompareNumbers(ast.NodeTransformer):
    """Generic backend: a comparison reads numbers (``_m.data(a) == 0.0``), each name's own.

    Reading every name's number (not each side's) also means that ``z - m > -746.0`` is
    float arithmetic, recording nothing and never failing: for Values, ``z - m`` itself
    would raise where it overflows.
    """

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        numbers: ast.AST = _Numbers().visit(node)
        return numbers


class _Numbers(ast.NodeTransformer):
    """Every name (but the namespace ``_m``) read as its number: ``a`` -> ``_m.data(a)``."""

    def visit_Name(self, name: ast.Name) -> ast.AST:
        if name.id == "_m":
            return name
        data = ast.Attribute(ast.Name("_m", ast.Load()), "data", ast.Load())
        return ast.copy_location(ast.Call(data, [name], []), name)


def _call(name: str, args: list[ast.expr]) -> ast.Call:
    return ast.Call(ast.Attribute(ast.Name("_m", ast.Load()), name, ast.Load()), args, [])


def _constant(node: ast.expr) -> Any:
    """The value of a literal, None for any other expression."""
    return node.value if isinstance(node, ast.Constant) else None


class _Elementwise(ast.NodeTransformer):
    """Array backend: branches and logic become elementwise (``x if c else y`` -> ``where(c, x, y)``)."""

    def __init__(self, groups: Sequence[str]) -> None:
        self.groups = set(groups)

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        return ast.copy_location(_call("where", [node.test, node.body, node.orelse]), node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        name = "logical_and" if isinstance(node.op, ast.And) else "logical_or"
        result = node.values[0]
        for value in node.values[1:]:
            result = _call(name, [result, value])
        return ast.copy_location(result, node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return ast.copy_location(_call("logical_not", [node.operand]), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        """fsum(w * x) of two groups: the ``dot`` helper, a matrix product where the shapes allow."""
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "fsum" and len(node.args) == 1:
            term = node.args[0]
            if (
                isinstance(term, ast.BinOp)
                and isinstance(term.op, ast.Mult)
                and all(isinstance(s, ast.Name) and s.id in self.groups for s in (term.left, term.right))
            ):
                return ast.copy_location(_call("dot", [term.left, term.right]), node)
        return node


def _is_reduction(node: ast.AST, names: Sequence[str] = REDUCTIONS) -> bool:
    """True for a call of ``fsum`` (or another of ``names``), as written or as ``_m.fsum(...)``."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in names
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.attr in names


class _Spread(ast.NodeTransformer):
    """Array backend: a number per node used beside a group is spread over the group's axis.

    A group is a (k, n, batch) array and a reduction of one a (k, batch) array; in ``z - m``
    with ``m = fmax(z)`` the second becomes ``spread(m)``, (k, 1, batch), so that it broadcasts
    over the group's elements as it does element by element in the scalar backends.
    """

    def __init__(self, groups: Sequence[str]) -> None:
        self.groups = set(groups)

    def is_group(self, node: ast.AST) -> bool:
        """True when ``node`` (already transformed) holds one number per element of a group."""
        if isinstance(node, ast.Name):
            return node.id in self.groups
        if _is_reduction(node, (*REDUCTIONS, "dot")):
            return False
        return any(self.is_group(child) for child in ast.iter_child_nodes(node))

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        if _is_reduction(node, (*REDUCTIONS, "dot")) or not isinstance(node, ast.expr):
            return node
        if not self.is_group(node):
            return node
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                setattr(node, field, [self._spread(v) for v in value])
            else:
                setattr(node, field, self._spread(value))
        return node

    def _spread(self, child: Any) -> Any:
        if not isinstance(child, ast.expr) or self.is_group(child):
            return child
        if not any(isinstance(n, ast.Name) and n.id != "_m" for n in ast.walk(child)):
            return child  # a number (-746.0, -inf): it broadcasts as it is
        return ast.copy_location(_call("spread", [child]), child)


_OPERATORS = {ast.Mult: "mul", ast.Add: "add", ast.Sub: "sub"}


class _Elements(ast.NodeTransformer):
    """Scalar backends: inside ``fsum(...)``, group names stand for one element each.

    ``fsum(x)`` of one group stays as it is, and ``fsum(w * x)`` of two groups
    becomes ``fsum(map(mul, w, x))``; anything else a list over the elements.
    """

    def __init__(self, groups: Sequence[str], namespace: str) -> None:
        self.groups = tuple(groups)
        self.namespace = namespace

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if not (_is_reduction(node) and len(node.args) == 1 and self.groups):
            return node
        term = node.args[0]
        if isinstance(term, ast.Name) and term.id in self.groups:
            return node
        if (
            isinstance(term, ast.BinOp)
            and type(term.op) in _OPERATORS
            and all(isinstance(s, ast.Name) and s.id in self.groups for s in (term.left, term.right))
        ):
            operator_function = ast.Attribute(
                ast.Name(self.namespace, ast.Load()), _OPERATORS[type(term.op)], ast.Load()
            )
            node.args = [
                ast.Call(ast.Name("map", ast.Load()), [operator_function, term.left, term.right], [])
            ]
            return node
        node.args = [ast.ListComp(_element(term, self.groups), [_zip_generator(self.groups)])]
        return node


def _element(tree: ast.expr, groups: Sequence[str]) -> ast.expr:
    """``tree`` with each group name ``x`` replaced by its element name ``x_`` (not inside a reduction)."""

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            return ast.Name(node.id + "_", node.ctx) if node.id in groups else node

        def visit_Call(self, node: ast.Call) -> ast.AST:
            return node if _is_reduction(node) else self.generic_visit(node)

    renamed: ast.expr = Rename().visit(tree)
    return renamed


def _zip_generator(groups: Sequence[str]) -> ast.comprehension:
    """``for x_, y_ in zip(x, y)``."""
    target = ast.Tuple([ast.Name(g + "_", ast.Store()) for g in groups], ast.Store())
    iterable = ast.Call(ast.Name("zip", ast.Load()), [ast.Name(g, ast.Load()) for g in groups], [])
    return ast.comprehension(target, iterable, [], 0)


def expression(
    source: str, backend: str, groups: Sequence[str] = (), *, element: bool = False, namespace: str = "_m"
) -> ast.expr:
    """The expression ``source`` transformed for ``backend`` (``"float"``, ``"generic"`` or ``"array"``).

    With ``element``, group names stand for one element (a derivative with
    respect to a group, in a scalar backend). Functions are looked up in the
    variable ``namespace``.
    """
    tree: ast.expr = _Qualify(namespace).visit(_parse(source))
    if backend == "generic":
        tree = _CompareNumbers().visit(tree)
    if backend == "array":
        tree = _Spread(groups).visit(_Elementwise(groups).visit(tree))
    else:
        tree = _Elements(groups, namespace).visit(tree)
        if element:
            tree = _element(tree, groups)
    return ast.fix_missing_locations(tree)


def unparse(tree: ast.expr) -> str:
    """Source text of a transformed expression, the same on every supported Python.

    (Python 3.10's ast.unparse writes a comprehension's tuple target in parentheses.)
    """
    return re.sub(r"for \(([^()]*)\) in ", r"for \1 in ", ast.unparse(tree))


def check_names(source: str, allowed: Sequence[str], where: str) -> None:
    """ValueError naming ``where`` if ``source`` is not an expression over ``allowed`` and FUNCTIONS."""
    try:
        tree = _parse(source)
    except SyntaxError as error:
        msg = f"{where}: {source!r} is not a Python expression ({error.msg})"
        raise ValueError(msg) from None
    unknown = _names(tree) - set(allowed) - set(FUNCTIONS) - set(CONSTANTS)
    if unknown:
        msg = (
            f"{where}: {source!r} uses unknown names {sorted(unknown)}; "
            f"it may use {sorted(allowed)} and {FUNCTIONS}"
        )
        raise ValueError(msg)


def check_scalar(source: str, groups: Sequence[str], where: str) -> None:
    """ValueError naming ``where`` if ``source`` uses a group outside a reduction (fsum, fmax)."""

    class Outside(ast.NodeVisitor):
        def __init__(self) -> None:
            self.found: set[str] = set()

        def visit_Call(self, node: ast.Call) -> None:
            if not _is_reduction(node):
                self.generic_visit(node)

        def visit_Name(self, node: ast.Name) -> None:
            if node.id in groups:
                self.found.add(node.id)

    visitor = Outside()
    visitor.visit(_parse(source))
    if visitor.found:
        msg = f"{where}: {source!r} uses the group(s) {sorted(visitor.found)} outside fsum or fmax"
        raise ValueError(msg)


def needed(given: Sequence[tuple[str, str]], sources: Sequence[str]) -> list[tuple[str, str]]:
    """The ``given`` pairs that ``sources`` use, directly or through another given, in order."""
    used = set().union(*(_names(_parse(text)) for text in sources))
    keep = []
    for name, text in reversed(given):
        if name in used:
            keep.append((name, text))
            used |= _names(_parse(text))
    return keep[::-1]


# --- compiling functions -----------------------------------------------------------------------


def unpack(signature: Signature, source: str = "xs", indent: str = "    ", suffix: str = "") -> list[str]:
    """Source lines that cut the sequence ``source`` into the signature's parts (named ``part + suffix``).

    For groups, ``n`` (the group length) is computed first; an operand count
    that does not fit the signature is checked by the caller.
    """
    names = [name + suffix for name in signature.names]
    if signature.arity is not None:
        return [f"{indent}{', '.join(names)}{',' if len(names) == 1 else ''} = {source}"]
    singles = len(signature.names) - len(signature.groups)
    count = f"len({source}) - {singles}" if singles else f"len({source})"
    lines = [
        f"{indent}n = ({count}) // {len(signature.groups)}"
        if len(signature.groups) > 1
        else f"{indent}n = {count}"
    ]
    position = "0"
    for name, is_group in zip(names, signature.is_group):
        stop = f"{position} + n" if is_group else f"{position} + 1"
        stop = stop.replace("0 + ", "")
        if is_group:
            lines.append(f"{indent}{name} = {source}[{position}:{stop}]")
        else:
            lines.append(f"{indent}{name} = {source}[{position}]")
        position = stop
    return lines



def _derivative_source(source: str, is_group: bool, signature: Signature, backend: str) -> str:
    """A derivative with respect to one input: one expression, or a list over a group's elements."""
    groups = signature.groups
    if backend == "array":
        return unparse(_array_derivative(source, is_group, groups))
    if not is_group:
        return unparse(expression(source, backend, groups))
    element = unparse(expression(source, backend, groups, element=True))
    loop = ", ".join(g + "_" for g in groups)
    return f"*[{element} for {loop}{',' if len(groups) == 1 else ''} in zip({', '.join(groups)})]"


def _mask_test(tree: ast.expr) -> ast.expr | None:
    """The comparison ``c`` of ``1.0 if c else 0.0``; None for any other expression."""
    if not isinstance(tree, ast.IfExp) or not isinstance(tree.test, ast.Compare):
        return None
    return tree.test if _constant(tree.body) == 1.0 and _constant(tree.orelse) == 0.0 else None


def _array_derivative(source: str, is_group: bool, groups: Sequence[str]) -> ast.expr:
    """A derivative's array form, as the kernels multiply it into the upstream gradient.

    The whole derivative ``1.0 if c else 0.0`` (relu's) is the mask ``c`` itself: booleans
    multiply as 1.0 and 0.0 do, to the bit, without building them. A derivative with respect to a
    group that is one number per node (a given, a single input) is spread over the group's axis.
    """
    test = _mask_test(_parse(source))
    if test is not None:
        return expression(ast.unparse(test), "array", groups)
    transformed = expression(source, "array", groups)
    if is_group and not isinstance(transformed, ast.Constant) and not _Spread(groups).is_group(transformed):
        transformed = ast.fix_missing_locations(_call("spread", [transformed]))
    return transformed


def _only_if_needed(part: str, k: int) -> str:
    """A derivative's source, computed only when ``needs`` (None: all) asks for input name ``k``."""
    wanted = f"needs is None or needs[{k}]"
    if part.startswith("*"):  # a group: a list over its n elements
        return f"*(({part[1:]}) if {wanted} else [0.0] * n)"
    return f"(({part}) if {wanted} else 0.0)"


@dataclass(frozen=True)
class ArrayForms:
    """An operation's array forms as source text: what ``compile_expressions`` compiles for NumPy.

    Each is one expression over the input names (a group: one array with the elements on axis
    1), ``out``, the names of ``given`` and the namespace ``_m``. The tape's program
    (:mod:`tinygrad_bp.tape.program`) inlines them with its variables' names, so they are
    written here once for the compiled forms and for the program.
    """

    names: tuple[str, ...]
    forward: str
    derivatives: tuple[str, ...]
    given: tuple[tuple[str, str], ...]

    def needed(self, sources: Sequence[str]) -> list[tuple[str, str]]:
        """The givens (name, expression) that ``sources`` use, in the order they are computed."""
        return needed(self.given, sources)


def array_forms(
    signature: Signature,
    forward: str,
    derivatives: Sequence[str],
    domain: Sequence[tuple[str, str]] = (),
    given: Sequence[tuple[str, str]] = (),
) -> ArrayForms:
    """The array backend's text of a forward, its derivatives and its givens.

    Outside the domain the forward is nan, which the tape's finiteness check catches; its error
    then comes from the float form (a domain a formula alone would not notice).
    """
    groups = signature.groups
    if domain:
        inside = " and ".join(f"({condition})" for condition, _ in domain)
        forward = f"({forward}) if ({inside}) else nan"
    return ArrayForms(
        tuple(signature.names),
        unparse(expression(forward, "array", groups)),
        tuple(
            _derivative_source(d, is_group, signature, "array")
            for d, is_group in zip(derivatives, signature.is_group)
        ),
        tuple((name, unparse(expression(text, "array", groups))) for name, text in given),
    )


def domain_checks(
    name: str, domain: Sequence[tuple[str, str]], indent: str = "    ", namespace: str = "_m"
) -> list[str]:
    """Source lines raising ``_DomainError`` unless each condition of ``domain`` holds (floats)."""
    lines = []
    for condition, message in domain:
        text = "f" + json.dumps(f"{name}: {message}")
        lines += [
            f"{indent}if not ({unparse(expression(condition, 'float', namespace=namespace))}):",
            f"{indent}    raise _DomainError({text})",
        ]
    return lines


def compile_expressions(
    name: str,
    signature: Signature,
    forward: str,
    derivatives: Sequence[str],
    backend: str,
    namespace: Any,
    domain: Sequence[tuple[str, str]] = (),
    error: type[Exception] = ValueError,
    *,
    given: Sequence[tuple[str, str]] = (),
) -> tuple[Callable[..., Any], Callable[..., tuple[Any, ...]]]:
    """``(forward(*xs), local(out, *xs))`` of one operation for one backend.

    Scalar backends take the flat operand list; the array backend takes one
    array per named part (a group's array has the elements on axis 1). The
    float forward raises ``error`` where a condition of ``domain`` fails.
    ``given`` are ``(name, expression)`` pairs, computed in order before the
    forward and the derivatives, which may use them. The generic and array
    ``local`` take ``needs``, one flag per input name: a part not needed is
    0.0 and not computed (a backward pass with ``create_graph`` records no
    derivative for a constant, which might overflow where nothing needs it;
    a tape computes no derivative it does not use).
    """
    groups = signature.groups
    if backend == "array":
        params = ", ".join(signature.names)
        head_f, head_l, parts_of = f"def forward({params}):", f"def local(out, {params}):", []
        forms = array_forms(signature, forward, derivatives, domain, given)
        forward_body, parts, given_texts = forms.forward, list(forms.derivatives), dict(forms.given)
    else:
        head_f, head_l, parts_of = "def forward(*xs):", "def local(out, *xs):", unpack(signature)
        forward_body = unparse(expression(forward, backend, groups))
        parts = [
            _derivative_source(d, is_group, signature, backend)
            for d, is_group in zip(derivatives, signature.is_group)
        ]
        given_texts = {name: unparse(expression(text, backend, groups)) for name, text in given}
    if backend in ("generic", "array"):
        head_l = head_l[: -len("):")] + ", needs=None):"
        parts = [_only_if_needed(part, k) for k, part in enumerate(parts)]
    local_body = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    checks = domain_checks(name, domain) if backend == "float" else []

    def bindings(*sources: str) -> list[str]:
        return [f"    {name} = {given_texts[name]}" for name, _ in needed(given, sources)]

    forward_source = [head_f, *parts_of, *checks, *bindings(forward), f"    return {forward_body}"]
    local_source = [head_l, *parts_of, *bindings(*derivatives), f"    return {local_body}"]
    source = "\n".join([*forward_source, *local_source])
    scope: dict[str, Any] = {"_m": namespace, "_DomainError": error}
    exec(compile(source, f"<rule {name!r}, {backend}>", "exec"), scope)  # noqa: S102 - the table's own text
    return scope["forward"], scope["local"]
