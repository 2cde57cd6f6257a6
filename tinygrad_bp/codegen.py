"""The fast path, generated from the rule table, as PyTorch generates its autograd code.

PyTorch writes each derivative once, in ``derivatives.yaml``; so does the rule
table (:mod:`tinygrad_bp.rules`). Two pieces of the package are written by this module, never by hand:

* the operator methods of :class:`~tinygrad_bp.value.Value` (``__mul__``,
  ``exp``, ...) and the recorders of the n-ary operations: each computes its
  result with the row's forward expression written inline and records one node;
* the engine's fast backward loop (:func:`tinygrad_bp.engine._run_fast`): one
  loop over the graph whose branch for each operation applies that row's
  derivative expressions inline, with no rule lookup and no call per node.

Both specialise HOW the table's rules are applied; WHAT they compute is the
table's text, copied in. ``python scripts/generate.py`` rewrites the generated
regions of ``value.py`` and ``engine.py``; a test fails when they are stale,
and the fast path is tested against the reference backward pass
(:func:`tinygrad_bp.engine.reference_backward`) on random graphs.
"""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

from .expressions import Signature, domain_checks, expression, needed, unpack, unparse
from .rules import TABLE, Definition

__all__ = ["BEGIN", "END", "regions", "render_backward", "render_value_methods", "stale", "update"]

BEGIN = "# --- generated from the rule table by scripts/generate.py (tinygrad_bp/codegen.py): do not edit ---"
END = "# --- end of generated code ---"

_PACKAGE = Path(__file__).resolve().parent
_LINE_LIMIT = 110

# Operations whose forward expression cannot raise on finite floats (overflow gives inf, checked).
_SAFE_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.Constant, ast.Add, ast.Sub,
    ast.Mult, ast.USub, ast.IfExp, ast.Compare, ast.Gt, ast.Lt, ast.GtE, ast.LtE,
)  # fmt: skip


def _can_raise(source: str) -> bool:
    """True unless ``source`` is plain + - * and comparisons (which never raise on floats)."""
    tree = ast.parse(source, mode="eval")
    if any(isinstance(n, ast.Call) for n in ast.walk(tree)):
        return True
    return not all(isinstance(n, _SAFE_NODES) for n in ast.walk(tree))


def _float_expression(source: str, groups: tuple[str, ...] = (), *, element: bool = False) -> str:
    """``source`` for floats, its functions looked up in ``FLOAT`` (tinygrad_bp.expressions.FLOAT)."""
    return unparse(expression(source, "float", groups, element=element, namespace="FLOAT"))


def _q(text: str) -> str:
    """A string literal in double quotes, as the rest of the package writes them."""
    return json.dumps(text)


def _docstring(d: Definition, indent: str, *names: str) -> list[str]:
    """A generated method's docstring: the rule, which operand is which, the forward and derivatives."""
    where = " and ".join(f"{i} = {n}" for i, n in zip(d.inputs, names))
    body = [f"out = {d.forward}", *(f"d out/d{i} = {x}" for i, x in zip(d.inputs, d.derivatives))]
    width = _LINE_LIMIT - len(indent)
    wrapped = [w for line in body for w in textwrap.wrap(line, width, subsequent_indent="    ")]
    return [
        f'{indent}"""Record the rule "{d.name}" with {where}.',
        "",
        *[indent + line for line in wrapped],
        f'{indent}"""',
    ]


def _fit(line: str) -> str:
    """A generated line longer than the package's limit keeps its one expression whole."""
    if len(line) > _LINE_LIMIT:
        return line + "  # noqa: E501 - one expression, as the table writes it"
    return line


# --- Value's operator methods --------------------------------------------------------------------


def _compute(d: Definition, names: list[str], indent: str) -> list[str]:
    """Lines computing ``out`` from the inputs' floats (bound to ``names``), with the domain checks."""
    shown = "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"
    lines = domain_checks(d.name, d.domain, indent, namespace="FLOAT")
    lines = [line.replace("_DomainError", "DomainError") for line in lines]
    forward = _float_expression(d.forward)
    if _can_raise(d.forward):
        lines += [
            f"{indent}try:",
            f"{indent}    out = {forward}",
            f"{indent}except (ArithmeticError, ValueError) as error:",
            f"{indent}    raise _failed({_q(d.name)}, {shown}, error) from None",
        ]
    else:
        lines.append(f"{indent}out = {forward}")
    lines += [f"{indent}if not _NEG_INF < out < _INF:", f"{indent}    raise _overflow({_q(d.name)}, {shown})"]
    return lines


def _record(op: str, operands: list[str], indent: str) -> list[str]:
    """Lines making the node (written out: this is the hot path) and returning it."""
    if len(operands) == 1:
        slots = [f"node._a = {operands[0]}", "node._b = None"]
        needs = f"{operands[0]}.requires_grad"
    else:
        slots = [f"node._a = {operands[0]}", f"node._b = {operands[1]}"]
        needs = f"{operands[0]}.requires_grad or {operands[1]}.requires_grad"
    body = [
        "node = _new(Value)",
        "node._data = out",
        "node._grad = 0.0",
        'node.label = ""',
        "node._pass = 0",
        "if not _threads_without_grad or _grad_mode.enabled:",
        f"    node.op = {_q(op)}",
        *[f"    {s}" for s in slots],
        f"    node.requires_grad = {needs}",
        "else:",
        '    node.op = ""',
        "    node._a = None",
        "    node._b = ()",
        "    node.requires_grad = False",
        "return node",
    ]
    return [indent + line for line in body]


def _unary_method(d: Definition, method: str) -> list[str]:
    (a,) = d.inputs
    head = [f"    def {method}(self) -> Value:", *_docstring(d, " " * 8, "self"), f"        {a} = self._data"]
    return head + _compute(d, [a], " " * 8) + _record(d.name, ["self"], " " * 8)


def _binary_method(d: Definition, method: str) -> list[str]:
    a, b = d.inputs
    reflected = method.startswith("__r")
    first, second = ("other", "self") if reflected else ("self", "other")
    head = [
        f"    def {method}(self, other: Operand) -> Value:",
        *_docstring(d, " " * 8, first, second),
        "        if type(other) is not Value:",
        f"            converted = _operand(other, {_q(d.name)})",
        "            if converted is None:",
        "                return NotImplemented",
        "            other = converted",
        f"        {a} = {first}._data",
        f"        {b} = {second}._data",
    ]
    return head + _compute(d, [a, b], " " * 8) + _record(d.name, [first, second], " " * 8)


def render_value_methods() -> str:
    """The operator methods of every row with ``methods``, as the body of class Value."""
    lines: list[str] = []
    for d in TABLE:
        if not d.methods:
            continue
        if len(d.inputs) == 1:
            lines += _unary_method(d, d.methods[0])
            lines += [f"    {alias} = {d.methods[0]}" for alias in d.methods[1:]]
        else:
            for method in d.methods:
                lines += _binary_method(d, method)
                lines.append("")
            lines.pop()
        lines.append("")
    return "\n".join(_fit(line) for line in lines).rstrip() + "\n"


# --- recorders of the n-ary operations ----------------------------------------------------------


def _nary_recorder(d: Definition) -> list[str]:
    """``_record_<name>(inputs)``: the node of an operation over groups, its operands already Values."""
    signature = Signature(d.inputs)
    groups = signature.groups
    lines = [
        f"def _record_{d.name}(inputs: tuple[Value, ...]) -> Value:",
        f'    """The rule "{d.name}" over the operands {signature.describe()}: one node.',
        "",
        *[f"    {line}" for line in [f"out = {d.forward}", *(f"{n} = {x}" for n, x in d.given)]],
        '    """',
        "    xs = [x._data for x in inputs]",
        *unpack(signature, "xs"),
    ]
    forward = unparse(expression(d.forward, "float", groups, namespace="FLOAT"))
    lines += [
        "    try:",
        *_given(d, [d.forward], " " * 8),
        f"        out = {forward}",
        "    except (ArithmeticError, ValueError) as error:",
        f"        raise _failed({_q(d.name)}, xs, error) from None",
        "    if not _NEG_INF < out < _INF:",
        f"        raise _overflow({_q(d.name)}, xs)",
        f"    return _node(out, {_q(d.name)}, inputs)",
    ]
    return lines


def _given(d: Definition, sources: list[str] | tuple[str, ...], indent: str) -> list[str]:
    """Lines computing the row's given numbers that ``sources`` need, from the groups' floats."""
    groups = Signature(d.inputs).groups
    return [f"{indent}{name} = {_float_expression(text, groups)}" for name, text in needed(d.given, sources)]


def render_recorders() -> str:
    """The recorders of every row over groups (``sum``, ``linear``, ...)."""
    lines: list[str] = []
    for d in TABLE:
        if Signature(d.inputs).groups:
            lines += [*_nary_recorder(d), "", ""]
    return "\n".join(_fit(line) for line in lines).rstrip() + "\n"


# --- the fast backward loop ---------------------------------------------------------------------

_DELIVER = [
    "if {x}.requires_grad:",
    "    {x}._upstream += {contribution}",
]


def _contribution(derivative: str) -> str:
    """g times the local derivative, without multiplying by the constants 1 and -1."""
    if derivative == "1.0":
        return "g"
    if derivative == "-1.0":
        return "-g"
    return f"g * ({derivative})"


def _deliver(x: str, derivative: str, indent: str) -> list[str]:
    return [indent + line.format(x=x, contribution=_contribution(derivative)) for line in _DELIVER]


def _data_names(source: str, names: dict[str, str]) -> str:
    """A float expression with each input name read from its node (``a`` -> ``a._data``)."""

    class Data(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id in names:
                return ast.Attribute(ast.Name(names[node.id], ast.Load()), "_data", ast.Load())
            return node

    tree = Data().visit(ast.parse(source, mode="eval").body)
    return ast.unparse(ast.fix_missing_locations(tree))


def _fixed_branch(d: Definition) -> list[str]:
    """The branch of an operation with one or two inputs, read from ``node._a`` and ``node._b``."""
    names = {"out": "node"}
    lines = []
    for name, slot in zip(d.inputs, ("_a", "_b")):
        names[name] = name
        lines.append(f"        {name} = node.{slot}")
    for name, derivative in zip(d.inputs, d.derivatives):
        local = _data_names(_float_expression(derivative), names)
        lines += _deliver(name, local, " " * 8)
    return lines


def _group_branch(d: Definition) -> list[str]:
    """The branch of an operation over groups: one loop over the groups' elements."""
    signature = Signature(d.inputs)
    groups = signature.groups
    names = {"out": "node"}
    # node.inputs, written out (the hot path): three or more operands are the tuple in _b
    inputs = "        inputs = node._b if node._a is None else node.inputs"
    lines = [inputs, *unpack(signature, "inputs", " " * 8, suffix="s")]
    elements = [g + "_" for g in groups]
    for g in groups:
        names[g] = g + "_"
    for name, is_group in zip(signature.names, signature.is_group):
        if not is_group:
            names[name] = name + "s"
    loop = ", ".join(elements) + ("," if len(elements) == 1 else "")
    if d.given:  # numbers from whole groups, computed once before the loops: each group's floats first
        lines += [f"        {g} = [x._data for x in {g}s]" for g in groups]
        lines += _given(d, d.derivatives, " " * 8)
    # One loop per group, in the order of the operands: a Value that appears in two groups gets its
    # shares in the reference pass's order, so the sums agree to the last bit.
    for name, is_group, derivative in zip(signature.names, signature.is_group, d.derivatives):
        if is_group:
            local = _data_names(_float_expression(derivative), names)
            lines.append(f"        for {loop} in zip({', '.join(g + 's' for g in groups)}):")
            lines += _deliver(name + "_", local, " " * 12)
    for name, is_group, derivative in zip(signature.names, signature.is_group, d.derivatives):
        if not is_group:
            local = _data_names(_float_expression(derivative, groups), names)
            lines += _deliver(name + "s", local, " " * 8)
    return lines


def render_backward() -> str:
    """The engine's fast backward loop: a branch per row, the rule table's derivatives inline."""
    lines = [
        (
            "def _run_fast(order: list[Value], seed: float) -> None:  # noqa: C901, PLR0912, PLR0915"
            " - a branch per rule"
        ),
        '    """Add d root/d node * seed into ``_upstream`` of every node of ``order`` and of their inputs.',
        "",
        "    ``order`` holds the operations that need a gradient, each after its inputs, the root last",
        "    (``_order``); walked backwards, every node has received all of its gradient before it",
        "    passes shares on. Generated from the rule table: each branch is one row's derivatives,",
        "    written inline. Operations are told apart by name, the most common first (the table's",
        "    order); any other name, such as a custom operation's, takes the last branch, which asks",
        "    the rule table. Nothing is checked here: the caller checks the leaves and, on a",
        "    failure, reruns the checked pass for its error.",
        '    """',
        "    order[-1]._upstream = seed",
        "    for node in reversed(order):",
        "        op = node.op",
        "        g = node._upstream",
    ]
    keyword = "if"
    for d in TABLE:
        lines.append(f"        {keyword} op == {_q(d.name)}:")
        keyword = "elif"
        branch = _group_branch(d) if Signature(d.inputs).groups else _fixed_branch(d)
        lines += ["    " + line for line in branch]
    lines += [
        "        else:",
        "            inputs = node.inputs",
        "            derivatives = RULES[op].local(node._data, *[x._data for x in inputs])",
        "            for x, d in zip(inputs, derivatives):",
        *["    " + line for line in _deliver("x", "float(d)", " " * 12)],
    ]
    return "\n".join(_fit(line) for line in lines) + "\n"


# --- writing the regions ------------------------------------------------------------------------


def regions() -> dict[Path, list[str]]:
    """Each file with generated code, and the text of its regions in order."""
    return {
        _PACKAGE / "value.py": [render_value_methods(), render_recorders()],
        _PACKAGE / "engine.py": [render_backward()],
    }


def _replace(text: str, bodies: list[str], path: Path) -> str:
    """``text`` with the body of each generated region replaced, in order."""
    pieces, rest = [], text
    for body in bodies:
        start = rest.find(BEGIN)
        end = rest.find(END, start)
        if start < 0 or end < 0:
            msg = f"{path}: expected {len(bodies)} regions marked {BEGIN!r} ... {END!r}"
            raise ValueError(msg)
        after_begin = rest.index("\n", start) + 1
        end_line_start = rest.rfind("\n", 0, end) + 1
        pieces.append(rest[:after_begin])
        pieces.append(body)
        pieces.append(rest[end_line_start:end])
        rest = rest[end:]
    pieces.append(rest)
    return "".join(pieces)


def stale() -> list[Path]:
    """The files whose generated regions differ from what the table gives now."""
    return [
        path
        for path, bodies in regions().items()
        if _replace(path.read_text(), bodies, path) != path.read_text()
    ]


def update() -> list[Path]:
    """Rewrite the generated regions; return the files that changed."""
    changed = []
    for path, bodies in regions().items():
        old = path.read_text()
        new = _replace(old, bodies, path)
        if new != old:
            path.write_text(new)
            changed.append(path)
    return changed
