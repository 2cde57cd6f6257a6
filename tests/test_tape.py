"""The tape (tinygrad_bp.tape): record once, replay a batch with numpy, never replay a stale graph.

The batch replay must give the scalar engine's numbers, run sample by sample, to 1e-12 (relative
to the largest magnitude involved): on random graphs over every built-in operation and a custom
one, on the project's generated expressions, on MLPs with every loss, and on the articles'
2-2-2 example. The staleness tests show each way a graph can depend on values or state being
caught, and each malformed replay being refused.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tape_cases import batch_case

import tinygrad_bp as tg
from tinygrad_bp import losses
from tinygrad_bp.errors import (
    DomainError,
    NonDifferentiableError,
    OperationOverflowError,
    TapeMismatchError,
    ZeroDivisionInOperationError,
)
from tinygrad_bp.rules import BUILTIN, RULES
from tinygrad_bp.tape import LOSSES, BatchObjective, Tape, batch_loss_and_grad, trace
from tinygrad_bp.value import Value, apply

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-12

if "tape_test_cube" in RULES:  # pragma: no cover - a re-import in the same process
    cube = lambda x: apply("tape_test_cube", x)
else:
    cube = tg.custom_op("tape_test_cube", lambda x: x**3, lambda x: 3 * x**2)


def assert_close(actual, expected, what=""):
    """Equal to 1e-12, relative to the largest magnitude of the expected values (and at least 1)."""
    expected = np.asarray(expected, dtype=float)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


# =================================================================================================
# A random-graph strategy over every built-in operation (and one custom operation)
# =================================================================================================

UNARY = ("neg", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "sin", "cos", "softplus", "cube")
BINARY = ("+", "-", "*", "/", "**")
NARY = ("sum", "linear", "sse", "half_sse")
BOUNDED = ("tanh", "sigmoid", "sin", "cos")


@dataclass(frozen=True)
class Spec:
    """A random graph: leaves (inputs, params, constants) and steps over earlier nodes or numbers."""

    n_inputs: int
    params: tuple[float, ...]
    constants: tuple[float, ...]
    steps: tuple[tuple[str, int, tuple[object, ...]], ...]  # (op, variant, args: node index or float)


def _divide(variant, a):
    return a[0] / (a[1].sigmoid() + 0.5) if variant else 1.5 / (a[0] * a[0] + 0.5)


def _power(variant, a):
    if variant:
        return (a[0].sigmoid() + 0.5) ** a[1]  # a positive base, any exponent
    return a[0] ** 2.0 if variant == 0 else a[0] ** 3.0


def _linear(_variant, a):
    m = (len(a) - 1) // 2
    return tg.linear(a[:m], a[m : 2 * m], a[-1])


def _squared_error(op):
    return lambda _variant, a: apply(op, *a)


# op -> how a step applies it so that it stays inside its domain for operands in [-2, 2]
SAFE = {
    "/": _divide,
    "**": _power,
    "log": lambda _v, a: (a[0].sigmoid() + 0.1).log(),
    "sqrt": lambda _v, a: (a[0] * a[0] + 0.25).sqrt(),
    "cube": lambda _v, a: cube(a[0]),
    "neg": lambda _v, a: -a[0],
    "+": lambda _v, a: a[0] + a[1],
    "-": lambda _v, a: a[0] - a[1],
    "*": lambda _v, a: a[0] * a[1],
    "sum": lambda _v, a: tg.sum(a),
    "linear": _linear,
    "sse": _squared_error("sse"),
    "half_sse": _squared_error("half_sse"),
}
for _name in ("abs", "exp", "tanh", "sigmoid", "relu", "sin", "cos", "softplus"):
    SAFE[_name] = lambda _v, a, name=_name: getattr(a[0], name)()


def build(spec, x, params, constants):
    """The output Value of ``spec`` on leaf Values; every step's result feeds the output."""
    pool = [*x, *params, *constants]
    results = []
    for op, variant, args in spec.steps:
        a = [pool[i] if isinstance(i, int) else i for i in args]
        if op in ("+", "-", "*") and not any(isinstance(v, Value) for v in a):
            a[0] = pool[0]
        if op in (*UNARY, "sum", "linear", "/", "**"):
            a = [v if isinstance(v, Value) else tg.constant(v) for v in a]
        out = SAFE[op](variant, a)
        results.append(out)
        pool.append(out if op in BOUNDED else out.tanh())  # keep every pool value in [-2, 2]
    return tg.sum(results)


@st.composite
def specs(draw, max_steps=10):
    n_in = draw(st.integers(1, 3))
    params = tuple(draw(st.lists(st.floats(-2, 2, allow_subnormal=False), max_size=3)))
    constants = tuple(draw(st.lists(st.floats(-2, 2, allow_subnormal=False), max_size=2)))
    size = n_in + len(params) + len(constants)
    steps = []
    for _ in range(draw(st.integers(1, max_steps))):
        op = draw(st.sampled_from(UNARY + BINARY + NARY))
        node = st.integers(0, size - 1)
        operand = st.one_of(node, node, node, st.floats(-2, 2, allow_subnormal=False))
        if op in UNARY:
            args = (draw(node),)
        elif op in BINARY:
            args = (draw(node), draw(operand))
        elif op == "sum":
            args = tuple(draw(st.lists(operand, min_size=1, max_size=4)))
        elif op == "linear":
            m = draw(st.integers(0, 3))
            args = tuple(draw(st.lists(operand, min_size=2 * m + 1, max_size=2 * m + 1)))
        else:
            m = draw(st.integers(1, 3))
            args = tuple(draw(st.lists(node, min_size=2 * m, max_size=2 * m)))
        steps.append((op, draw(st.integers(0, 2)), args))
        size += 1
    return Spec(n_in, params, constants, tuple(steps))


def scalar_reference(fn, X, params, reduction="mean"):
    """Per-sample engine runs: (per-sample outputs, d L/d params, d L/d inputs per sample)."""
    share = 1.0 / len(X) if reduction == "mean" else 1.0
    for p in params:
        p.grad = 0.0
    outs, input_grads = [], []
    for row in X:
        x = [Value(float(v)) for v in row]
        out = fn(x)
        _refuse_kinks(out)
        if out.requires_grad:
            out.backward(share)
        outs.append(out.data)
        input_grads.append([v.grad for v in x])
    return np.array(outs), np.array([p.grad for p in params]), np.array(input_grads)


def _refuse_kinks(out):
    """Skip examples where a relu/abs input computed by a sum is within rounding of its kink."""
    for node in tg.toposort(out):
        if node.op in ("relu", "abs") and node.inputs[0].inputs and abs(node.inputs[0].data) < 1e-9:
            assume(condition=False)


def batch_points(seed, n, d):
    return np.random.default_rng(seed).uniform(-2.0, 2.0, size=(n, d))


@settings(max_examples=120)
@given(specs(), st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_batch_replay_equals_the_scalar_engine_on_random_graphs(spec, seed, n):
    params = [Value(v, f"w{j}") for j, v in enumerate(spec.params)]
    constants = [tg.constant(v) for v in spec.constants]

    def fn(x):
        return build(spec, x, params, constants)

    X = batch_points(seed, n, spec.n_inputs)
    outs, dparams, dinputs = scalar_reference(fn, X, params)
    tape = trace(fn, X[0], params=params, check="none")
    result = tape.replay(X, inputs=True)
    assert_close(result.outputs, outs, "outputs")
    assert_close(result.loss, outs.mean(), "loss")
    assert_close(result.grads.params, dparams, "d/dparams")
    assert_close(result.grads.inputs[0], dinputs, "d/dinputs")
    value, grads = tape.run(X[-1])  # the pure-Python interpreter of the same list
    assert_close(value, outs[-1])
    assert_close(grads.params, scalar_reference(fn, X[-1:], params)[1])


@settings(max_examples=60)
@given(specs(max_steps=6), st.integers(0, 2**32 - 1))
def test_sum_reduction_and_explicit_seeds(spec, seed):
    params = [Value(v) for v in spec.params]
    constants = [tg.constant(v) for v in spec.constants]

    def fn(x):
        return build(spec, x, params, constants)

    X = batch_points(seed, 4, spec.n_inputs)
    outs, dparams, _ = scalar_reference(fn, X, params, reduction="sum")
    tape = trace(fn, X[0], params=params, check="none")
    loss, grads = tape.value_and_grad(X, reduction="sum")
    assert_close(loss, outs.sum())
    assert_close(grads.params, dparams)
    tape.forward(X)
    assert_close(tape.backward(seed=[1.0, 1.0, 1.0, 1.0]).params, dparams)


@settings(max_examples=80)
@given(specs(), st.integers(0, 2**32 - 1), st.integers(2, 5), st.lists(st.booleans(), min_size=2, max_size=4))
def test_replays_in_the_same_arrays_agree_whatever_came_before(spec, seed, n, modes):
    """The generated backward writes each gradient row it uses afresh: nothing of an earlier replay
    (another batch size, with or without input gradients) leaks into the next one."""
    params = [Value(v) for v in spec.params]
    constants = [tg.constant(v) for v in spec.constants]

    def fn(x):
        return build(spec, x, params, constants)

    X = batch_points(seed, n, spec.n_inputs)
    references = {size: scalar_reference(fn, X[:size], params) for size in (n, n - 1)}
    tape = trace(fn, X[0], params=params, check="none")
    for k, inputs in enumerate(modes):
        size = n - k % 2
        outs, dparams, dinputs = references[size]
        result = tape.replay(X[:size], inputs=inputs)
        assert_close(result.outputs, outs, "outputs")
        assert_close(result.grads.params, dparams, "d/dparams")
        if inputs:
            assert_close(result.grads.inputs[0], dinputs, "d/dinputs")


def test_the_program_is_the_tables_array_forms_written_into_their_rows():
    """print(tape.program()) shows the plan as Python: each kernel a line or a few, from the table."""
    w = Value(0.5)
    tape = trace(lambda x: (w * x[0] + x[1]).relu(), np.zeros(2), params=[w], check="none")
    program = tape.program()
    assert program.startswith("def rows_forward(S):")  # the views of its rows, made once
    assert "\ndef forward(S):" in program
    assert "def backward_0(S, G):" in program
    assert "def backward_1(S, G):" in program
    assert "_np.maximum(" in program  # relu's forward, "a if a > 0.0 else 0.0": where(a > 0.0, a, 0.0)
    assert "> 0.0" in program  # ... and its derivative, the mask
    assert "out=" in program  # a product written into its rows, no array in between
    for k, kernel in enumerate(tape.kernels().splitlines(), 1):
        assert f"# kernel {k}, {kernel}" in program
    assert tape.program("forward") + "\n\n" + tape.program("backward_0") in program
    with pytest.raises(ValueError, match="'forward', 'backward_0', 'backward_1' or None"):
        tape.program("backward")
    X = np.array([[1.0, 2.0], [-3.0, 0.5]])
    result = tape.replay(X, inputs=True)
    assert result.outputs.tolist() == [2.5, 0.0]
    assert result.grads.params.tolist() == [0.5 * (1.0 + 0.0)]  # mean over the batch of x0 * relu'
    assert result.grads.inputs[0].tolist() == [[0.25, 0.5], [0.0, 0.0]]  # d/dx of the mean


def test_relu_as_one_maximum_gives_the_engines_numbers_to_the_sign_of_zero():
    """The program writes where(a > 0, a, 0) as maximum(a, 0): a tie gives 0.0 in both, never -0.0."""
    tape = trace(lambda x: x.relu() * -1.0, 1.0, check="none")
    assert "_np.maximum(" in tape.program()
    points = [-0.0, 0.0, -1e-300, 2.5, -3.0]
    outs = tape.forward(points)
    expected = [(tg.Value(p).relu() * -1.0).data for p in points]
    assert [math.copysign(1.0, v) for v in outs] == [math.copysign(1.0, v) for v in expected]
    assert outs.tolist() == expected


def engine_gradients(fn, X, params):
    """d mean_i fn(x_i) / d params by the scalar engine (fn may return (loss, aux))."""
    for p in params:
        p.grad = 0.0
    for row in np.asarray(X, dtype=float):
        out = fn([Value(float(v)) for v in row])
        (out[0] if isinstance(out, tuple) else out).backward(1.0 / len(X))
    return [p.grad for p in params]


def test_a_derivative_that_raises_mid_pass_leaves_no_row_for_the_next_replay():
    inverse = tg.custom_op("tape_test_inverse", lambda a, b: a * b, lambda a, b: (1.0 / a, a))
    p = Value(1.5, "p")

    def fn(x):
        return (x[0] * x[0]).sqrt() + inverse(x[0], p)  # sqrt'(0) is inf; d/da = 1/a raises at 0

    tape = trace(fn, [1.0], params=[p], check="none")
    good, bad = np.array([[1.0], [2.0]]), np.array([[0.0], [2.0]])
    with pytest.raises(NonDifferentiableError, match="tape_test_inverse"):
        tape.value_and_grad(bad, inputs=True)
    assert tape.value_and_grad(good)[1].params.tolist() == engine_gradients(fn, good, [p])


def test_a_zero_gradient_is_0_0_as_backward_gives_it_not_minus_0_0():
    p = Value(1.0, "p")
    tape = trace(lambda x: p * x[0] + x[1] * 0.0, [1.0, 1.0], params=[p], check="none")
    result = tape.replay(np.array([[-0.0, 1.0]]), inputs=True)
    assert math.copysign(1.0, result.grads.params[0]) == 1.0
    assert [math.copysign(1.0, g) for g in result.grads.inputs[0][0]] == [1.0, 1.0]


def test_a_gradient_sum_that_overflows_names_the_parameter_as_backward_does():
    p = Value(1.0, "p")
    tape = trace(lambda x: p * x[0] - x[0], [1.0], params=[p], check="none")
    with pytest.raises(OperationOverflowError, match="accumulated in leaf 'p' is too large"):
        tape.value_and_grad(np.array([[1e308], [1e308]]), reduction="sum")
    tape.forward(np.array([[1e200]]))  # one contribution overflows: the operation is named, as backward does
    with pytest.raises(OperationOverflowError, match=r"backward through \* .*too large.*on sample 0"):
        tape.backward(seed=[1e200])
    q = Value(1e-300, "q")

    def twice(x):
        return (q * x) * 1e308 + (q * x) * 1e308  # two finite contributions to q overflow in one sample

    with pytest.raises(OperationOverflowError) as caught:
        twice(Value(1.0)).backward()
    engine_message = str(caught.value)
    assert "backward through *" in engine_message
    with pytest.raises(OperationOverflowError, match=re.escape(engine_message)):
        trace(twice, 1.0, params=[q], check="none").value_and_grad(np.array([1.0]))


def test_operations_whose_gradient_is_not_needed_never_fail_a_replay():
    """A constant exponent beside a param's, an aux output at a singularity: not differentiated, as in backward."""
    p, q = Value(2.0, "p"), Value(1.0, "q")

    def powers(x):
        return (x[0] * 1.0) ** 2.0 + x[0].sigmoid() ** p  # d/d(exponent) of the constant 2.0 is nan at -1

    X = np.array([[1.0], [-1.0]])
    result = trace(powers, [1.0], params=[p], check="none").replay(X)
    assert_close(result.grads.params, engine_gradients(powers, X, [p]))

    def with_aux(x):
        return (p * x[0]).sqrt(), [(q * x[1]).sqrt()]  # the aux is reported, sqrt'(0) never needed

    X = np.array([[4.0, 0.0], [1.0, 1.0]])
    tape = trace(with_aux, [1.0, 1.0], params=[p, q], check="none")
    for inputs in (False, True):
        result = tape.replay(X, inputs=inputs)
        assert_close(result.grads.params, engine_gradients(with_aux, X, [p, q]))
        assert result.aux[:, 0].tolist() == [0.0, 1.0]

    def blame(x):
        v = p * x[0]
        return v.sqrt(), [v ** 0.5]

    with pytest.raises(NonDifferentiableError, match=r"^sqrt: .*replaying v1 = sqrt\(v0\) on sample 1"):
        trace(blame, [1.0], params=[p], check="none").value_and_grad(np.array([[1.0], [0.0]]))


def test_a_failed_backward_leaves_nothing_behind_for_the_next_replay():
    w = Value(1.0)
    tape = trace(lambda x: (w * x).sqrt() + w * x, 1.0, params=[w], check="none")
    with pytest.raises(NonDifferentiableError, match=r"sqrt.*sample 1"):
        tape.value_and_grad([1.0, 0.0, 4.0])
    loss, grads = tape.value_and_grad([1.0, 4.0])
    assert loss == (1.0 + 1.0 + 2.0 + 4.0) / 2
    assert grads.params.tolist() == [(0.5 + 1.0 + 0.25 * 4.0 / 2.0 * 2.0 + 4.0) / 2]


def test_generated_expressions_replay_like_the_engine():
    testing = pytest.importorskip("tinygrad_bp.testing")

    @settings(max_examples=80)
    @given(testing.expressions(max_leaves=3, max_ops=8), st.integers(0, 2**32 - 1), st.integers(0, 2))
    def check(expr, seed, n_params):
        fn, params, X = batch_case(expr, seed, n_params)
        outs, dparams, dinputs = scalar_reference(fn, X, params)
        result = trace(fn, X[0], params=params, check="none").replay(X, inputs=True)
        assert_close(result.outputs, outs)
        assert_close(result.grads.params, dparams)
        assert_close(result.grads.inputs[0], dinputs)

    check()


def test_every_builtin_operation_has_an_array_form():
    """The tape's kernels are the rule table's array forms (tests/test_rules.py checks they agree)."""
    for name in BUILTIN:
        assert RULES[name].array() is not None, name


# =================================================================================================
# MLPs, losses, the articles' example, training
# =================================================================================================


def scalar_objective(model, X, y, loss_name, penalty=None):
    """The batch loss and gradients by the scalar engine with the library's own loss functions."""
    model.zero_grad()
    total = 0.0
    for x, t in zip(X.tolist(), y.tolist()):
        out = model(x)
        outs = out if isinstance(out, list) else [out]
        if loss_name == "mse":
            loss = losses.mse_loss(out, t)
        elif loss_name == "half_sse":
            loss = losses.half_sse(out, t)
        elif loss_name == "hinge":
            loss = losses.hinge_loss(outs, [t])
        elif loss_name == "bce":
            loss = losses.binary_cross_entropy(out, t)
        elif loss_name == "bce_with_logits":
            loss = losses.binary_cross_entropy_with_logits(out, t)
        else:
            loss = losses.cross_entropy(outs, int(t))
        if penalty is not None:
            loss = loss + penalty()
        loss.backward(1.0 / len(X))
        total += loss.data / len(X)
    return total, np.array([p.grad for p in model.parameters()])


LOSS_CASES = [
    ("mse", [3, 2], "tanh", "linear", "vector"),
    ("mse", [4, 3], "relu", "linear", "class"),
    ("half_sse", [3, 1], "sigmoid", "sigmoid", "scalar"),
    ("hinge", [4, 1], "relu", "linear", "sign"),
    ("bce", [3, 1], "tanh", "sigmoid", "binary"),
    ("bce_with_logits", [3, 1], "relu", "linear", "binary"),
    ("cross_entropy", [4, 3], "tanh", "linear", "class"),
]


def targets(kind, n, k, rng):
    if kind == "vector":
        return rng.normal(size=(n, k))
    if kind == "scalar":
        return rng.uniform(size=n)
    if kind == "sign":
        return rng.choice([-1.0, 1.0], size=n)
    if kind == "binary":
        return rng.choice([0.0, 1.0], size=n)
    return rng.integers(0, k, size=n).astype(float)


@pytest.mark.parametrize(("loss_name", "nouts", "activation", "output_activation", "kind"), LOSS_CASES)
def test_batch_objective_equals_the_scalar_engine_for_every_loss(
    loss_name, nouts, activation, output_activation, kind
):
    rng = np.random.default_rng(7)
    model = tg.MLP(3, nouts, activation=activation, output_activation=output_activation, seed=3)
    X = rng.normal(size=(9, 3))
    y = targets(kind, 9, nouts[-1], rng)
    if kind == "class" and loss_name == "mse":
        reference_y = np.eye(nouts[-1])[y.astype(int)]
        expected = scalar_objective(model, X, reference_y, "mse")
    else:
        expected = scalar_objective(model, X, y, loss_name)
    model.zero_grad()
    objective = BatchObjective(model, loss_name, check="first")
    result = objective(X, y)
    assert_close(result.loss, expected[0])
    assert_close([p.grad for p in model.parameters()], expected[1])
    assert result.outputs.shape == (9, nouts[-1])


def test_mlp_with_a_penalty_counts_it_once_per_batch():
    rng = np.random.default_rng(1)
    model = tg.MLP(2, [16, 16, 1], activation="relu", seed=5)
    params = model.parameters()
    X, y = rng.normal(size=(30, 2)), rng.choice([-1.0, 1.0], size=30)

    def penalty():
        return losses.l2_penalty(params, 1e-4)

    expected = scalar_objective(model, X, y, "hinge", penalty)
    model.zero_grad()
    loss = batch_loss_and_grad(model, X, y, "hinge", penalty=penalty, check="none")
    assert_close(loss, expected[0])
    assert_close([p.grad for p in params], expected[1])
    with pytest.raises(ValueError, match="penalty"):
        BatchObjective(model, "hinge", penalty=penalty, reduction="sum")


def test_mlp_64_32_10_layers_become_matrix_products_and_match_the_engine():
    rng = np.random.default_rng(2)
    model = tg.MLP(64, [32, 10], seed=0)
    X, Y = rng.normal(size=(16, 64)), rng.normal(size=(16, 10))
    expected = scalar_objective(model, X, Y, "mse")
    objective = BatchObjective(model, "mse", check="none")
    tape, result = objective.replay(X, Y)
    assert_close(result.loss, expected[0])
    assert_close(result.grads.params, expected[1])
    plan = tape.kernels().splitlines()
    assert len(plan) == 5
    assert "32 x linear" in plan[0]
    assert "(32x64) @ (64xB) matrix product" in plan[0]


def test_the_articles_2_2_2_example_gives_the_reference_gradients_and_step():
    # REFERENCE.md section 4: biases shared per layer and not updated (constants)
    i1, i2, t1, t2 = (Value(v) for v in (0.05, 0.10, 0.01, 0.99))
    w = [Value(v, f"w{k + 1}") for k, v in enumerate((0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55))]
    b1, b2 = tg.constant(0.35), tg.constant(0.60)
    h1 = tg.linear(w[0:2], [i1, i2], b1).sigmoid()
    h2 = tg.linear(w[2:4], [i1, i2], b1).sigmoid()
    o1 = tg.linear(w[4:6], [h1, h2], b2).sigmoid()
    o2 = tg.linear(w[6:8], [h1, h2], b2).sigmoid()
    E = losses.half_sse([o1, o2], [t1, t2])
    tape = Tape.record(E, inputs=[i1, i2, t1, t2], params=w)
    text = str(tape)
    assert "v0 = linear(p0, p1, x[0], x[1], 0.35)" in text
    assert "v1 = sigmoid(v0)" in text
    assert text.splitlines()[-1].startswith("return v")
    loss, grads = tape.value_and_grad([0.05, 0.10, 0.01, 0.99])
    assert loss == pytest.approx(0.298371108760003, abs=1e-15)
    from tinygrad_bp.worked_example import GRADIENTS, UPDATED_WEIGHTS  # REFERENCE 4, see test_articles

    np.testing.assert_allclose(grads.params, GRADIENTS, atol=1e-15)
    optimizer = tg.SGD(w, lr=0.5)
    grads.add_to(w)
    optimizer.step()
    np.testing.assert_allclose([p.data for p in w], UPDATED_WEIGHTS, atol=1e-15)
    assert tape.forward([0.05, 0.10, 0.01, 0.99]) == pytest.approx(
        0.291027773693599, abs=1e-15
    )  # fresh params


def test_training_with_the_tape_follows_the_scalar_engine_trajectory():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(12, 2)), rng.normal(size=(12, 1))
    fast, slow = (tg.MLP(2, [5, 1], activation="tanh", seed=11) for _ in range(2))
    opt_fast, opt_slow = tg.Adam(fast.parameters(), lr=0.05), tg.Adam(slow.parameters(), lr=0.05)
    objective = BatchObjective(fast, "mse")
    for _ in range(5):
        opt_fast.zero_grad()
        objective(X, y)
        opt_fast.step()
        opt_slow.zero_grad()
        scalar_objective(slow, X, y, "mse")
        opt_slow.step()
    np.testing.assert_allclose(
        [p.data for p in fast.parameters()], [p.data for p in slow.parameters()], rtol=1e-10, atol=1e-12
    )


def test_gradients_accumulate_like_backward_or_are_set():
    rng = np.random.default_rng(5)
    model = tg.MLP(3, [4, 1], seed=1)
    X, y = rng.normal(size=(6, 3)), rng.normal(size=6)
    objective = BatchObjective(model, "mse")
    model.zero_grad()
    objective(X, y)
    once = np.array([p.grad for p in model.parameters()])
    objective(X, y)
    np.testing.assert_array_equal([p.grad for p in model.parameters()], 2 * once)
    objective(X, y, accumulate=False)
    np.testing.assert_array_equal([p.grad for p in model.parameters()], once)


def test_batch_loss_and_grad_reuses_its_tape():
    model = tg.MLP(2, [3, 1], seed=0)
    X, y = np.ones((4, 2)), np.zeros(4)
    batch_loss_and_grad(model, X, y)
    objective = next(iter(model._tinygrad_bp_objectives.values()))  # the cache lives on the model
    first = objective.tape(X, y)
    batch_loss_and_grad(model, X, y)
    assert objective.tape(X, y) is first


def test_batch_loss_and_grad_keeps_no_model_alive():
    import gc
    import weakref

    X, y = np.ones((4, 2)), np.zeros(4)
    model = tg.MLP(2, [3, 1], seed=0)
    batch_loss_and_grad(model, X, y)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_the_tape_carries_no_loss_of_its_own():
    library = {getattr(losses, name) for name in losses.__all__}
    assert all(fn in library for fn in LOSSES.values()), LOSSES
    assert LOSSES["cross_entropy"] is losses.cross_entropy


def test_every_named_loss_traces_without_reading_values():
    for name in LOSSES:
        out = "sigmoid" if name == "bce" else "linear"
        model = tg.MLP(2, [3] if name in ("mse", "cross_entropy") else [1], output_activation=out, seed=0)
        y = np.array([1.0]) if name != "hinge" else np.array([-1.0])
        tape = BatchObjective(model, name, check="none").tape(np.zeros((1, 2)), y)
        assert tape.escapes == (), name
        assert tape.guards == (), name


def test_optimizer_updates_are_seen_by_the_next_replay():
    w = Value(2.0)
    tape = trace(lambda x: w * x, 1.0, params=[w], check="none")
    assert tape.forward(3.0) == 6.0
    w.data = -1.0
    assert tape.forward(3.0) == -3.0
    k = tg.constant(10.0)
    tape = trace(lambda x: k * x, 1.0, check="first")
    k.data = 5.0  # a constant the user holds is read fresh too, and the check agrees
    assert tape.forward(3.0) == 15.0


# =================================================================================================
# Teaching: the Wengert list, the plan, single samples, input gradients
# =================================================================================================


def test_printing_shows_one_line_per_operation():
    model = tg.MLP(2, [1], output_activation="sigmoid", seed=0)
    tape = trace(lambda x, y: (model(x) - y) ** 2, [0.5, -1.0], 0.25, params=model.parameters())
    lines = str(tape).splitlines()
    assert lines[0] == "# tape: inputs x[0], x[1], y; params p0..p2; 4 instructions, 4 kernels"
    assert "#   p0 = layer1.neuron0.w0" in lines
    assert lines[-5:] == [
        "v0 = linear(p0, p1, x[0], x[1], p2)",
        "v1 = sigmoid(v0)",
        "v2 = v1 - y",
        "v3 = v2 ** 2.0",
        "return v3",
    ]
    assert len(tape) == 4
    assert repr(tape).startswith("<Tape: 3 inputs, 3 params, 4 instructions")
    assert tape.signature[-2:] == (("c", 2.0), ("**", (8, 9)))


def test_single_sample_replay_and_input_gradients():
    def fn(x, t):
        return (x[0] * x[1] - t).tanh()

    tape = trace(fn, [1.0, 2.0], 0.5)
    assert tape.params == []
    assert tape.shapes == ((2,), ())
    out = tape.forward([0.3, -0.7], 0.1)
    assert isinstance(out, float)
    grads = tape.backward(inputs=True)
    x = [Value(0.3), Value(-0.7)]
    t = Value(0.1)
    ref = fn(x, t)
    ref.backward()
    assert out == pytest.approx(ref.data, rel=1e-15)
    np.testing.assert_allclose(grads.inputs[0], [x[0].grad, x[1].grad], rtol=1e-14)
    assert float(grads.inputs[1]) == pytest.approx(t.grad, rel=1e-14)
    batch = tape.value_and_grad([[0.3, -0.7], [1.0, 1.0]], [0.1, 0.2], inputs=True)[1]
    assert batch.inputs[0].shape == (2, 2)
    assert batch.inputs[1].shape == (2,)


def test_aux_outputs_are_returned_not_differentiated():
    w = Value(0.5)

    def fn(x):
        y = (w * x).tanh()
        return y * y, [y]

    tape = trace(fn, 1.0, params=[w])
    outs = tape.forward(np.array([1.0, 2.0]))
    np.testing.assert_allclose(tape.aux()[:, 0] ** 2, outs)
    assert tape.replay([1.0, 2.0]).aux.shape == (2, 1)


def test_custom_ops_fall_back_to_element_by_element_evaluation():
    tape = trace(lambda x: cube(x) + x, 2.0, check="none")
    assert "custom, element by element" in tape.kernels()
    loss, grads = tape.value_and_grad([1.0, 2.0, -3.0], inputs=True)
    assert loss == pytest.approx((1 + 1 + 8 + 2 - 27 - 3) / 3)
    np.testing.assert_allclose(grads.inputs[0], np.array([4.0, 13.0, 28.0]) / 3)


# =================================================================================================
# No silent staleness
# =================================================================================================


def test_value_dependent_control_flow_is_caught_on_any_sample():
    def fn(x):
        return x * 2.0 if x > 0 else -x  # a Python branch on a value

    tape = trace(fn, 1.0, check="none")
    assert len(tape.guards) == 1
    np.testing.assert_allclose(tape.forward([1.0, 2.0, 3.0]), [2.0, 4.0, 6.0])
    with pytest.raises(TapeMismatchError, match=r"compared x > 0\.0 and got True; sample 2 \(x = -3\.0\)"):
        tape.forward([1.0, 2.0, -3.0])
    with pytest.raises(TapeMismatchError, match="compared"):
        tape.run(-1.0)


def test_comparisons_between_nodes_and_with_parameters_are_guarded():
    w = Value(0.5)

    def fn(x):
        h = x.tanh()
        return max(h, w * x)  # compares two nodes

    tape = trace(fn, 1.0, params=[w], check="none")  # 0.5 * x > tanh(x) was False
    tape.forward([1.0, 0.5])
    with pytest.raises(TapeMismatchError, match=r"compared v\d > v\d and got False; sample 1"):
        tape.forward([1.0, 3.0])  # 1.5 > tanh(3): the other branch
    w.data = 5.0  # an optimizer step flips the branch for every sample
    with pytest.raises(TapeMismatchError):
        tape.forward([1.0])


@pytest.mark.parametrize(
    "read",
    [lambda v: v.data, float, lambda v: v.item(), lambda v: float(format(v, ".3f")), lambda v: v.detach()],
    ids=["data", "float", "item", "format", "detach"],
)
def test_reading_a_per_sample_value_needs_check_all(read):
    def fn(x):
        y = x * 3.0
        return y * read(y)

    with pytest.raises(TapeMismatchError, match="check='all'"):
        trace(fn, 1.0)
    tape = trace(fn, 1.0, check="all")
    assert tape.escapes
    with pytest.raises(TapeMismatchError, match="a constant"):
        tape.forward([1.0, 2.0])  # re-tracing sample 1 records a different constant
    assert tape.forward([1.0, 1.0]).tolist() == [9.0, 9.0]
    with pytest.raises(TapeMismatchError, match="check='all'"):
        tape.forward([1.0], check="first")


def test_the_library_cross_entropy_reads_no_values_so_a_tape_replays_it_unchecked():
    # it used to shift by max(z.data) in Python, which a tape could only replay re-tracing every
    # sample; as one row of the table its shift is inside the operation, on every sample
    logits = tg.MLP(2, [3], seed=0)
    tape = trace(lambda x, t: losses.cross_entropy(logits(x), t), [0.0, 0.0], [0.0, 1.0, 0.0], check="none")
    X = np.array([[0.5, -1.0], [2.0, 0.25], [-3.0, 1.5]])
    T = np.eye(3)[[1, 0, 2]]
    out = tape.forward(X, T)
    for x, t, value in zip(X.tolist(), [1, 0, 2], out.tolist()):
        assert value == pytest.approx(losses.cross_entropy(logits(x), t).data, rel=1e-14)
    assert [ins.op for ins in tape.instructions].count("cross_entropy") == 1


def test_only_a_weighted_sum_is_described_as_a_matrix_product():
    tape = trace(lambda z: losses.cross_entropy(list(z), 1), np.zeros(3), check="none")
    assert tape.kernels() == "level 1: 1 x cross_entropy (per sample), n=3: every node reads the same group, broadcast"


@pytest.mark.parametrize(
    ("logits", "target"), [([1e308, -1e308], 0), ([1e16, 1e16], 1), ([-1e308, -1e308], 1), ([1e8, 1e8 + 1.0], 0)]
)
def test_a_tape_keeps_cross_entropys_digits_at_huge_logits(logits, target):
    tape = trace(lambda z, t: losses.cross_entropy(list(z), t), [0.0, 0.0], [1.0, 0.0], check="none")
    z = [Value(v) for v in logits]
    loss = losses.cross_entropy(z, target)
    loss.backward()
    replay = tape.replay(np.array([logits]), np.eye(2)[[target]])
    assert replay.outputs.tolist() == [loss.data]
    if math.isfinite(logits[0] - logits[1]):  # else d/dt of the other class, m - z + log s, overflows
        replay = tape.replay(np.array([logits]), np.eye(2)[[target]], inputs=True)
        assert replay.grads.inputs[0].tolist() == [[x.grad for x in z]]


def test_a_batch_loss_too_large_for_a_float_is_an_error_not_inf():
    tape = trace(lambda x: x * 1e308, 1.0, check="none")
    with pytest.raises(OperationOverflowError, match="too large for a float"):
        tape.replay(np.array([1.5, 1.5]), reduction="sum")


def test_a_parameter_read_needs_at_least_check_first():
    w = Value(1.0)

    def fn(x):
        return x * w if w.data > 0 else x - w

    with pytest.raises(TapeMismatchError, match="check='first'"):
        trace(fn, 1.0, params=[w], check="none")
    tape = trace(fn, 1.0, params=[w], check="first")
    tape.forward([2.0])
    w.data = -1.0
    with pytest.raises(TapeMismatchError, match=r"node 2 of 3 was \* .*now -"):
        tape.forward([2.0])


def test_a_no_grad_block_inside_fn_needs_check_all():
    def fn(x):
        with tg.no_grad():
            k = x * 2.0
        return x * k

    with pytest.raises(TapeMismatchError, match="no_grad"):
        trace(fn, 1.0)


def test_hidden_python_state_is_caught_by_re_tracing():
    state = {"act": "tanh"}

    def fn(x):
        return getattr(x, state["act"])()

    tape = trace(fn, 0.5)  # check="first" by default
    tape.forward([0.5, 1.0])
    state["act"] = "sigmoid"
    with pytest.raises(TapeMismatchError, match=r"was tanh .* now sigmoid"):
        tape.forward([0.5, 1.0])
    unchecked = trace(fn, 0.5, check="none")  # documented: check="none" trusts fn
    state["act"] = "tanh"
    assert unchecked.forward(0.0) == pytest.approx(0.5)


def test_a_changed_model_is_refused():
    model = tg.MLP(2, [2, 1], seed=0)
    X, y = np.ones((3, 2)), np.zeros(3)
    objective = BatchObjective(model, "mse")
    objective(X, y)
    model.layers[0].neurons[0].w[0] = Value(0.3)  # a parameter replaced
    with pytest.raises(TapeMismatchError, match="reset"):
        objective(X, y)
    objective.reset()
    objective(X, y)
    tape = trace(lambda x: model(x), [1.0, 1.0], params=model.parameters())
    model.layers[0].neurons[0].w[1] = Value(0.1)
    with pytest.raises(TapeMismatchError, match="requires grad"):
        tape.forward([1.0, 2.0])
    with pytest.raises(TapeMismatchError, match="not the tape's"):
        tape.forward([1.0, 2.0], params=tg.MLP(2, [2, 1], seed=0).parameters(), check="none")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1.0, 2.0],), "2 argument"),
        (([1.0, 2.0, 3.0], 1.0), r"shape \(3,\)"),
        (([[1.0, 2.0]], 1.0), "every argument is one sample or every argument is a batch"),
        (([[1.0, 2.0], [1.0, 2.0]], [1.0]), "different numbers of samples"),
        ((np.ones((2, 2, 1)), [1.0, 2.0]), "shape"),
        ((np.ones((0, 2)), np.ones(0)), "empty"),
    ],
)
def test_malformed_inputs_are_refused(args, match):
    tape = trace(lambda x, y: x[0] * x[1] + y, [1.0, 2.0], 3.0)
    with pytest.raises(TapeMismatchError, match=match):
        tape.forward(*args)


def test_bad_numbers_and_bad_options_are_refused():
    tape = trace(lambda x: x * 2.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        tape.forward([1.0, math.nan])
    with pytest.raises(TypeError, match="numbers"):
        tape.forward(["a"])
    with pytest.raises(ValueError, match="check must be"):
        tape.forward(1.0, check="sometimes")
    with pytest.raises(ValueError, match="reduction"):
        tape.value_and_grad([1.0], reduction="max")
    with pytest.raises(TapeMismatchError, match="call forward"):
        trace(lambda x: x * 2.0, 1.0).backward()
    with pytest.raises(TypeError, match="one Value"):
        trace(lambda x: [x, x], 1.0)
    with pytest.raises(ValueError, match="unknown loss"):
        BatchObjective(tg.MLP(1, [1]), "l1")


def test_record_is_unchecked_and_needs_every_grad_leaf_listed():
    x, w, v = Value(1.0), Value(2.0), Value(3.0)
    out = x * w * v
    with pytest.raises(ValueError, match="neither an input nor one of the tape's params"):
        Tape.record(out, [x], params=[w])
    tape = Tape.record(out, [x])  # params discovered: w, v
    assert tape.params == [w, v]
    assert tape.forward([2.0]) == 12.0
    with pytest.raises(TapeMismatchError, match=r"Tape\.record"):
        tape.forward([2.0], check="first")
    with pytest.raises(ValueError, match="leaf"):
        Tape.record(out, [x * w])


# =================================================================================================
# Errors of a replay: the engine's own exceptions, naming the operation and the sample
# =================================================================================================


def test_domain_errors_name_the_operation_and_the_sample():
    tape = trace(lambda x: x.log(), 1.0, check="none")
    with pytest.raises(DomainError, match=r"log.*-2\.0.*sample 1"):
        tape.forward([1.0, -2.0])
    tape = trace(lambda x: 1.0 / x, 1.0, check="none")
    with pytest.raises(ZeroDivisionInOperationError, match="sample 0"):
        tape.forward([0.0])
    tape = trace(lambda x: x.exp(), 1.0, check="none")
    with pytest.raises(OperationOverflowError, match="exp"):
        tape.forward([1.0, 1000.0])
    tape = trace(lambda x: (x * x).sqrt(), 1.0, check="none")
    tape.forward([0.0])
    assert tape.backward().params.size == 0  # nothing needs a gradient: nothing to fail
    with pytest.raises(NonDifferentiableError, match=r"sqrt.*sample 0"):
        tape.backward(inputs=True)
    w = Value(0.0)
    with pytest.raises(NonDifferentiableError, match="sqrt"):
        trace(lambda x: (w * x).sqrt(), 1.0, params=[w], check="none").value_and_grad([1.0, 2.0])
    with pytest.raises(DomainError, match=r"tape_test_cube|log"):
        trace(lambda x: cube(x).log(), 1.0, check="none").forward([-1.0])


# =================================================================================================
# The watchers: restored after a trace, blind to other threads
# =================================================================================================


def test_watchers_are_removed_after_a_trace_even_when_fn_fails():
    original = Value.__dict__["__lt__"]
    original_data = Value.__dict__["data"]

    def fails(_x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        trace(fails, 1.0)
    assert Value.__dict__["__lt__"] is original
    assert Value.__dict__["data"] is original_data
    assert tg.no_grad.__enter__.__qualname__ == "no_grad.__enter__"


def test_other_threads_comparisons_are_not_recorded():
    inside, done = threading.Event(), threading.Event()

    def other():
        inside.wait()
        a, b = Value(1.0), Value(2.0)
        _ = (a < b, a.data, float(b))
        done.set()

    thread = threading.Thread(target=other)
    thread.start()

    def fn(x):
        inside.set()
        done.wait(5)
        return x * 2.0

    tape = trace(fn, 1.0, check="none")
    thread.join()
    assert tape.guards == ()
    assert tape.escapes == ()


# =================================================================================================
# The benchmark's smoke run
# =================================================================================================


@pytest.mark.slow
def test_benchmark_quick_run_prints_the_targets():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_tape.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "(c) at most 2x hand-written numpy, check=none" in done.stdout
    assert "agreement of the tape with the scalar engine" in done.stdout


def test_power_derivatives_at_the_edges_match_the_engine():
    import tinygrad_bp as tg
    from tinygrad_bp.errors import NonDifferentiableError

    p = Value(2.0)
    tape = trace(lambda x: x**p, -2.0, params=[p])
    with pytest.raises(NonDifferentiableError, match=r"\*\*"):
        tape.value_and_grad(np.array([-2.0, -3.0]))  # d/dp (-2)^p does not exist
    w = Value(0.0)
    tape = trace(lambda x: (x * w) ** 0.0 + x * w, 1.0, params=[w])
    _, grads = tape.value_and_grad(np.array([1.0, 2.0]))
    scalar = [tg.grad((Value(x) * w) ** 0.0 + Value(x) * w, [w])[0] for x in (1.0, 2.0)]
    assert grads.params[0] == pytest.approx(sum(scalar) / 2)


@pytest.mark.parametrize(
    ("fn", "how"),
    [
        (lambda x: x * tg.grad(x * x, [x])[0], r"grad\(\)"),  # the attack's example: [2, 4, 6] for [2, 8, 18]
        (lambda x: (x * x) if (x * x) else x, "__bool__"),  # `if loss:` reads the data  # noqa: FURB110 - the `if` is the point
    ],
)
def test_values_read_out_through_grad_or_truthiness_are_never_frozen_into_the_tape(fn, how):
    """Issue 12: such a tape used to replay with the traced sample's number, even with check='none'."""
    for check in ("none", "first"):
        with pytest.raises(TapeMismatchError, match=how):
            trace(fn, 1.0, check=check)


def test_a_backward_pass_and_a_grad_read_inside_fn_are_escapes():
    def uses_backward(x):
        y = x * x
        y.backward()
        return x * x.grad

    with pytest.raises(TapeMismatchError, match=r"backward\(\)"):
        trace(uses_backward, 1.0, check="none")


def test_tracing_swaps_nothing_on_value():
    """The tape watches a traced fn through the value layer's explicit hook (value.observed), not by
    replacing Value's methods: while fn runs, Value and no_grad are exactly what they were."""
    names = ("data", "grad", "__lt__", "__le__", "__gt__", "__ge__", "__float__", "item", "detach", "__bool__")
    before = {name: Value.__dict__[name] for name in names}
    enter = tg.no_grad.__enter__
    seen = {}

    def fn(x):
        seen.update({name: Value.__dict__[name] for name in names})
        seen["enter"] = tg.no_grad.__enter__
        return x * x

    trace(fn, 1.0)
    assert seen == {**before, "enter": enter}


def test_another_thread_is_not_observed_while_one_traces():
    import threading

    reads = []
    started, release = threading.Event(), threading.Event()

    def fn(x):
        started.set()
        release.wait(5)
        return x * 2.0

    def other():
        started.wait(5)
        v = Value(3.0)
        reads.append(float(v) + v.data)  # would be an escape if this thread were observed
        release.set()

    t = threading.Thread(target=other)
    t.start()
    tape = trace(fn, 1.0, check="none")
    t.join()
    assert reads == [6.0]
    assert tape.escapes == ()


def test_the_tape_packages_own_example_runs_as_printed():
    import doctest

    import tinygrad_bp.tape

    failures, tried = doctest.testmod(tinygrad_bp.tape, optionflags=doctest.ELLIPSIS)
    assert tried > 0
    assert failures == 0



def test_the_library_binary_cross_entropy_is_one_row_the_tape_replays():
    """It reads no values (the clamp is part of its row), so it traces with check="none"."""
    model = tg.MLP(2, [3, 1], activation="tanh", output_activation="sigmoid", seed=0)
    params = model.parameters()
    tape = trace(lambda x, t: losses.binary_cross_entropy(model(x), t), [0.0, 0.0], 1.0, params=params, check="none")
    assert [ins.op for ins in tape.instructions][-1] == "binary_cross_entropy"
    X = np.random.default_rng(3).normal(size=(16, 2))
    t = (np.arange(16) % 3 == 0).astype(float)
    loss, grads = tape.value_and_grad(X, t)
    model.zero_grad()
    total = 0.0
    for x, ti in zip(X.tolist(), t.tolist()):
        sample = losses.binary_cross_entropy(model(x), ti)
        sample.backward(1.0 / len(X))
        total += sample.data / len(X)
    assert loss == pytest.approx(total, rel=1e-12)
    assert grads.params == pytest.approx([p.grad for p in params], rel=1e-11, abs=1e-15)
    with pytest.raises(DomainError, match=r"binary_cross_entropy: the target 2\.0 must lie in"):
        tape.value_and_grad(X[:2], np.array([0.0, 2.0]))


def test_a_replay_reads_its_inputs_where_they_are_and_agrees_with_forward_backward():
    """replay() reads the arguments as views (no copy into the value store); forward() keeps a copy."""
    model = tg.MLP(3, [4, 2], activation="tanh", seed=5)
    tape = trace(lambda x, t: losses.mse_loss(model(x), t), [0.0] * 3, [0.0, 0.0], params=model.parameters())
    assert not tape._inputs_in_store  # the layer reads x, the loss reads t: both where they are
    rng = np.random.default_rng(2)
    wide = rng.normal(size=(6, 8))
    X, T = wide[:, 1:7:2], rng.normal(size=(6, 2)).astype(np.float32)  # a strided view; float32
    replay = tape.replay(X, T, inputs=True)
    samples = list(zip(X.tolist(), T.tolist()))
    tape.forward(X, T.astype(np.float64))
    expected = tape.backward(inputs=True)
    assert replay.grads.params.tolist() == expected.params.tolist()
    assert [g.tolist() for g in replay.grads.inputs] == [g.tolist() for g in expected.inputs]
    kept = (replay.outputs.copy(), replay.grads.params.copy(), replay.grads.inputs[0].copy())
    wide[:] = 99.0  # the caller's arrays change after the replay: what it returned does not
    assert (replay.outputs == kept[0]).all()
    assert (replay.grads.params == kept[1]).all()
    assert (replay.grads.inputs[0] == kept[2]).all()
    for (x, t), out in zip(samples, replay.outputs.tolist()):
        assert out == pytest.approx(losses.mse_loss(model(x), t).data, rel=1e-14)


def test_inputs_read_in_windows_with_gaps_replay_as_the_scalar_engine():
    """Rows [[0, 1], [3, 4]] of an argument are a strided view reaching past its last row: read from the store."""
    p = Value(2.0, "p")

    def fn(x):
        return (tg.sum([x[0], x[1]]) * tg.sum([x[3], x[4]])) * p

    for check in ("none", "first"):
        tape = trace(fn, [1.0, 2.0, 3.0, 4.0, 5.0], params=[p], check=check)
        X = np.arange(15.0).reshape(3, 5)
        replay = tape.replay(X, inputs=True)
        tape.forward(X)
        assert tape.backward(inputs=True).params.tolist() == replay.grads.params.tolist()
        for x, out, g in zip(X.tolist(), replay.outputs.tolist(), replay.grads.inputs[0].tolist()):
            xs = [Value(v) for v in x]
            loss = fn(xs)
            loss.backward(1.0 / len(X))
            assert out == loss.data
            assert g == pytest.approx([v.grad for v in xs], rel=1e-15)


def test_a_replay_keeps_no_view_of_the_callers_arrays():
    import gc
    import weakref

    model = tg.MLP(3, [2], seed=0)
    tape = trace(lambda x: tg.sum(model(x)), [0.0] * 3, params=model.parameters())
    for bad in (False, True):
        X = np.random.default_rng(0).normal(size=(50, 3))
        if bad:
            X[7, 1] = np.nan
        ref = weakref.ref(X)
        try:
            tape.replay(X)
        except ValueError:
            assert bad
        del X
        gc.collect()
        assert ref() is None, bad
