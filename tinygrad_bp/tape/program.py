"""The compiled plan as generated Python: one forward function and one backward function per mode.

Each kernel writes its own lines (``emit_forward``, ``emit_backward``): which array form it
calls on which rows, and where each gradient contribution is added. This module only names the
rows and objects those lines use, binds the views of a replay's stores once per set of stores,
and compiles the text. Running the plan is then one call per pass, with no loop over kernels,
no lookup of an operand's rows and no test of a flag that the plan already decided:
``print(tape.program())`` shows the whole program.
"""

from __future__ import annotations

import ast
import functools
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from tinygrad_bp.expressions import array_namespace

from .kernels import _ARGUMENTS, _FANCY, Operand, Stores, _Kernel, _MixedRows, _Rows
from .recording import _U, _V

if TYPE_CHECKING:
    from tinygrad_bp.expressions import ArrayForms

    from .kernels import _Plan

Pass = Callable[[Stores], None]
Row = tuple[int, int]  # (store, row)
BackwardPass = Callable[[Stores, Stores], None]


class Emitter:
    """The source of one generated function: its lines, and the names of the views and objects they use.

    Views of the value store ``S`` and the gradient store ``G`` that are the same for every replay
    in those stores are bound once per store (:meth:`bound`); an argument's rows (a new array at
    every replay) and scattered rows (a copy) are taken at the top of every call.
    """

    def __init__(self, namespace: dict[str, Any], offsets: Sequence[int] = (0,)) -> None:
        self.namespace = namespace
        self.offsets = offsets  # the arguments' first rows in V
        self.kernel = 0  # the number of the kernel whose lines are being written (names end with it)
        # no name is taken twice: a variable of this function, and an object (a global) of any
        self.locals: set[str] = {"S", "G", "rows"}
        self.all_locals: set[str] = namespace.setdefault("__locals__", set())
        self.all_locals |= self.locals
        self.written: set[Row] = set()  # gradient rows this pass has written so far
        self.zero: set[Row] = set()  # gradient rows it must zero when it starts
        namespace.setdefault("_m", array_namespace())
        namespace.setdefault("_np", np)
        self.lines: list[str] = []
        self.per_call: list[str] = []
        self.bound_s: dict[str, str] = {}  # name -> the expression binding it, once per S
        self.bound_g: dict[str, str] = {}  # the same, once per G
        self._names: dict[tuple[Any, ...], str] = {}

    def line(self, text: str) -> None:
        """One statement of the function's body."""
        self.lines.append(f"    {text}")

    def obj(self, value: Any, prefix: str) -> str:
        """The name under which the program reaches ``value`` (a function, an operand, a kernel)."""
        key = ("obj", id(value))
        if key not in self._names:
            name = f"{prefix}{len(self.namespace)}"
            while name in self.namespace or name in self.all_locals:
                name += "_"
            self.namespace[name] = value
            self._names[key] = name
        return self._names[key]

    def _claim(self, name: str) -> str:
        """``name`` for a new variable, with underscores added if a variable or an object has it."""
        while name in self.locals or name in self.namespace:
            name += "_"
        self.locals.add(name)
        self.all_locals.add(name)
        return name

    def inputs(
        self,
        kernel: _Kernel,
        forms: ArrayForms,
        operands: Sequence[Operand],
        texts: Sequence[str],
        *,
        shared: dict[int, Any] | None = None,
    ) -> dict[str, str]:
        """The variables of the input names (and ``out``) that ``texts`` use, bound for this pass.

        Every operand is labelled (its gradient rows are named after it), but only the values
        an expression reads are taken: an operand no derivative reads is not copied.
        """
        used = _used(forms, tuple(texts))
        names = {}
        for j, (name, operand) in enumerate(zip(forms.names, operands)):
            self._names.setdefault(("base", id(operand)), f"{name}{self.kernel}")
            if name in used:
                names[name] = self.values(operand, name, shared=shared is not None and j in shared)
        if "out" in used:
            names["out"] = self.out(kernel)
        return names

    def values(self, operand: Operand, input_name: str, *, shared: bool = False) -> str:
        """The name of an operand's values in ``S``, ``idx.shape + (batch,)`` (a leading 1 if ``shared``).

        It is the rule's name for that input and the kernel's number: ``w1``, ``x1``, ``b1``.
        """
        key = ("values", id(operand), shared)
        if key in self._names:
            return self._names[key]
        name = self._claim(f"{input_name}{self.kernel}")
        none = "[None]" if shared else ""
        if not _is_view(operand):  # a copy: taken where it is used, once the rows hold their values
            self.line(f"{name} = {self.obj(operand, 'R')}.take(S){none}")
            return name
        self._names[key] = name
        view = f"{self.obj(operand, 'R')}.view(S){none}"  # (kept by rows_...: no cache of its own)
        if operand.store < _ARGUMENTS:
            self.bound_s[name] = view
        else:
            self.per_call.append(f"    {name} = {view}")
        return name

    def out(self, kernel: _Kernel) -> str:
        """The name of a kernel's output rows in ``S`` (a view)."""
        rows = f"S[{kernel.store}][{_slice(kernel.out)}]"
        return self._bound(("out", id(kernel)), f"out{self.kernel}", rows, self.bound_s)

    def grad_out(self, kernel: _Kernel) -> str:
        """The name of the gradient of a kernel's output rows in ``G`` (a view); rows nothing wrote are 0."""
        self.reads({(kernel.store, r) for r in range(kernel.out.start, kernel.out.stop)})
        rows = f"G[{kernel.store}][{_slice(kernel.out)}]"
        return self._bound(("g", id(kernel)), f"g{self.kernel}", rows, self.bound_g)

    def reads(self, rows: set[Row]) -> None:
        """These gradient rows are read: those that no contribution has written are zeroed first."""
        self.zero |= rows - self.written

    def inline(self, forms: ArrayForms, text: str, names: dict[str, str]) -> str:
        """One of the rule's array expressions over the variables ``names`` (see :meth:`_prepare`)."""
        return _rename(self._prepare(forms, text, names), names)

    def store(self, out: str, forms: ArrayForms, text: str, names: dict[str, str]) -> None:
        """``out[...] = expression``, for one of the rule's expressions, as :func:`_assignment` writes it."""
        final = self._prepare(forms, text, names)
        self.line(_rename(_assignment(final), names).replace(_OUT, out))

    def _prepare(self, forms: ArrayForms, text: str, names: dict[str, str]) -> str:
        """Write the lines that ``text`` needs first; return what is left of it, over ``names``.

        The givens it uses are computed first, once per kernel: their variables join ``names``.
        A part written twice (sse squares a difference as d * d) is computed once (:func:`_once`).
        """
        for given, source in _needed(forms, text):
            if given not in names:
                variable = self._claim(f"{given}{self.kernel}")
                self.line(f"{variable} = {_rename(self._parts(source, names), names)}")
                names[given] = variable
        return self._parts(text, names)

    def _parts(self, text: str, names: dict[str, str]) -> str:
        """Write the repeated parts of ``text``; return the rest, its placeholders named in ``names``."""
        parts, rest = _once(text)
        for placeholder, part in parts:
            variable = self._claim(f"e{self.kernel}")
            self.line(f"{variable} = {_rename(part, names)}")
            names[placeholder] = variable
        return rest

    def derivative(self, forms: ArrayForms, text: str, names: dict[str, str]) -> str:
        """A local derivative's text: a number's ``repr`` (a helper's float branch), else the expression."""
        number = _number(text)
        if number is not None:
            return repr(number)
        inlined = self.inline(forms, text, names)
        return inlined if inlined.isidentifier() else f"({inlined})"

    def times(self, g: str, forms: ArrayForms, text: str, names: dict[str, str]) -> str:
        """g times a local derivative, without a multiplication by 1 or -1."""
        number = _number(text)
        if number == 1.0:
            return g
        if number == -1.0:
            return f"-{g}"
        return f"{g} * {self.derivative(forms, text, names)}"

    def add(
        self, target: Operand, contribution: str, *, batch_sum: bool = False, takes_out: bool = False
    ) -> None:
        """Add ``contribution`` to the target's gradient rows (``batch_sum``: per sample, to uniform rows).

        The sum over the batch is d/dp of sum_i L_i for a uniform node. The first contribution to
        rows that nothing has written yet in this pass is written into them (no zeroing, no sum
        with 0); later ones are added in place (``-g`` subtracted). Scattered rows go through the
        operand's own ``add``, into rows zeroed when the pass starts. ``takes_out``: the contribution
        is a call that can write its result where its ``out`` says.
        """
        if not _is_view(target):
            self.accumulates_into(target)
            self.line(f"{self.obj(target, 'R')}.add(G, {contribution})")
            return
        rows = self._rows(target)
        first = self.written.isdisjoint(rows)
        if not first:
            self.zero |= rows - self.written
        self.written |= rows
        base = self._names.get(("base", id(target)), f"rows{self.kernel}")
        view = self._bound(("grad", id(target)), f"d{base}", f"{self.obj(target, 'R')}.view(G)", self.bound_g)
        sign, plain = ("-", contribution[1:]) if contribution.startswith("-") else ("", contribution)
        if plain.isidentifier():  # the upstream gradient itself, (k, batch) per sample
            total = f"{plain}.sum(axis=-1, keepdims=True)" if batch_sum else plain
            if first and sign:
                self.line(f"_np.negative({total}, out={view})")
            elif first:
                self.line(f"{view}[...] = {total}")
            else:
                self.line(f"{view} {sign or '+'}= {total}")
            return
        if batch_sum:  # g * d per sample, into uniform rows: summed over the batch
            contribution = f"({contribution}).sum(axis=-1, keepdims=True)"
            self.line(f"{view}[...] = {contribution}" if first else f"{view} += {contribution}")
        elif first and takes_out:
            self.line(f"{contribution[:-1]}, out={view})")
        elif first and _is_product(contribution):  # g * d, written into the rows
            g, _, d = contribution.partition(" * ")
            self.line(f"_np.multiply({g}, {d}, out={view})")
        elif first:
            self.line(f"{view}[...] = {contribution}")
        else:
            self.line(f"{view} += {contribution}")

    def accumulates_into(self, target: Operand) -> None:
        """Code outside this pass's lines adds into the target's gradient rows: they must start at 0."""
        rows = self._rows(target)
        self.zero |= rows - self.written
        self.written |= rows

    def _rows(self, target: Operand) -> set[Row]:
        """The (store, row) pairs of the target's gradient; an argument's rows are rows of V."""
        if isinstance(target, _MixedRows):
            return self._rows(target.v) | self._rows(target.u)
        if target.store < _ARGUMENTS:
            return {(target.store, int(r)) for r in target.flat}
        start = self.offsets[target.store - _ARGUMENTS]
        return {(_V, start + int(r)) for r in target.flat}

    def zero_lines(self) -> list[str]:
        """The lines that zero the rows this pass adds into or reads before anything writes them."""
        return _zero_lines(self.zero)

    def zero_when_done(self, rows: set[Row]) -> None:
        """Zero these rows when the pass ends (written as part of a block, their gradient is 0)."""
        self.lines += _zero_lines(rows)

    def _bound(self, key: tuple[Any, ...], name: str, expression: str, table: dict[str, str]) -> str:
        if key not in self._names:
            name = self._names[key] = self._claim(name)
            table[name] = expression
        return self._names[key]


_UFUNCS = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "true_divide"}
_OUT = "@out@"  # where an assignment's rows go, in its text (no name: renaming leaves it alone)
_IDENTIFIER = re.compile(r"(?<![.\w])([A-Za-z_]\w*)")  # a name, not an attribute


@functools.lru_cache(maxsize=1024)  # (texts of the table's rows)
def _pieces(source: str) -> tuple[str, ...]:
    """``source`` cut into text and names, alternately: text, name, text, ..., text."""
    return tuple(_IDENTIFIER.split(source))


def _rename(source: str, names: dict[str, str]) -> str:
    """``source`` with each name of ``names`` replaced by its value (a name of the program's)."""
    pieces = _pieces(source)
    return "".join(names.get(piece, piece) if k % 2 else piece for k, piece in enumerate(pieces))


@functools.lru_cache(maxsize=1024)  # (texts of the table's rows)
def _used(forms: ArrayForms, texts: tuple[str, ...]) -> frozenset[str]:
    """The names that ``texts`` and the givens they need read (inputs, ``out``, givens)."""
    sources = [*texts, *(source for text in texts for _, source in _needed(forms, text))]
    return frozenset(name for source in sources for name in _pieces(source)[1::2])


@functools.lru_cache(maxsize=1024)  # (texts of the table's rows)
def _needed(forms: ArrayForms, text: str) -> tuple[tuple[str, str], ...]:
    """The givens ``text`` uses, in the order they are computed (parsed once per rule and text)."""
    return tuple(forms.needed([text]))


@functools.lru_cache(maxsize=1024)  # (texts of the table's rows)
def _once(source: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """(parts, rest): ``source`` with each part it computes more than once computed once, largest first.

    ``parts`` are (placeholder, expression) pairs to compute in order, ``rest`` the expression
    over their placeholders. Every part of an array expression is evaluated (a choice is
    ``where``, which evaluates both branches), so computing a repeated part first gives the
    same numbers.
    """
    tree: ast.AST = ast.parse(source, mode="eval").body
    parts: list[tuple[str, str]] = []
    while True:
        counts = Counter(ast.dump(node) for node in ast.walk(tree) if isinstance(node, _COMPUTED))
        repeated = [n for n in ast.walk(tree) if isinstance(n, _COMPUTED) and counts[ast.dump(n)] > 1]
        if not repeated:
            return tuple(parts), ast.unparse(tree)
        part = max(repeated, key=lambda n: len(ast.dump(n)))
        placeholder = f"_part{len(parts)}_"
        parts.append((placeholder, ast.unparse(part)))
        tree = _Replace(ast.dump(part), placeholder).visit(tree)


@functools.lru_cache(maxsize=1024)  # (texts of the table's rows)
def _assignment(source: str) -> str:
    """``out[...] = source`` (``out`` written as :data:`_OUT`): by its last operation if a ufunc.

    ``np.add(a, b, out=o)`` is ``o[...] = a + b`` to the bit, without the array in between.
    """
    tree = ast.parse(source, mode="eval").body
    clip = _clip(tree)
    if clip is not None:
        return f"{clip}, out={_OUT})"
    if isinstance(tree, ast.BinOp) and type(tree.op) in _UFUNCS:
        operands = f"{ast.unparse(tree.left)}, {ast.unparse(tree.right)}"
        return f"_np.{_UFUNCS[type(tree.op)]}({operands}, out={_OUT})"
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.USub):
        return f"_np.negative({ast.unparse(tree.operand)}, out={_OUT})"
    if isinstance(tree, ast.Call) and _is_ufunc_call(tree, array_namespace()):
        return f"{ast.unparse(tree)[:-1]}, out={_OUT})"
    return f"{_OUT}[...] = {source}"


def _is_product(contribution: str) -> bool:
    """Whether the contribution is ``g * d`` with g a name (as :meth:`Emitter.times` writes it)."""
    g, sep, _ = contribution.partition(" * ")
    return bool(sep) and g.isidentifier()
_COMPUTED = (ast.BinOp, ast.UnaryOp, ast.Call, ast.Compare, ast.BoolOp)  # parts worth computing once


class _Replace(ast.NodeTransformer):
    """Every occurrence of one part (by its ``ast.dump``) replaced by a variable."""

    def __init__(self, dumped: str, name: str) -> None:
        self.dumped, self.name = dumped, name

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.expr) and ast.dump(node) == self.dumped:
            return ast.Name(self.name, ast.Load())
        return super().visit(node)


def _clip(tree: ast.expr) -> str | None:
    """``where(a > b, a, b)`` (relu's ``a if a > 0.0 else 0.0``) as ``maximum(a, b`` (``<``: minimum).

    One pass instead of three (a comparison, a choice, a copy), and the same numbers: on a tie
    both give ``b`` (0.0 for a = -0.0); only a NaN differs, which maximum keeps and ``where``
    hides, and it comes from a value that the finiteness check refuses anyway.
    """
    if not (isinstance(tree, ast.Call) and ast.unparse(tree.func) == "_m.where" and len(tree.args) == 3):
        return None
    test, chosen, other = tree.args
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    function = {ast.Gt: "maximum", ast.Lt: "minimum"}.get(type(test.ops[0]))
    same = ast.dump(test.left) == ast.dump(chosen) and ast.dump(test.comparators[0]) == ast.dump(other)
    if function is None or not same:
        return None
    return f"_np.{function}({ast.unparse(chosen)}, {ast.unparse(other)}"


def _is_ufunc_call(tree: ast.Call, namespace: Any) -> bool:
    """Whether ``tree`` is a call ``_m.f(...)`` of a NumPy ufunc (which takes ``out=``)."""
    if not isinstance(tree.func, ast.Attribute) or tree.keywords:
        return False
    function = tree.func
    return (
        isinstance(function.value, ast.Name)
        and function.value.id == "_m"
        and isinstance(getattr(namespace, function.attr, None), np.ufunc)
    )


def _number(text: str) -> float | None:
    """The number an expression is, if it is one (a derivative such as "1.0" or "-2.0")."""
    try:
        return float(text)
    except ValueError:
        return None


def _slice(s: slice) -> str:
    return f"{s.start}:{s.stop}"


def _is_view(operand: Operand) -> TypeGuard[_Rows]:
    """Whether the operand's values are a view (else a copy of scattered rows).

    A view of ``S``'s own stores is the same array at every replay in them; a view of an
    argument is new at every replay.
    """
    return isinstance(operand, _Rows) and operand.kind != _FANCY


class Program:
    """A plan's generated passes: ``forward(S)``, and ``backward[mode](S, G)`` (mode 1: input gradients too).

    ``source`` is the text of all of them, as compiled; ``sources`` the text of each, by name.
    """

    def __init__(
        self, plan: _Plan, output: Row, returned: Sequence[set[Row]], wanted: Sequence[set[Row]]
    ) -> None:
        """Generate and compile the passes of ``plan``.

        ``output``: the (store, row) of the output, whose gradient the caller writes (the seeds)
        before a backward pass; ``returned[mode]``: the gradient rows the caller reads after it;
        ``wanted[mode]``: the rows whose gradients the pass computes. A block of operands is
        computed whole, so rows outside ``wanted`` (a constant beside a param) may be written
        too: they are zeroed at the end (0 is their gradient; the value written may be nan).
        """
        namespace: dict[str, Any] = {}
        forward = Emitter(namespace)
        for k, kernel in enumerate(plan.kernels, 1):
            forward.kernel = k
            forward.line(f"# kernel {k}, {kernel.describe()}")
            kernel.emit_forward(forward)
        backwards = []
        for mode in (0, 1):
            backward = Emitter(namespace, plan.offsets)
            backward.written.add(output)
            for k, kernel in reversed(list(enumerate(plan.kernels, 1))):
                if kernel.active[mode]:
                    backward.kernel = k
                    backward.line(f"# kernel {k}, {kernel.describe()}")
                    kernel.emit_backward(backward, mode)
            backward.reads(returned[mode])
            backward.zero_when_done(backward.written - wanted[mode] - {output})
            backwards.append(backward)
        self.sources = {"forward": _function("forward", "S", forward)}
        for mode, e in enumerate(backwards):
            self.sources[f"backward_{mode}"] = _function(f"backward_{mode}", "S, G", e)
        self.source = "\n\n".join(self.sources.values())
        del namespace["__locals__"]
        exec(compile(self.source, "<tape program>", "exec"), namespace)  # noqa: S102 - generated from the plan
        self.forward: Pass = namespace["forward"]
        self.backward: Sequence[BackwardPass] = (namespace["backward_0"], namespace["backward_1"])


def _zero_lines(rows: set[Row]) -> list[str]:
    """``G[store][lo:hi] = 0.0`` for the runs of consecutive rows in each store."""
    lines = []
    for store in (_V, _U):
        for lo, hi in _runs(sorted(r for s, r in rows if s == store)):
            lines.append(f"    G[{store}][{lo}:{hi}] = 0.0")
    return lines


def _runs(rows: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted rows as (lo, hi) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for r in rows:
        if runs and runs[-1][1] == r:
            runs[-1] = (runs[-1][0], r + 1)
        else:
            runs.append((r, r + 1))
    return runs


def _function(name: str, params: str, e: Emitter) -> str:
    """One generated pass, after the functions that make the views of its rows.

    The pass takes its views from the stores, where the first call of ``rows_...`` keeps them
    under the pass's name (a set of stores belongs to one tape), then the per-call ones, then
    runs its lines.
    """
    chunks, lines = [], [f"def {name}({params}):"]
    for store, table, kind in (("S", e.bound_s, "rows"), ("G", e.bound_g, "gradient_rows")):
        if not table:
            continue
        maker = f"{kind}_{name}"
        body = [f"    {variable} = {view}" for variable, view in table.items()]
        keep = ", ".join(table) + ("," if len(table) == 1 else "")
        chunks.append("\n".join([f"def {maker}({store}):", *body, f"    {store}.views[{name!r}] = ({keep})"]))
        chunks[-1] += f"\n    return {store}.views[{name!r}]"
        lines.append(f"    rows = {store}.views.get({name!r}) or {maker}({store})  # the views, kept")
        lines += _unpack(list(table), "rows")
    lines += e.zero_lines()
    if e.per_call:
        lines.append("    # the inputs: views of the arrays this replay was given")
    lines += e.per_call
    lines += e.lines or ["    pass"]
    return "\n\n".join([*chunks, "\n".join(lines)])


def _unpack(names: list[str], source: str) -> list[str]:
    """``(a, b, ...) = source``, the names wrapped at 100 columns."""
    rows = textwrap.wrap(", ".join(names) + ("," if len(names) == 1 else ""), 90)
    lines = ["    (" + rows[0], *("     " + row for row in rows[1:])]
    lines[-1] += f") = {source}"
    return lines
