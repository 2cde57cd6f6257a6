"""The stepper: forward and backward steps, its own chain-rule arithmetic, HTML and the headless widget."""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_bp as tg
from tinygrad_bp import engine
from tinygrad_bp.stepper import BackwardStep, ForwardStep, Stepper
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
    assert len(stepper.forward_steps) == 9  # 4 linear, 4 sigmoid, 1 half_sse
    assert all(isinstance(s, ForwardStep) for s in stepper.forward_steps)
    step = by_label(stepper, "layer1.neuron0.out", "forward")
    assert step.expression == "layer1.neuron0.out = sigmoid(0.3775) = 0.593269992107187"
    assert "layer1.neuron0.out = sigmoid(0.3775) = 0.593269992107187" in stepper.step_text(step.index)
    net = by_label(stepper, "layer1.neuron0.net", "forward")
    assert net.expression == "layer1.neuron0.net = linear(0.15, 0.2, 0.05, 0.1, 0.35) = 0.3775"
    assert "layer1.neuron0.w0 = 0.15" in net.text
    assert stepper.forward_steps[-1].expression == (
        "E = half_sse(0.751365069552316, 0.772928465321463, 0.01, 0.99) = 0.298371108760003"
    )
    order = [s.node for s in stepper.forward_steps]
    for k, node in enumerate(order):  # inputs before the nodes that use them
        assert all(x not in order[k:] for x in node.inputs)


def test_backward_steps_of_the_worked_example():
    _, error = worked_example()
    stepper = Stepper(error)
    assert len(stepper.backward_steps) == 9
    assert all(isinstance(s, BackwardStep) for s in stepper.backward_steps)
    first = stepper.backward_steps[0]
    assert first.node is error
    assert first.upstream == 1.0
    o1 = by_label(stepper, "layer2.neuron0.out", "backward")
    assert o1.upstream == pytest.approx(0.741365069552316, abs=1e-12)  # dE/dout_o1
    (c,) = o1.contributions
    assert c.local == pytest.approx(0.186815601808959, abs=1e-12)  # dout_o1/dnet_o1
    assert c.contribution == pytest.approx(0.741365069552316 * 0.186815601808959, abs=1e-12)
    net_o1 = by_label(stepper, "layer2.neuron0.net", "backward")
    w5 = next(c for c in net_o1.contributions if c.input.label == "layer2.neuron0.w0")
    assert w5.local == pytest.approx(0.593269992107187, abs=1e-12)
    assert w5.total == pytest.approx(0.082167040564231, abs=1e-12)
    assert w5.complete
    # out_h1 receives from both output neurons: 0.0553994... + (-0.0190491...) = 0.0363503...
    to_h1 = [
        c for s in stepper.backward_steps for c in s.contributions if c.input.label == "layer1.neuron0.out"
    ]
    assert sorted(c.contribution for c in to_h1) == pytest.approx(
        [-0.019049118258278, 0.055399424651423], abs=1e-12
    )
    assert to_h1[0].previous is None
    assert to_h1[1].previous == to_h1[0].total
    assert to_h1[1].total == pytest.approx(0.036350306393145, abs=1e-12)
    assert [c.complete for c in to_h1] == [False, True]
    text = stepper.step_text(net_o1.index)
    assert "upstream gradient d E / d layer2.neuron0.net" in text
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
    Stepper(error).to_html(include_graph=False)
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
    step = stepper[jumps["layer1.neuron0.w0"]]
    assert any(c.input.label == "layer1.neuron0.w0" and c.complete for c in step.contributions)


# --- HTML and the widget -------------------------------------------------------------------------


def test_to_html_is_escaped_and_complete(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no dot: the page says why there is no drawing
    a = tg.Value(2.0, label="</pre><script>alert(1)</script>")
    y = a * a
    page = Stepper(y).to_html()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "graph not shown" in page
    assert page.count("<li>") == 2


def test_widget_headless(dot):  # noqa: ARG001
    pytest.importorskip("ipywidgets")
    _, error = worked_example()
    stepper = Stepper(error)
    box = stepper.widget()
    assert box.slider.max == len(stepper) - 1
    first_text, first_graph = box.arithmetic.value, box.graph.value
    assert "<svg" in first_graph
    assert "#fde047" in first_graph  # the current node is highlighted
    box.next_button.click()
    assert box.slider.value == 1
    assert box.arithmetic.value != first_text
    assert box.graph.value != first_graph
    box.previous_button.click()
    box.previous_button.click()
    assert box.slider.value == 0
    assert box.arithmetic.value == first_text
    box.slider.value = len(stepper) - 1
    assert "backward 9/9" in box.arithmetic.value
    box.next_button.click()
    assert box.slider.value == len(stepper) - 1
    target = stepper.parameter_steps()["layer2.neuron0.w0"]
    box.dropdown.value = target
    assert box.slider.value == target
    assert box.dropdown.value == -1
    assert "layer2.neuron0.w0" in box.arithmetic.value


def test_widget_without_dot_shows_text(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setenv("PATH", "")
    a = tg.Value(2.0, label="a")
    box = Stepper(a * a + a).widget()
    assert "graph not shown" in box.graph.value
    assert "apt-get install graphviz" in box.graph.value
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
    monkeypatch.setenv("PATH", "")
    stepper = Stepper(tg.Value(2.0, label="a") * 3)
    stepper._ipython_display_()
    assert hasattr(shown[-1], "next_button")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now fails
    stepper._ipython_display_()
    assert isinstance(shown[-1], IPython.display.HTML)
    assert "Backward pass" in shown[-1].data
