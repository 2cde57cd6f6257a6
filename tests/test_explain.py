"""explain: d output / d wrt as the sum over paths of products of local derivatives."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_bp as tg
from tinygrad_bp import engine
from tinygrad_bp.errors import GraphTooLargeError
from tinygrad_bp.explain import Explanation, check, explain
from tinygrad_bp.testing import expressions
from tinygrad_bp.worked_example import build as build_worked_example


def worked_example():
    """REFERENCE section 4: the 2-2-2 sigmoid network and its half-SSE error."""
    example = build_worked_example()
    _, error = example.forward()
    error.label = "E"
    return example.model, error


@st.composite
def random_graphs(draw):
    """(root, leaves) of a random expression: shared subexpressions, repeated operands, every op."""
    return draw(expressions()).graph()


def close(a, b, scale):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12 * (1.0 + scale))


# --- the worked example -----------------------------------------------------------------------


def test_dE_dw5_is_three_factors():
    mlp, error = worked_example()
    w5 = mlp.layers[1].neurons[0].w[0]
    assert w5.label == "w5"
    result = explain(error, w5)
    assert isinstance(result, Explanation)
    (path,) = result.paths
    assert len(path.factors) == 4  # E_total = E_o1 + E_o2, then half_sse, sigmoid, linear
    assert [n.label for n in path.nodes] == ["E", "E_o1", "out_o1", "net_o1", "w5"]
    assert path.nodes[0] is error
    assert path.nodes[-1] is w5
    expected = [1.0, 0.741365069552316, 0.186815601808959, 0.593269992107187]  # dE/dE_o1 = 1, then the article's
    for got, factor in zip(path.factors, expected):
        assert got == pytest.approx(factor, abs=1e-12)
    assert path.product == pytest.approx(0.082167040564231, abs=1e-12)
    assert result.total == pytest.approx(0.082167040564231, abs=1e-12)
    assert result.total == pytest.approx(tg.grad(error, [w5])[0], rel=1e-14)


def test_dE_dw1_goes_through_both_outputs():
    mlp, error = worked_example()
    w1 = mlp.layers[0].neurons[0].w[0]
    result = explain(error, w1)
    assert len(result.paths) == 2
    through = {p.nodes[2].label: p for p in result.paths}
    assert set(through) == {"out_o1", "out_o2"}
    o1, o2 = through["out_o1"], through["out_o2"]
    # dE_o1/dout_h1 and dE_o2/dout_h1: the first four factors of each path
    assert math.prod(o1.factors[:4]) == pytest.approx(0.055399424651423, abs=1e-12)
    assert math.prod(o2.factors[:4]) == pytest.approx(-0.019049118258278, abs=1e-12)
    for p in (o1, o2):
        assert p.factors[4] == pytest.approx(0.241300708572325, abs=1e-12)  # dout_h1/dnet_h1
        assert p.factors[5] == pytest.approx(0.05, abs=1e-12)  # dnet_h1/dw1 = i1
    assert result.total == pytest.approx(0.000438567734474, abs=1e-12)
    assert result.total == pytest.approx(tg.grad(error, [w1])[0], rel=1e-12)


def test_text_table_shows_paths_factors_and_products():
    mlp, error = worked_example()
    text = str(explain(error, mlp.layers[1].neurons[0].w[0]))
    assert "d E / d w5" in text
    assert "E <- E_o1 <- out_o1 <- net_o1 <- w5" in text
    assert "1 x 0.741365069552316 x 0.186815601808959 x 0.593269992107187" in text
    assert "total = 0.0821670405642308" in text


def test_html_is_escaped():
    a = tg.Value(2.0, label="<script>alert(1)</script>")
    y = a * a
    y.label = "a & b"
    page = explain(y, a)._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "a &amp; b" in page
    assert page.count("<tr>") == 3  # header and two paths


# --- small cases --------------------------------------------------------------------------------


def test_repeated_operand_gives_one_path_per_occurrence():
    a = tg.Value(3.0, label="a")
    y = a * a
    y.label = "y"
    result = explain(y, a)
    assert len(result) == 2
    assert sorted(p.arguments for p in result.paths) == [(0,), (1,)]
    assert result.total == 6.0
    text = str(result)
    assert "y <-[0]- a" in text
    assert "y <-[1]- a" in text


def test_output_is_wrt():
    a = tg.Value(3.0, label="a")
    result = explain(a, a)
    assert result.total == 1.0
    assert result.paths[0].factors == ()


def test_unrelated_wrt_raises():
    a, b = tg.Value(3.0, label="a"), tg.Value(1.0, label="b")
    with pytest.raises(ValueError, match="does not depend on b"):
        explain(a * 2, b)
    with pytest.raises(TypeError):
        explain(a, 2.0)


def test_too_many_paths_raises_before_listing_them():
    x = tg.Value(1.0, label="x")
    y = x
    for _ in range(200):
        y = y * y  # 2 ** 200 paths: counted, never listed
    with pytest.raises(GraphTooLargeError) as info:
        explain(y, x)
    assert str(2**200) in str(info.value)
    assert "max_paths" in str(info.value)
    z = x
    for _ in range(10):
        z = z + z
    with pytest.raises(GraphTooLargeError):
        explain(z, x, max_paths=1000)
    assert len(explain(z, x, max_paths=1024)) == 1024


def test_long_chain_is_one_path():
    x = tg.Value(0.5, label="x")
    y = x
    for _ in range(30_000):  # far deeper than the recursion limit
        y = -y
    result = explain(y, x)
    assert len(result) == 1
    assert len(result.paths[0].factors) == 30_000
    assert result.total == 1.0


def test_explain_modifies_nothing():
    mlp, error = worked_example()
    before = [(n.data, n.grad, n.label, n.inputs) for n in tg.toposort(error)]
    explain(error, mlp.layers[0].neurons[0].w[0])
    assert [(n.data, n.grad, n.label, n.inputs) for n in tg.toposort(error)] == before


@given(random_graphs())
def test_total_equals_grad_on_random_graphs(graph):
    root, leaves = graph
    grads = engine.gradients(root) if root.requires_grad else {}
    for leaf in leaves:
        if leaf not in grads:
            with pytest.raises(ValueError):
                explain(root, leaf)
            continue
        try:
            result = explain(root, leaf, max_paths=100_000)
        except GraphTooLargeError:
            continue  # counted and refused: the cap, not a wrong answer
        scale = sum(abs(p.product) for p in result.paths)
        assert close(result.total, grads[leaf], scale)
        assert close(result.total, tg.grad(root, [leaf])[0], scale)
        for p in result.paths:
            assert p.nodes[0] is root
            assert p.nodes[-1] is leaf
            for node, i, x in zip(p.nodes, p.arguments, p.nodes[1:]):
                assert node.inputs[i] is x


# --- check: grading a learner's answer ---------------------------------------------------------


def article_graph():
    from tinygrad_bp import worked_example as we

    ex = we.build()
    _, E = ex.forward()
    return E, {n.label: n for n in tg.toposort(E) if n.label}


def test_check_a_number():
    E, n = article_graph()
    good = check(E, n["w6"], 0.0826676)
    assert good.correct
    assert bool(good)
    assert good.engine == tg.grad(E, [n["w6"]])[0]
    assert good.relative_error < 1e-6
    assert str(good).startswith("Correct: d E_total / d w6 = 0.0826676278475333")
    bad = check(E, n["w6"], 0.08)
    assert not bad.correct
    assert bad.relative_error == pytest.approx(abs(0.08 - bad.engine) / bad.engine)
    assert "Not quite" in str(bad)
    assert bad.wrong_factor is None
    assert check(E, n["w6"], 0.08, rtol=0.05).correct  # the tolerance is the learner's to set


def test_check_a_chain_names_the_first_wrong_factor():
    E, n = article_graph()
    verdict = check(E, n["w5"], [1, 0.741365, 0.19, 0.593270])
    assert not verdict.correct
    assert verdict.wrong_factor == 2
    assert verdict.expected_factor == pytest.approx(0.186815601808959, abs=1e-12)
    assert "factor 3 (d out_o1 / d net_o1) is 0.19, but it should be 0.186815601808959" in str(verdict)


def test_check_the_articles_short_chains():
    """dE/dw5 = dE/dout_o1 x dout_o1/dnet_o1 x dnet_o1/dw5, and dE/dw1 through dE/dout_h1, as the article writes."""
    E, n = article_graph()
    assert check(E, n["w5"], [0.741365069552316, 0.186815601808959, 0.593269992107187]).correct
    assert check(E, n["w1"], [0.036350306, 0.2413007, 0.05]).correct
    wrong_input = check(E, n["w2"], [0.036350306, 0.2413007, 0.05])  # dnet_h1/dw2 is i2 = 0.1
    assert wrong_input.wrong_factor == 2
    assert wrong_input.expected_factor == 0.1


def test_check_one_path_of_two_is_not_the_gradient():
    E, n = article_graph()
    verdict = check(E, n["w1"], [1, 0.741365069552316, 0.186815601808959, 0.4, 0.241300708572325, 0.05])
    assert not verdict.correct
    assert verdict.wrong_factor is None
    assert "one of 2 paths" in str(verdict)


def test_check_refuses_what_is_not_an_answer():
    E, n = article_graph()
    for answer in (None, "0.08", float("nan"), True, [], [0.1, "x"]):
        with pytest.raises(TypeError):
            check(E, n["w5"], answer)
    with pytest.raises(ValueError, match="does not depend"):
        check(n["net_h1"], n["w5"], 1.0)
    too_long = check(E, n["w5"], [1.0] * 9)
    assert not too_long.correct
    assert "longest path" in str(too_long)
