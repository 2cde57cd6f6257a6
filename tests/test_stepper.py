"""The stepper: forward and backward steps, its own chain-rule arithmetic, HTML and the headless widget."""

from __future__ import annotations

import json
import math
import re
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_bp as tg
from tinygrad_bp import engine
from tinygrad_bp.display import svg_size
from tinygrad_bp.errors import GraphTooLargeError
from tinygrad_bp.nn import MLP
from tinygrad_bp.stepper import BackwardStep, ForwardStep, Stepper
from tinygrad_bp.stepper.view import CURRENT_CLASS
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


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def contributions_by_input(stepper):
    sums = {}
    for step in stepper.backward_steps:
        for c in step.contributions:
            sums.setdefault(c.input, []).append(c.contribution)
    return sums


def by_label(stepper, label, kind):
    (step,) = [s for s in stepper.steps if s.kind == kind and s.node.label == label]
    return step


# --- the worked example -----------------------------------------------------------------------


def test_forward_steps_of_the_worked_example():
    _, error = worked_example()
    stepper = Stepper(error)
    assert len(stepper.forward_steps) == 11  # 4 linear, 4 sigmoid, E_o1 and E_o2 (half_sse), E_total
    assert all(isinstance(s, ForwardStep) for s in stepper.forward_steps)
    step = by_label(stepper, "out_h1", "forward")
    assert step.expression == "out_h1 = sigmoid(0.3775) = 0.593269992107187"
    assert "out_h1 = sigmoid(0.3775) = 0.593269992107187" in stepper.step_text(step.index)
    net = by_label(stepper, "net_h1", "forward")
    assert net.expression == (
        "net_h1 = w1*i1 + w2*i2 + b1"
        " = 0.15*0.05 + 0.2*0.1 + 0.35 = 0.3775"
    )
    assert "w1 = 0.15" in net.text
    assert stepper.forward_steps[-1].expression == (
        "E = 0.274811083176155 + 0.0235600255838477 = 0.298371108760003"
    )
    order = [s.node for s in stepper.forward_steps]
    for k, node in enumerate(order):  # inputs before the nodes that use them
        assert all(x not in order[k:] for x in node.inputs)


def test_backward_steps_of_the_worked_example():
    _, error = worked_example()
    stepper = Stepper(error)
    assert len(stepper.backward_steps) == 11
    assert all(isinstance(s, BackwardStep) for s in stepper.backward_steps)
    first = stepper.backward_steps[0]
    assert first.node is error
    assert first.upstream == 1.0
    o1 = by_label(stepper, "out_o1", "backward")
    assert o1.upstream == pytest.approx(0.741365069552316, abs=1e-12)  # dE/dout_o1
    (c,) = o1.contributions
    assert c.local == pytest.approx(0.186815601808959, abs=1e-12)  # dout_o1/dnet_o1
    assert c.contribution == pytest.approx(0.741365069552316 * 0.186815601808959, abs=1e-12)
    net_o1 = by_label(stepper, "net_o1", "backward")
    w5 = next(c for c in net_o1.contributions if c.input.label == "w5")
    assert w5.local == pytest.approx(0.593269992107187, abs=1e-12)
    assert w5.total == pytest.approx(0.082167040564231, abs=1e-12)
    assert w5.complete
    # out_h1 receives from both output neurons: 0.0553994... + (-0.0190491...) = 0.0363503...
    to_h1 = [
        c for s in stepper.backward_steps for c in s.contributions if c.input.label == "out_h1"
    ]
    assert sorted(c.contribution for c in to_h1) == pytest.approx(
        [-0.019049118258278, 0.055399424651423], abs=1e-12
    )
    assert to_h1[0].previous is None
    assert to_h1[1].previous == to_h1[0].total
    assert to_h1[1].total == pytest.approx(0.036350306393145, abs=1e-12)
    assert [c.complete for c in to_h1] == [False, True]
    text = stepper.step_text(net_o1.index)
    assert "upstream gradient d E / d net_o1" in text
    assert "0.593269992107187" in text


def test_final_totals_are_the_engines_gradients_on_the_worked_example():
    mlp, error = worked_example()
    stepper = Stepper(error)
    expected = engine.gradients(error)
    assert set(stepper.gradients) == set(expected)
    for node, g in expected.items():
        assert close(stepper.gradients[node], g)
    weights = [p for p in mlp.parameters() if ".w" in p.label]
    reference = [
        0.000438567734474, 0.000877135468949, 0.000497712735261, 0.000995425470522,
        0.082167040564231, 0.082667627847533, -0.022602540477475, -0.022740242215978,
    ]  # fmt: skip
    for w, g in zip(weights, reference):
        assert stepper.gradient(w) == pytest.approx(g, abs=1e-12)
    for node, parts in contributions_by_input(stepper).items():
        assert close(math.fsum(parts), expected[node])


def test_stepper_modifies_nothing():
    _, error = worked_example()
    before = [(n.data, n.grad, n.label, n.inputs) for n in tg.toposort(error)]
    Stepper(error).to_html()
    assert [(n.data, n.grad, n.label, n.inputs) for n in tg.toposort(error)] == before


# --- any graph ---------------------------------------------------------------------------------


@given(random_graphs())
def test_contributions_sum_to_the_engines_gradients(graph):
    root, _ = graph
    stepper = Stepper(root)
    expected = engine.gradients(root) if root.requires_grad else {}
    assert set(stepper.gradients) == set(expected)
    for node, g in expected.items():
        assert math.isclose(stepper.gradients[node], g, rel_tol=1e-9, abs_tol=1e-9)
    for node, parts in contributions_by_input(stepper).items():
        assert math.isclose(math.fsum(parts), expected[node], rel_tol=1e-9, abs_tol=1e-9)
    assert len(stepper) == len(stepper.forward_steps) + len(stepper.backward_steps)
    assert str(stepper)



def test_repeated_operand_gets_two_contributions():
    a = tg.Value(3.0, label="a")
    y = a * a
    y.label = "y"
    stepper = Stepper(y)
    (step,) = stepper.backward_steps
    assert [(c.argument, c.local, c.contribution) for c in step.contributions] == [
        (0, 3.0, 3.0),
        (1, 3.0, 3.0),
    ]
    assert step.contributions[1].total == 6.0
    assert "y = 3 * 3 = 9" in stepper.step_text(0)
    assert "(argument 1)" in stepper.step_text(1)


def test_seed_and_leaves_and_constants():
    a = tg.Value(2.0, label="a")
    assert len(Stepper(a)) == 0
    assert "nothing to step through" in str(Stepper(a))
    with tg.no_grad():
        c = tg.Value(2.0) * 3
    assert len(Stepper(c)) == 0
    const = tg.constant(2.0, "c") * 3
    stepper = Stepper(const)
    assert len(stepper.forward_steps) == 1
    assert stepper.backward_steps == []
    y = a * 3
    assert Stepper(y, seed=2.0).gradient(a) == 6.0
    with pytest.raises(KeyError):
        Stepper(y).gradient(tg.Value(1.0))
    with pytest.raises(IndexError):
        Stepper(y).step_text(5)
    with pytest.raises(TypeError):
        Stepper(3.0)


def test_infix_negative_operands_are_parenthesised():
    a, b = tg.Value(2.0, label="a"), tg.Value(-3.0, label="b")
    assert Stepper(a - b).forward_steps[0].expression == "-#2 = 2 - (-3) = 5"  # unlabelled: op#position


def test_totals_after_and_parameter_steps():
    mlp, error = worked_example()
    stepper = Stepper(error)
    assert stepper.totals_after(0) == {}
    last = len(stepper) - 1
    assert stepper.totals_after(last) == stepper.gradients
    jumps = stepper.parameter_steps()
    assert set(jumps) == {p.label for p in mlp.parameters()}
    step = stepper[jumps["w1"]]
    assert any(c.input.label == "w1" and c.complete for c in step.contributions)


# --- HTML and the widget -------------------------------------------------------------------------


def page_steps(page: str) -> list[dict]:
    """The steps a standalone page carries (its JSON block)."""
    match = re.search(r'<script type="application/json" id="tgbp-steps">(.*?)</script>', page, re.DOTALL)
    assert match
    return json.loads(match.group(1))


def test_to_html_is_one_self_contained_page(tmp_path):
    a = tg.Value(2.0, label="</pre><script>alert(1)</script>")
    y = a * a
    stepper = Stepper(y)
    path = tmp_path / "steps.html"
    page = stepper.to_html(path)
    assert path.read_text(encoding="utf-8") == page
    assert page.startswith("<!doctype html>")
    assert "default-src 'none'" in page  # no request can leave the page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing loaded from outside
    assert page.count("<script") == 3  # two JSON blocks and the stepping code; the label is text
    assert "alert(1)</script>" not in page
    steps = page_steps(page)
    assert [step["counter"] for step in steps] == ["step 1 of 2: forward 1/1", "step 2 of 2: backward 1/1"]
    assert [step["text"] for step in steps] == [stepper.step_text(0), stepper.step_text(1)]
    for step in steps:
        assert f'class="node {CURRENT_CLASS}"' in step["svg"]
        assert "<script" not in step["svg"]
        assert step["mark"] is not None


def test_the_step_picture_is_the_neighbourhood_at_any_size():
    """However big the graph, a step's picture holds the node, its op and at most 8 operand boxes."""
    mlp = MLP(64, [1], activation="sigmoid", seed=0)
    y = mlp([0.5] * 64)
    stepper = Stepper(y)
    net = next(step for step in stepper.forward_steps if step.node.op == "linear")
    svg = stepper.svg(net.index)
    assert svg.count('class="node') == 8 + 1 + 1 + 1  # operands, "... and 121 more", the op, the node
    assert "and 121 more operands" in svg
    assert svg_size(svg)[0] < 1200


def test_the_overview_marks_the_current_node():
    _, error = worked_example()
    stepper = Stepper(error)
    overview = stepper.overview()
    assert overview.description == "the whole graph"
    node = stepper.steps[3].node
    element = overview.ids[id(node)]
    assert f'id="{element}"' in overview.svg
    assert f"#{element} polygon" in overview.marked(node)


def test_a_big_graph_steps_with_modules_collapsed_in_the_overview():
    mlp = MLP(2, [16, 16, 1], activation="tanh", seed=0)
    y = (mlp([0.5, -0.25]) - 1.0) ** 2
    stepper = Stepper(y)
    assert len(tg.toposort(y)) > 400
    overview = stepper.overview()
    assert overview.description == "modules drawn as single boxes"
    assert svg_size(overview.svg)[1] < 5000
    first_weight = mlp.layers[0].neurons[0].w[0]
    assert overview.ids[id(first_weight)].startswith("g")
    for i in (0, len(stepper) // 2, len(stepper) - 1):
        assert svg_size(stepper.svg(i))[0] < 1200


def test_counter_and_slider_count_from_one():
    _, error = worked_example()
    stepper = Stepper(error)
    assert stepper.counter(0) == "step 1 of 22: forward 1/11"
    assert stepper.counter(11) == "step 12 of 22: backward 1/11"
    assert stepper.step_text(11).startswith("[step 12/22] backward 1/11")


def test_linear_reads_as_w_dot_x_plus_b():
    _, error = worked_example()
    text = Stepper(error).step_text(0)
    assert "net_h1 = w1*i1 + w2*i2 + b1" in text
    assert "= 0.15*0.05 + 0.2*0.1 + 0.35 = 0.3775" in text


def test_widget_headless():
    pytest.importorskip("ipywidgets")
    _, error = worked_example()
    stepper = Stepper(error)
    box = stepper.widget()
    assert (box.slider.min, box.slider.max, box.slider.value) == (1, len(stepper), 1)
    assert "step 1 of 22" in box.counter.value
    first_text, first_view = box.arithmetic.value, box.view.value
    assert CURRENT_CLASS in first_view
    assert "data:image/svg+xml;base64," in box.overview.value
    first_marker = box.marker.value
    assert "tgbp-marker" in first_marker
    box.next_button.click()
    assert box.marker.value != first_marker
    assert box.slider.value == 2
    assert "step 2 of 22" in box.counter.value
    assert box.arithmetic.value != first_text
    assert box.view.value != first_view
    box.previous_button.click()
    box.previous_button.click()
    assert box.slider.value == 1
    assert box.arithmetic.value == first_text
    box.slider.value = len(stepper)
    assert "backward 11/11" in box.arithmetic.value
    box.next_button.click()
    assert box.slider.value == len(stepper)
    target = stepper.parameter_steps()["w5"]
    box.search.value = "w5"
    assert box.slider.value == target + 1
    assert "w5" in box.arithmetic.value


def test_widget_search_is_in_natural_order():
    pytest.importorskip("ipywidgets")
    mlp = MLP(12, [1], seed=0)
    box = Stepper(mlp([0.1] * 12)).widget()
    weights = [name for name in box.search.options if ".w" in name]
    assert weights[:3] == ["layer1.neuron0.w0", "layer1.neuron0.w1", "layer1.neuron0.w2"]
    assert weights.index("layer1.neuron0.w2") < weights.index("layer1.neuron0.w10")


def test_stored_widget_shows_a_picture_not_its_repr():
    """Opened untrusted or without a kernel, the widget's output shows its first step as pictures."""
    pytest.importorskip("ipywidgets")
    box = Stepper(tg.Value(2.0, label="a") * 3).widget()
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    page = bundle["text/html"]
    assert 'alt="tinygrad_bp graph: step 1 of 2' in page
    assert "<svg" not in page
    assert "VBox" not in bundle["text/plain"]


def test_widget_without_a_layout_program_shows_text(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setenv("TINYGRAD_BP_LAYOUT", "none")
    a = tg.Value(2.0, label="a")
    box = Stepper(a * a + a).widget()
    assert "graph not drawn" in box.view.value
    assert "pip install graphviz-pure" in box.view.value
    before = box.arithmetic.value
    box.next_button.click()
    assert box.arithmetic.value != before


def test_widget_for_a_leaf():
    pytest.importorskip("ipywidgets")
    box = Stepper(tg.Value(1.0, label="a")).widget()
    assert box.next_button.disabled
    assert "nothing to step through" in box.arithmetic.value


def test_ipython_display_chooses_widget_or_html(monkeypatch):
    pytest.importorskip("IPython")
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    stepper = Stepper(tg.Value(2.0, label="a") * 3)
    stepper._ipython_display_()
    assert hasattr(shown[-1], "next_button")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now fails
    stepper._ipython_display_()
    assert isinstance(shown[-1], IPython.display.HTML)
    assert "step 1 of 2" in shown[-1].data


# --- found by a hostile review ------------------------------------------------------------------


def test_to_html_without_a_layout_program_is_a_text_page(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGRAD_BP_LAYOUT", "none")
    a = tg.Value(2.0, label="a")
    stepper = Stepper(a * a + a)
    page = stepper.to_html(tmp_path / "p.html")
    steps = page_steps(page)
    assert [s["text"] for s in steps] == [stepper.step_text(i) for i in range(len(stepper))]
    assert "graph not drawn" in steps[0]["svg"]
    assert "no overview: " in page
    assert "too big" not in page  # the note says why: no layout program, not size


def test_to_html_refuses_a_page_of_too_many_steps_at_once():
    x = tg.Value(0.5, label="x")
    y = x
    for _ in range(1_100):
        y = y * 1.0001
    stepper = Stepper(y)
    with pytest.raises(GraphTooLargeError, match="max_steps=2000"):
        stepper.to_html()
    assert len(page_steps(stepper.to_html(max_steps=2_200))) == len(stepper)


def test_the_page_jump_box_only_knows_parameter_names():
    """'toString' or '__proto__' typed into the jump box must not be taken for a parameter."""
    page = Stepper(tg.Value(2.0, label="a") * 3).to_html()
    assert "hasOwnProperty.call(jumps" in page
    assert "in jumps)" not in page


def test_the_widget_jumps_again_to_the_same_parameter_and_disables_the_ends():
    pytest.importorskip("ipywidgets")
    _, error = worked_example()
    stepper = Stepper(error)
    box = stepper.widget()
    assert box.previous_button.disabled
    assert not box.next_button.disabled
    box.search.value = "w1"
    target = box.slider.value
    assert box.search.value == ""
    box.slider.value = 1
    box.search.value = "w1"
    assert box.slider.value == target
    box.slider.value = len(stepper)
    assert box.next_button.disabled


def test_an_overview_too_big_to_send_is_dropped_with_a_reason():
    mlp = MLP(64, [32, 10], seed=0)
    stepper = Stepper(tg.sum(mlp([0.1] * 64)))
    overview = stepper.overview()
    assert overview is None or len(overview.svg) <= 400_000
    if overview is None:
        assert "too big" in stepper.overview_note()
    assert len(stepper.static_html(0)) < 600_000


def test_a_huge_graph_is_refused_at_once_and_a_wide_sum_steps():
    x = tg.Value(0.5, label="x")
    y = x
    for _ in range(60_000):
        y = y + 1.0
    with pytest.raises(GraphTooLargeError, match="max_nodes=50,000"):
        Stepper(y)
    leaves = [tg.Value(float(k), label=f"p{k}") for k in range(20_000)]
    total = tg.sum(leaves)
    stepper = Stepper(total)
    (step,) = stepper.backward_steps
    assert len(step.contributions) == 20_000
    assert "-> p19999: local d " in step.text  # built in linear time (it was quadratic)
