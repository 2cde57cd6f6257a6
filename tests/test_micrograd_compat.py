"""tinygrad_bp.micrograd: micrograd 0.1.0's programs run with only the import changed.

micrograd's own tests (test_engine.py), its demo's initialisation and training, the lecture's
manual backprop with Value(data, _children, _op) and _backward(), and trace_graph's _prev/_op walk.
"""

from __future__ import annotations

import importlib
import random

import pytest

from tinygrad_bp import viz
from tinygrad_bp.errors import UnknownOperationError
from tinygrad_bp.micrograd.engine import Value
from tinygrad_bp.micrograd.nn import MLP, Layer, Neuron


def test_sanity_check(torch):
    """micrograd's test_engine.py::test_sanity_check, with only the import changed."""
    x = Value(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    xmg, ymg = x, y

    x = torch.Tensor([-4.0]).double()
    x.requires_grad = True
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    xpt, ypt = x, y

    assert ymg.data == ypt.data.item()
    assert xmg.grad == xpt.grad.item()


def test_more_ops(torch):
    """micrograd's test_engine.py::test_more_ops, with only the import changed."""
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    amg, bmg, gmg = a, b, g

    a = torch.Tensor([-4.0]).double()
    b = torch.Tensor([2.0]).double()
    a.requires_grad = True
    b.requires_grad = True
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    g.backward()
    apt, bpt, gpt = a, b, g

    tol = 1e-6
    assert abs(gmg.data - gpt.data.item()) < tol
    assert abs(amg.grad - apt.grad.item()) < tol
    assert abs(bmg.grad - bpt.grad.item()) < tol


def test_the_demo_initialises_and_trains_as_micrograd():
    """random.seed(1337) gives micrograd's weights; the losses follow micrograd's, step by step."""
    micrograd_nn = pytest.importorskip("micrograd.nn", reason="micrograd==0.1.0 is in the bench extra")
    micrograd_engine = importlib.import_module("micrograd.engine")
    points = [((0.5 * k - 2.0) / 3.0, ((k * 7) % 11 - 5) / 4.0) for k in range(12)]
    labels = [1 if x * y > 0 else -1 for x, y in points]

    def run(mlp_cls, value_cls):
        random.seed(1337)
        model = mlp_cls(2, [16, 16, 1])
        losses = []
        for step in range(5):
            scores = [model([value_cls(x), value_cls(y)]) for x, y in points]
            loss = sum((1 + -yi * s).relu() for yi, s in zip(labels, scores)) * (1.0 / len(points))
            loss = loss + 1e-4 * sum(p * p for p in model.parameters())
            model.zero_grad()
            loss.backward()
            for p in model.parameters():
                p.data -= (1.0 - 0.9 * step / 100) * p.grad
            losses.append(loss.data)
        return [p.data for p in model.parameters()], losses

    ours_weights, ours_losses = run(MLP, Value)
    theirs_weights, theirs_losses = run(micrograd_nn.MLP, micrograd_engine.Value)
    assert ours_losses == pytest.approx(theirs_losses, rel=1e-12)
    assert ours_weights == pytest.approx(theirs_weights, rel=1e-9, abs=1e-12)


def test_modules_are_micrographs():
    random.seed(0)
    neuron = Neuron(3)
    assert repr(neuron) == "ReLUNeuron(3)"
    assert neuron.b.data == 0.0
    assert all(-1 <= w.data <= 1 for w in neuron.w)
    assert repr(Neuron(2, nonlin=False)) == "LinearNeuron(2)"
    out = Layer(2, 1)([1.0, 2.0])
    assert isinstance(out, type(Value(0.0) + 0))  # one neuron: a Value, not a list
    assert len(Layer(2, 3, nonlin=False)([1.0, 2.0])) == 3
    mlp = MLP(2, [3, 1])
    assert len(mlp.parameters()) == 3 * 3 + 4
    assert repr(mlp).startswith("MLP of [Layer of [ReLUNeuron(2)")


def test_the_lectures_manual_backprop():
    """Nodes built by hand as Value(data, _children, _op), then _backward() one node at a time."""
    a, b, c = Value(2.0, label="a"), Value(-3.0, label="b"), Value(10.0, label="c")
    e = Value(a.data * b.data, (a, b), "*", label="e")
    d = Value(e.data + c.data, (e, c), "+", label="d")
    f = Value(-2.0, label="f")
    L = Value(d.data * f.data, (d, f), "*", label="L")
    L.grad = 1.0
    for node in (L, d, e):
        node._backward()
    by_hand = [a.grad, b.grad, c.grad, d.grad, e.grad, f.grad]
    assert by_hand == [6.0, -4.0, -2.0, -2.0, -2.0, 4.0]
    for v in (a, b, c, d, e, f):
        v.grad = 0.0
    L.backward()
    assert [a.grad, b.grad, c.grad, f.grad] == [6.0, -4.0, -2.0, 4.0]
    squared = Value(a.data**2, (a,), "**2")
    assert squared._op == "**2"
    assert squared._prev == {a}
    r = Value(0.0, (b,), "ReLU")
    assert (r.op, r._op) == ("relu", "ReLU")
    unknown = Value(1.0, (a,), "sqrt_of")  # micrograd takes any _op; its backward needs a _backward
    assert unknown._op == "sqrt_of"
    with pytest.raises(UnknownOperationError, match="'sqrt_of'"):
        unknown.backward()
    with pytest.raises(ValueError, match="_op"):
        Value(1.0, (a,))


def test_trace_graph_walks_prev_and_op():
    """trace_graph.ipynb's trace(): nodes and edges from _prev, labels from _op."""
    x = Value(1.0)
    y = (x * 2 + 1).relu() ** 2

    def trace(root):
        nodes, edges = set(), set()

        def build(v):
            if v not in nodes:
                nodes.add(v)
                for child in v._prev:
                    edges.add((child, v))
                    build(child)

        build(root)
        return nodes, edges

    nodes, edges = trace(y)
    assert (nodes, edges) == viz.trace(y)  # the same walk, from tinygrad_bp.viz
    assert sorted(n._op for n in nodes) == ["", "", "", "*", "**2", "+", "ReLU"]
    assert len(edges) == 6  # x and 2 into *, * and 1 into +, + into ReLU, ReLU into **2
    graph = viz.draw_dot(y, "svg", "TB")  # micrograd's positional format and rankdir
    assert "rankdir=TB" in graph.source


def test_the_drop_in_records_micrographs_graph_so_values_agree_to_the_last_bit():
    """a - b is a + (-b), -a is a * -1, a / b is a * b**-1, as micrograd builds them: the forward
    values are micrograd's exactly (gradients are sums whose order micrograd takes from a set)."""
    micrograd_engine = pytest.importorskip("micrograd.engine", reason="micrograd==0.1.0 is in the bench extra")

    def composed(value_cls):
        a, b = value_cls(-4.0), value_cls(0.3)
        c = (a - b) / (b - 7.0) - (-a) / 3.0  # sub, neg and div, each as micrograd composes it
        d = 2.0 / c + 5.0 - b
        return [c.data, d.data, (d**2 / a).data]

    assert composed(Value) == composed(micrograd_engine.Value)
    y = Value(3.0) / 7.0
    assert y._op == "*"
    assert type(y) is Value
    assert y.data == 3.0 * 7.0**-1  # micrograd's a * b**-1, not 3.0 / 7.0
    z = Value(3.0) / Value(7.0)
    assert sorted(p._op for p in z._prev) == ["", "**-1"]


def test_an_operation_defined_the_lectures_way_with_its_own_backward():
    """The lecture adds an operation by building the node by hand and assigning ``out._backward``;
    its name need not be one of tinygrad_bp's. backward() then runs micrograd's own algorithm."""
    import math

    def softsign(self):
        s = self.data / (1 + abs(self.data))
        out = Value(s, (self,), "softsign_by_hand")

        def _backward():
            self.grad += 1 / (1 + abs(self.data)) ** 2 * out.grad

        out._backward = _backward
        return out

    x = Value(0.5)
    y = softsign(x * 2.0) + x.tanh()
    y.backward()
    assert y.data == 0.5 + math.tanh(0.5)
    assert x.grad == pytest.approx(2.0 / (1 + 1.0) ** 2 + (1 - math.tanh(0.5) ** 2), rel=1e-15)
    assert y._op == "+"
    assert {p._op for p in y._prev} == {"softsign_by_hand", "tanh"}


def test_a_hand_made_node_of_an_unknown_operation_without_backward_says_so():
    from tinygrad_bp.errors import UnknownOperationError

    x = Value(0.5)
    y = Value(0.25, (x,), "mystery")
    with pytest.raises(UnknownOperationError, match="mystery"):
        y.backward()
