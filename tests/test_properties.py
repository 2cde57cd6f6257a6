"""Property tests on random expression graphs: the engine against finite differences and itself.

The graphs come from tinygrad_bp.testing.expressions(): shared subexpressions, repeated operands,
every operation of the rule table, and a point inside every operation's domain.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_bp as tg
from tinygrad_bp.gradcheck import numerical_gradient
from tinygrad_bp.testing import expressions, reals, upstream_gradients

EPS = 1e-6  # finite-difference step for first derivatives
EPS2 = 1e-5  # step for differencing the first derivative (second derivatives)


def scale_of(xs):
    """1 + max |x|: the scale for absolute tolerances."""
    return 1.0 + max((abs(x) for x in xs), default=0.0)


def engine_gradient(expr, point):
    """d out / d x_i at ``point`` by tg.grad (floats)."""
    out, leaves = expr.graph(point)
    return tg.grad(out, leaves)


def hessian_by_create_graph(expr):
    """H_ij = d/dx_j (d out/d x_i): differentiate the create_graph=True first derivatives again."""
    out, leaves = expr.graph()
    first = tg.grad(out, leaves, create_graph=True)
    return [tg.grad(g, leaves, materialize_grads=True) for g in first]


def hessian_by_differences(expr, eps=EPS2):
    """H_ij ~ (g_i(x + eps e_j) - g_i(x - eps e_j)) / (2 eps), g = the engine's first derivative."""
    n = expr.n_leaves
    columns = []
    for j in range(n):
        up, down = list(expr.point), list(expr.point)
        up[j] += eps
        down[j] -= eps
        g_up, g_down = engine_gradient(expr, up), engine_gradient(expr, down)
        columns.append([(a - b) / (2.0 * eps) for a, b in zip(g_up, g_down)])
    return [[columns[j][i] for j in range(n)] for i in range(n)]


@given(expressions())
def test_gradcheck_passes_on_random_graphs(expr):
    """grad vs central differences (f(x + eps e_i) - f(x - eps e_i)) / (2 eps), via gradcheck."""
    assert tg.gradcheck(expr.build, expr.point)


@given(expressions())
def test_reverse_mode_matches_forward_mode(expr):
    """Reverse mode (tg.grad) against the strategy's forward mode (dual numbers): no eps involved."""
    forward = expr.forward_gradient()
    assert engine_gradient(expr, expr.point) == pytest.approx(
        forward, rel=1e-10, abs=1e-12 * scale_of(forward)
    )


@given(expressions(), upstream_gradients())
def test_backward_with_an_upstream_gradient_matches_finite_differences(expr, upstream):
    """leaf.grad after out.backward(u) = u * d out/d leaf."""
    out, leaves = expr.graph()
    out.backward(upstream)
    numerical = [upstream * g for g in numerical_gradient(expr.build, expr.point, EPS)]
    assert [x.grad for x in leaves] == pytest.approx(numerical, rel=1e-4, abs=1e-5 * abs(upstream))


@given(expressions(), upstream_gradients())
def test_backward_with_an_upstream_gradient_is_grad_times_upstream(expr, upstream):
    """backward(u) and u * grad(out) agree to rounding; grad_outputs=u agrees exactly."""
    out, leaves = expr.graph()
    plain = tg.grad(out, leaves)
    seeded = tg.grad(out, leaves, grad_outputs=upstream)
    out.backward(upstream)
    assert [x.grad for x in leaves] == seeded
    expected = [upstream * g for g in plain]
    assert seeded == pytest.approx(expected, rel=1e-12, abs=1e-14 * scale_of(expected))


@given(expressions())
def test_backward_from_zero_equals_grad_exactly(expr):
    out, leaves = expr.graph()
    out.backward()
    assert [x.grad for x in leaves] == tg.grad(out, leaves)


@given(expressions(), upstream_gradients())
def test_backward_twice_is_exactly_twice_once_on_leaves(expr, upstream):
    """Leaves accumulate (exactly 2x); intermediate nodes keep the latest pass's value (1x)."""
    out, leaves = expr.graph()
    inner = [node for node in tg.toposort(out) if node.inputs and node.requires_grad]
    out.backward(upstream)
    once_leaves = [x.grad for x in leaves]
    once_inner = [node.grad for node in inner]
    out.backward(upstream)
    assert [x.grad for x in leaves] == [2.0 * g for g in once_leaves]
    assert [node.grad for node in inner] == once_inner
    assert out.grad == upstream


@given(expressions(), st.booleans(), st.data())
def test_grad_leaves_every_grad_untouched(expr, create_graph, data):
    out, leaves = expr.graph()
    nodes = tg.toposort(out)
    for node in nodes:
        node.grad = data.draw(reals(-5.0, 5.0))
    before = [node.grad for node in nodes]
    result = tg.grad(out, leaves, create_graph=create_graph)
    assert [node.grad for node in nodes] == before
    if create_graph:
        assert all(isinstance(g, tg.Value) for g in result)
        assert [g.data for g in result] == pytest.approx(tg.grad(out, leaves), rel=1e-12, abs=1e-14)


@settings(max_examples=50)
@given(expressions(max_leaves=3, max_ops=6))
def test_second_derivatives_match_differences_of_the_first(expr):
    """create_graph Hessian vs central differences of the engine's first derivative."""
    exact = hessian_by_create_graph(expr)
    numerical = hessian_by_differences(expr)
    for row, numerical_row in zip(exact, numerical):
        assert row == pytest.approx(numerical_row, rel=1e-4, abs=1e-5 * scale_of(numerical_row))


@settings(max_examples=50)
@given(expressions(min_leaves=2, max_leaves=3, max_ops=6))
def test_hessian_is_symmetric(expr):
    """d2 f/dx_i dx_j = d2 f/dx_j dx_i for these (piecewise) smooth graphs."""
    h = hessian_by_create_graph(expr)
    n = expr.n_leaves
    for i in range(n):
        for j in range(i):
            assert math.isclose(h[i][j], h[j][i], rel_tol=1e-9, abs_tol=1e-12 * (1 + abs(h[i][j])))
