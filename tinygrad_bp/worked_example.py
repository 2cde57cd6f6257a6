"""The articles' 2-2-2 worked example, ready to run, with its figures.

Inputs i1 = 0.05, i2 = 0.10; targets 0.01, 0.99; every unit a sigmoid:

    h1 = s(w1 i1 + w2 i2 + b1)      o1 = s(w5 h1 + w6 h2 + b2)
    h2 = s(w3 i1 + w4 i2 + b1)      o2 = s(w7 h1 + w8 h2 + b2)
    E  = 1/2 (t1 - o1)^2 + 1/2 (t2 - o2)^2

with w1..w8 = 0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55, b1 = 0.35,
b2 = 0.60 (one bias shared by a layer, never updated) and learning rate 0.5.

:func:`build` returns the network as an :class:`~tinygrad_bp.nn.MLP` labelled
with the article's names: inputs ``i1``, ``i2``, targets ``t1``, ``t2``,
weights ``w1``..``w8``, ONE shared ``b1`` for the hidden layer and one ``b2``
for the output layer, the nodes ``net_h1``, ``out_h1``, ..., ``net_o2``,
``out_o2``, the error terms ``E_o1``, ``E_o2`` and their sum ``E_total``. So
drawings, the stepper and ``explain`` read like the article.

The exact float64 figures (:data:`FORWARD`, :data:`CHAIN_RULE`,
:data:`GRADIENTS`, :data:`UPDATED_WEIGHTS`) are what the engine computes.
The article's later figures (:data:`ARTICLE_FIGURES`) differ from the exact
ones, and not by rounding: the code the article was written from computed the
hidden-layer gradients with the output weights w5..w8 ALREADY UPDATED in the
same step. ``WorkedExample.train(steps, reproduce_article=True)`` does that and
reproduces the article's figures to every printed digit; the default computes
every gradient from the old weights, then updates them all, as it should.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from .engine import grad, toposort
from .losses import half_sse
from .nn import MLP
from .optim import SGD
from .value import Value

if TYPE_CHECKING:
    from .nn import Neuron

__all__ = [
    "ARTICLE_CHAIN",
    "ARTICLE_FIGURES",
    "BIASES",
    "CHAIN_RULE",
    "FORWARD",
    "GRADIENTS",
    "INPUTS",
    "LEARNING_RATE",
    "NEURON_NAMES",
    "TARGETS",
    "UPDATED_WEIGHTS",
    "WEIGHTS",
    "ArticleFigure",
    "Delta",
    "WorkedExample",
    "agreement",
    "build",
    "chain_w1",
    "deltas",
    "figures_table",
]

INPUTS = (0.05, 0.10)
TARGETS = (0.01, 0.99)
WEIGHTS = (0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55)  # w1..w8
BIASES = (0.35, 0.60)  # b1 (hidden layer), b2 (output layer)
LEARNING_RATE = 0.5

# The forward pass, exact in float64.
FORWARD: dict[str, float] = {
    "net_h1": 0.3775,
    "out_h1": 0.593269992107187,
    "out_h2": 0.596884378259767,
    "net_o1": 1.105905967059770,
    "out_o1": 0.751365069552316,
    "out_o2": 0.772928465321463,
    "E_o1": 0.274811083176155,
    "E_o2": 0.023560025583848,
    "E_total": 0.298371108760003,
}

# The chain rule spelled out for w5 and w1, exact in float64.
CHAIN_RULE: dict[str, float] = {
    "dE/dout_o1": 0.741365069552316,
    "dout_o1/dnet_o1": 0.186815601808959,
    "dnet_o1/dw5": 0.593269992107187,
    "dE/dw5": 0.082167040564231,
    "dE_o1/dout_h1": 0.055399424651423,
    "dE_o2/dout_h1": -0.019049118258278,
    "dE/dout_h1": 0.036350306393145,
    "dout_h1/dnet_h1": 0.241300708572325,
    "dE/dw1": 0.000438567734474,
}

# dE/dw1 .. dE/dw8 at the start.
GRADIENTS = (
    0.000438567734474,
    0.000877135468949,
    0.000497712735261,
    0.000995425470522,
    0.082167040564231,
    0.082667627847533,
    -0.022602540477475,
    -0.022740242215978,
)

# w1..w8 after one step of w = w - 0.5 dE/dw, all from the old values.
UPDATED_WEIGHTS = (
    0.149780716132763,
    0.199561432265526,
    0.249751143632370,
    0.299502287264739,
    0.358916479717885,
    0.408666186076233,
    0.511301270238738,
    0.561370121107989,
)


class ArticleFigure(NamedTuple):
    """One later figure of the article, three ways.

    ``exact``: every gradient from the old weights, then the update (correct);
    ``article_order``: the hidden-layer gradients from the output weights
    already updated in the same step, as the article's code did; ``article``:
    the figure the article prints.
    """

    quantity: str
    steps: int
    exact: float
    article_order: float
    article: float


ARTICLE_FIGURES: tuple[ArticleFigure, ...] = (
    ArticleFigure("E_total", 1, 0.29102777369359933, 0.29102792390544197, 0.291027924),
    ArticleFigure("E_total", 10_000, 3.510187782978859e-05, 3.5084786296312774e-05, 0.000035085),
    ArticleFigure("out_o1", 10_000, 0.01591362044355068, 0.0159121963260343, 0.015912196),
    ArticleFigure("out_o2", 10_000, 0.9840642735146238, 0.9840657344856291, 0.984065734),
)

# Figures the article prints along the chain of w1 and for the first delta (rounded by the article).
ARTICLE_CHAIN: dict[str, float] = {
    "dE_o1/dout_h1": 0.055399425,
    "dE_o2/dout_h1": -0.019049118,
    "dE/dout_h1": 0.036350306,
    "delta_o1": 0.138498562,
}

# The article's names of the nodes each neuron makes, in the order of the model's neurons.
NEURON_NAMES = (("h1", "h2"), ("o1", "o2"))


def agreement(exact: float, article: float) -> float:
    """The number of significant digits two figures share: -log10(|article - exact| / |exact|)."""
    if article == exact:
        return math.inf
    return -math.log10(abs(article - exact) / abs(exact))


@dataclass
class WorkedExample:
    """The 2-2-2 network of the worked example, with its data, in the article's names.

    ``weights`` are w1..w8 in the article's order (the optimizer gets only
    these: the biases are not updated); ``biases`` are the shared ``b1`` and
    ``b2``; ``inputs`` and ``targets`` are numbers.
    """

    model: MLP
    inputs: list[float]
    targets: list[float]
    weights: list[Value]
    biases: list[Value]
    lr: float = LEARNING_RATE
    steps: int = field(default=0)

    def forward(self) -> tuple[list[Value], Value]:
        """([out_o1, out_o2], E_total) for the current weights: a fresh graph in the article's names.

        E_o1 = 1/2 (t1 - out_o1)^2 and E_o2 = 1/2 (t2 - out_o2)^2 are one node each
        (dE_o1/dout_o1 = out_o1 - t1, as the article derives it), E_total = E_o1 + E_o2;
        the inputs and targets are labelled constants i1, i2, t1, t2.
        """
        i1, i2 = (Value(x, label=f"i{k + 1}", requires_grad=False) for k, x in enumerate(self.inputs))
        outs = self.model([i1, i2])
        outs = outs if isinstance(outs, list) else [outs]
        terms = []
        for k, (out, target) in enumerate(zip(outs, self.targets)):
            t = Value(target, label=f"t{k + 1}", requires_grad=False)
            term = half_sse(out, t)
            term.label = f"E_o{k + 1}"
            terms.append(term)
        error = terms[0] + terms[1]
        error.label = "E_total"
        return outs, error

    def optimizer(self) -> SGD:
        """Plain gradient descent on the weights only, w = w - lr dE/dw."""
        return SGD(self.weights, lr=self.lr)

    def train(self, steps: int, *, reproduce_article: bool = False) -> float:
        """Run ``steps`` steps of gradient descent; return E_total after them.

        With ``reproduce_article=True`` each step updates w5..w8 first and only
        then computes the hidden-layer gradients dE/dw1..dE/dw4, on the same
        graph, so they see the NEW w5..w8 (the forward values stay the old
        ones): what the article's code did, which gives its printed figures.
        """
        optimizer = self.optimizer()
        for _ in range(steps):
            if reproduce_article:
                self._article_step()
            else:
                optimizer.zero_grad()
                _, error = self.forward()
                error.backward()
                optimizer.step()
            self.steps += 1
        return self.forward()[1].data

    def _article_step(self) -> None:
        """One step in the article's order: w5..w8 updated, then dE/dw1..dE/dw4 from the new w5..w8."""
        _, error = self.forward()
        hidden, output = self.weights[:4], self.weights[4:]
        for w, g in zip(output, grad(error, output)):
            w.data -= self.lr * g
        for w, g in zip(
            hidden, grad(error, hidden)
        ):  # the local derivative d net_o / d out_h reads w5..w8 now
            w.data -= self.lr * g


def _name_neuron(neuron: Neuron, name: str, weights: list[str], bias: Value) -> None:
    """Give a neuron the article's names: net_<name>, out_<name>, its weights, its layer's bias."""
    neuron.rename(name, net=f"net_{name}", out=f"out_{name}")
    for w, label in zip(neuron.w, weights):
        w.label = label
    neuron.b = bias


def build(*, fused: bool = True) -> WorkedExample:
    """A fresh copy of the worked example's network at its starting weights, in the article's names.

    ``fused=False`` builds each net as b + w*x + w*x from binary nodes (see :mod:`tinygrad_bp.nn`).
    """
    w = WEIGHTS
    model = MLP.from_weights(
        [[[w[0], w[1]], [w[2], w[3]]], [[w[4], w[5]], [w[6], w[7]]]],
        [list(BIASES[:1]) * 2, list(BIASES[1:]) * 2],
        activation="sigmoid",
        output_activation="sigmoid",
        fused=fused,
    )
    biases = [Value(b, label=f"b{k + 1}") for k, b in enumerate(BIASES)]
    number = 1
    for layer, names, bias in zip(model.layers, NEURON_NAMES, biases):
        for neuron, name in zip(layer.neurons, names):
            _name_neuron(neuron, name, [f"w{number}", f"w{number + 1}"], bias)
            number += 2
    weights = [p for layer in model.layers for n in layer.neurons for p in n.w]
    return WorkedExample(model, list(INPUTS), list(TARGETS), weights, biases)


class Delta(NamedTuple):
    """One delta: its name, its formula, its value by the formula, and the engine's ``net.grad``."""

    name: str
    formula: str
    by_formula: float
    engine: float


def _nodes(error: Value) -> dict[str, Value]:
    """The labelled nodes of a graph, by label."""
    return {node.label: node for node in toposort(error) if node.label}


def deltas(example: WorkedExample) -> list[Delta]:
    """delta_o1, delta_o2, delta_h1, delta_h2: the article's formulas beside the engine.

    delta_k = dE/dnet_k = (out_k - t_k) out_k (1 - out_k) for an output unit;
    delta_j = dE/dnet_j = out_j (1 - out_j) sum_k delta_k w_jk for a hidden unit.
    The engine holds each one as ``net.grad`` after ``backward()``; here it is
    taken with ``grad()``, which leaves every ``.grad`` as it was.
    """
    _, error = example.forward()
    n = _nodes(error)
    nets = [n[name] for name in ("net_o1", "net_o2", "net_h1", "net_h2")]
    engine = dict(zip(("o1", "o2", "h1", "h2"), grad(error, nets)))
    w = [p.data for p in example.weights]
    rows = []
    out_deltas = []
    for k, t in enumerate(example.targets, start=1):
        out = n[f"out_o{k}"].data
        value = (out - t) * out * (1 - out)
        out_deltas.append(value)
        formula = f"(out_o{k} - t{k}) out_o{k} (1 - out_o{k})"
        rows.append(Delta(f"delta_o{k}", formula, value, engine[f"o{k}"]))
    for j in (1, 2):
        out = n[f"out_h{j}"].data
        w_o1, w_o2 = w[4 + j - 1], w[6 + j - 1]  # h1 feeds o1 through w5 and o2 through w7
        value = out * (1 - out) * (out_deltas[0] * w_o1 + out_deltas[1] * w_o2)
        names = ("w5", "w7") if j == 1 else ("w6", "w8")
        formula = f"out_h{j} (1 - out_h{j}) (delta_o1 {names[0]} + delta_o2 {names[1]})"
        rows.append(Delta(f"delta_h{j}", formula, value, engine[f"h{j}"]))
    return rows


def chain_w1(example: WorkedExample) -> list[tuple[str, float, float | None]]:
    """The article's chain for w1, (quantity, the engine's value, what the article prints).

    dE/dw1 = dE/dout_h1 * dout_h1/dnet_h1 * dnet_h1/dw1, where
    dE/dout_h1 = dE_o1/dout_h1 + dE_o2/dout_h1: out_h1 receives from both outputs.
    """
    _, error = example.forward()
    n = _nodes(error)
    out_h1, net_h1, w1 = n["out_h1"], n["net_h1"], n["w1"]
    (e_o1,) = grad(n["E_o1"], [out_h1])
    (e_o2,) = grad(n["E_o2"], [out_h1])
    (total,) = grad(error, [out_h1])
    (local,) = grad(out_h1, [net_h1])
    (x,) = grad(net_h1, [w1])
    (dw1,) = grad(error, [w1])
    return [
        ("dE_o1/dout_h1", e_o1, ARTICLE_CHAIN["dE_o1/dout_h1"]),
        ("dE_o2/dout_h1", e_o2, ARTICLE_CHAIN["dE_o2/dout_h1"]),
        ("dE/dout_h1 (their sum)", total, ARTICLE_CHAIN["dE/dout_h1"]),
        ("dout_h1/dnet_h1", local, None),
        ("dnet_h1/dw1 (= i1)", x, None),
        ("dE/dw1 (the product)", dw1, None),
    ]


def figures_table() -> str:
    """The article's later figures three ways, as a text table, and why they differ."""
    header = f"{'quantity':<9} {'steps':>6}  {'correct (float64)':>18}  {'article order':>14}  "
    lines = [header + f"{'article prints':>14}"]
    lines += [
        f"{f.quantity:<9} {f.steps:>6}  {f.exact:>18.10g}  {f.article_order:>14.9g}  {f.article:>14.9g}"
        for f in ARTICLE_FIGURES
    ]
    lines += [
        "The article's figures are not rounded: its code computed the hidden-layer gradients with",
        "w5..w8 already updated in the same step (train(steps, reproduce_article=True) does that",
        "and gives its figures to every printed digit). Compute every gradient from the old",
        "weights, then update them all.",
    ]
    return "\n".join(lines)
