"""The rule table: each derivative is written once, and everything built from it agrees with it.

- the generated fast path (Value's operators, the engine's loop) is what the table gives now;
- every row compiles for floats, for Values and for NumPy arrays, and the three agree;
- no derivative of the table is written anywhere else in the package (grep-level);
- the fast backward pass equals the reference pass on random graphs, values and .grad alike.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest
from hypothesis import given

from tinygrad_bp import Value, codegen, engine
from tinygrad_bp.errors import DomainError
from tinygrad_bp.expressions import FUNCTIONS
from tinygrad_bp.rules import BUILTIN, RULES, TABLE, Definition, compile_rule
from tinygrad_bp.testing import expressions
from tinygrad_bp.value import apply

PACKAGE = Path(codegen.__file__).resolve().parent
POINTS = (-2.5, -1.0, -0.5, 0.0, 0.3, 1.0, 1.7, 3.0)


def test_the_generated_code_is_what_the_table_gives():
    assert codegen.stale() == [], "run: python scripts/generate.py"


def test_the_table_is_every_builtin_operation():
    assert {d.name for d in TABLE} == set(BUILTIN)
    for d in TABLE:
        assert RULES[d.name].definition is d
        assert RULES[d.name].formula  # shown by drawings, the stepper and explain


def _fixed_points(d: Definition) -> list[tuple[float, ...]]:
    """Points inside the domain of an operation with fixed inputs."""
    points = []
    for xs in itertools.product(POINTS, repeat=len(d.inputs)):
        try:
            RULES[d.name].forward(*xs)
        except (DomainError, ArithmeticError, ValueError):
            continue
        points.append(xs)
    return points


def _finite(x: float) -> bool:
    return math.isfinite(x)


@pytest.mark.parametrize("d", [d for d in TABLE if not any(n.startswith("*") for n in d.inputs)], ids=lambda d: d.name)
def test_float_value_and_array_forms_of_a_row_agree(d):
    np = pytest.importorskip("numpy")
    rule = RULES[d.name]
    array_forward, array_local = rule.array()
    points = _fixed_points(d)
    assert points, f"no point inside the domain of {d.name}"
    columns = [np.array(c) for c in zip(*points)]
    with np.errstate(all="ignore"):
        outs = array_forward(*columns)
        locals_ = array_local(outs, *columns)
    for k, xs in enumerate(points):
        out = rule.forward(*xs)
        assert outs[k] == pytest.approx(out, rel=1e-15, abs=1e-300)
        try:
            on_floats = rule.local(out, *xs)
        except ArithmeticError:  # undefined there (sqrt at 0): the array form says so with inf or nan
            assert not all(_finite(np.broadcast_to(x, outs.shape)[k]) for x in locals_), (d.name, xs)
            continue
        leaves = [Value(x) for x in xs]
        node = getattr(Value, d.methods[0])(*leaves) if d.methods else apply(d.name, *leaves)
        on_values = rule.local(node, *leaves)
        for i, d_float in enumerate(on_floats):
            d_array = locals_[i] if isinstance(locals_[i], float) else locals_[i][k]
            d_value = on_values[i].data if isinstance(on_values[i], Value) else on_values[i]
            if _finite(d_float):
                assert d_array == pytest.approx(d_float, rel=1e-14)
                assert d_value == pytest.approx(d_float, rel=1e-14)
            else:
                assert not _finite(d_array), (d.name, xs, i)


def _check_array_forms(rule, shape=(3, 4, 5), seed=0):
    """The rule's array forward and derivatives equal its float ones at every node and sample."""
    np = pytest.importorskip("numpy")
    forward, local = rule.array()
    rng = np.random.default_rng(seed)
    k, n, batch = shape
    signature = rule.signature
    parts = [rng.uniform(-2, 2, (k, n, batch) if g else (k, batch)) for g in signature.is_group]
    outs = forward(*parts)
    derivatives = local(outs, *parts)
    for node, b in itertools.product(range(k), range(batch)):
        flat = []
        for part, is_group in zip(parts, signature.is_group):
            flat += list(part[node, :, b]) if is_group else [part[node, b]]
        out = rule.forward(*flat)
        assert outs[node, b] == pytest.approx(out, rel=1e-13), rule.name
        got = []
        for d_part, is_group in zip(derivatives, signature.is_group):
            arr = np.broadcast_to(np.asarray(d_part, dtype=float), (k, n, batch) if is_group else (k, batch))
            got += list(arr[node, :, b]) if is_group else [arr[node, b]]
        assert got == pytest.approx(rule.local(out, *flat), rel=1e-13), rule.name


@pytest.mark.parametrize("d", [d for d in TABLE if any(n.startswith("*") for n in d.inputs)], ids=lambda d: d.name)
def test_rows_over_groups_agree_in_every_form(d):
    _check_array_forms(RULES[d.name])


def test_the_linear_layer_forms_are_matrix_products():
    """fsum(w * x) with one weight row per node and a shared x: the array form is W @ X."""
    np = pytest.importorskip("numpy")
    forward, _ = RULES["linear"].array()
    rng = np.random.default_rng(1)
    w, x, b = rng.normal(size=(6, 4, 1)), rng.normal(size=(1, 4, 7)), rng.normal(size=(6, 1))
    assert np.allclose(forward(w, x, b), w[:, :, 0] @ x[0] + b)


def _derivative_texts() -> set[str]:
    """The table's derivative expressions that say something (not the constants)."""
    texts = set()
    for d in TABLE:
        for text in d.derivatives:
            if not re.fullmatch(r"-?\d+\.\d+", text):
                texts.add(text)
    return texts


def _without_generated_regions(text: str) -> str:
    pieces = re.split(re.escape(codegen.BEGIN) + r".*?" + re.escape(codegen.END), text, flags=re.DOTALL)
    return "".join(pieces)


def test_each_derivative_is_written_once_in_the_package():
    """grep-level: a derivative of the table appears in no package file but the table itself.

    The generated regions are copies of the table by construction (the staleness test above);
    testing.py holds the independent float oracle, which must not share code with what it checks.
    """
    texts = _derivative_texts()
    assert {"b", "1.0 - out * out", "out * (1.0 - out)", "0.5 / out"} <= texts
    spaced = {t for t in texts if len(t) > 3}  # one-letter ones ("a", "b", "x") are everywhere
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in {"rules.py", "testing.py"}:
            continue
        source = _without_generated_regions(path.read_text())
        for text in spaced:
            assert text not in source, f"{path.name} restates the derivative {text!r}"


def test_the_tape_has_no_derivative_of_its_own():
    """The tape's kernels apply the table's array forms: no elementary function's derivative is spelled there."""
    source = "".join(path.read_text() for path in sorted((PACKAGE / "tape").glob("*.py")))
    assert "_Pointwise" in source  # the kernels are there
    for pattern in (r"np\.cos", r"np\.sin", r"np\.sign", r"1\.0 - out", r"0\.5 / out", r"np\.log\("):
        assert not re.search(pattern, source), pattern


def test_a_new_row_compiles_to_a_working_rule():
    """A row added to the table is an operation in every form: how a built-in one is made."""
    row = Definition("cube_test_row", ("a",), "a * a * a", ("3.0 * a * a",))
    rule = compile_rule(row)
    assert rule.forward(2.0) == 8.0
    assert rule.local(8.0, 2.0) == (12.0,)
    assert "d out/da = 3.0 * a * a" in rule.formula


def test_given_numbers_are_computed_once_per_node_and_checked():
    """A row may name numbers from whole groups; an element's expression uses them by name."""
    row = Definition(
        "softmax_weighted_test_row",
        ("*z",),
        "fsum(exp(z - m)) / s",  # = 1
        ("exp(z - m) / s - exp(z - m) / s",),
        given=(("m", "fmax(z)"), ("s", "fsum(exp(z - m))")),
    )
    rule = compile_rule(row)
    assert rule.forward(1.0, 2.0, 3.0) == pytest.approx(1.0)
    assert rule.local(1.0, 1.0, 2.0, 3.0) == (0.0, 0.0, 0.0)
    assert "m = fmax(z)" in rule.formula
    with pytest.raises(ValueError, match="outside fsum or fmax"):
        Definition("bad", ("*z",), "m", ("1.0",), given=(("m", "z + 1.0"),))
    with pytest.raises(ValueError, match="not a new identifier"):
        Definition("bad", ("*z",), "fsum(z)", ("1.0",), given=(("z", "fmax(z)"),))
    with pytest.raises(ValueError, match="unknown names"):
        Definition("bad", ("*z",), "fsum(z)", ("1.0",), given=(("m", "fmax(w)"),))


def test_array_forms_of_made_up_rows_agree_with_their_float_forms():
    """Masks inside arithmetic, a group's derivative that is one number per node, a single input beside a group."""
    rows = [
        Definition("stairs_test", ("a",), "a", ("(1.0 if a > 0.0 else 0.0) + (1.0 if a > 1.0 else 0.0)",)),
        Definition("expstep_test", ("a",), "a", ("exp(1.0 if a > 0.0 else 0.0)",)),
        Definition("sign_test", ("a",), "a", ("(1.0 if a > 0.0 else 0.0) - (1.0 if a < 0.0 else 0.0)",)),
        Definition("gonly_test", ("*x",), "k * fsum(x)", ("k",), given=(("k", "fsum(x * x)"),)),
        Definition("single_test", ("b", "*x"), "c * fsum(x)", ("2.0 * b * fsum(x)", "c"), given=(("c", "b * b"),)),
    ]
    for row in rows:
        _check_array_forms(compile_rule(row), shape=(2, 3, 4), seed=3)


def test_a_given_name_must_be_new_and_plain():
    for name in ("x_", "_m", "exp", "nan", "inf", "fsum", "lambda", "out", "x"):
        with pytest.raises(ValueError, match="not a new identifier"):
            Definition("bad", ("*x",), "fsum(x)", ("1.0",), given=((name, "fmax(x)"),))


def test_a_row_with_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown names"):
        Definition("bad", ("a",), "a * c", ("c",))
    with pytest.raises(ValueError, match="2 derivatives for 1 inputs"):
        Definition("bad", ("a",), "a", ("1.0", "2.0"))
    assert "exp" in FUNCTIONS


@given(expressions())
def test_backward_writes_the_reference_gradients(expr):
    """backward() (the generated loop) gives every leaf and node the reference pass's gradient, exactly.

    Same order, same expressions: the sums agree to the last bit.
    """
    leaves = [Value(x) for x in expr.point]
    out = expr.build(*leaves)
    if not out.requires_grad:
        return
    reference = engine.reference_gradients(out)
    out.backward()
    for node, g in reference.items():
        assert node.grad == g


def test_a_failing_fast_pass_is_rerun_for_its_error_and_writes_nothing():
    x = Value(0.0)
    y = x.sqrt() * 2.0  # d sqrt/dx at 0 is infinite
    with pytest.raises(ArithmeticError, match="sqrt"):
        y.backward()
    assert x.grad == 0.0
    assert y.grad == 0.0
