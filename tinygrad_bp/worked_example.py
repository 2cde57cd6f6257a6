"""The articles' 2-2-2 worked example, ready to run, with its figures.

Inputs i1 = 0.05, i2 = 0.10; targets 0.01, 0.99; every unit a sigmoid:

    h1 = s(w1 i1 + w2 i2 + b1)      o1 = s(w5 h1 + w6 h2 + b2)
    h2 = s(w3 i1 + w4 i2 + b1)      o2 = s(w7 h1 + w8 h2 + b2)
    E  = 1/2 (t1 - o1)^2 + 1/2 (t2 - o2)^2

with w1..w8 = 0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55, b1 = 0.35,
b2 = 0.60 (one bias shared by a layer, never updated) and learning rate 0.5.

:func:`build` returns the network as an :class:`~tinygrad_bp.nn.MLP` (each
neuron's bias set to its layer's shared value) together with the weights in
the article's order. The exact float64 figures (:data:`FORWARD`,
:data:`CHAIN_RULE`, :data:`GRADIENTS`, :data:`UPDATED_WEIGHTS`) are what the
engine computes; :data:`ARTICLE_FIGURES` puts the article's own later figures
next to the exact ones. The article rounded intermediate values by hand, so
its figures agree with the exact ones to about 6 significant digits after one
step and about 3 after 10,000 steps; nothing here is tuned to match it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from .losses import half_sse
from .nn import MLP
from .optim import SGD

if TYPE_CHECKING:
    from .value import Value

__all__ = [
    "ARTICLE_FIGURES",
    "BIASES",
    "CHAIN_RULE",
    "FORWARD",
    "GRADIENTS",
    "INPUTS",
    "LEARNING_RATE",
    "TARGETS",
    "UPDATED_WEIGHTS",
    "WEIGHTS",
    "ArticleFigure",
    "WorkedExample",
    "agreement",
    "build",
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
    """One later figure of the article next to the exact float64 value."""

    quantity: str
    steps: int
    exact: float
    article: float


ARTICLE_FIGURES: tuple[ArticleFigure, ...] = (
    ArticleFigure("E_total", 1, 0.29102777369359933, 0.291027924),
    ArticleFigure("E_total", 10_000, 3.510187782978859e-05, 0.000035085),
    ArticleFigure("out_o1", 10_000, 0.01591362044355068, 0.015912196),
    ArticleFigure("out_o2", 10_000, 0.9840642735146238, 0.984065734),
)


def agreement(exact: float, article: float) -> float:
    """The number of significant digits two figures share: -log10(|article - exact| / |exact|)."""
    if article == exact:
        return math.inf
    return -math.log10(abs(article - exact) / abs(exact))


@dataclass
class WorkedExample:
    """The 2-2-2 network of the worked example, with its data.

    ``weights`` are w1..w8 in the article's order (the optimizer gets only
    these: the biases are not updated); ``biases`` are every neuron's bias.
    """

    model: MLP
    inputs: list[float]
    targets: list[float]
    weights: list[Value]
    biases: list[Value]
    lr: float = LEARNING_RATE
    steps: int = field(default=0)

    def forward(self) -> tuple[list[Value], Value]:
        """([out_o1, out_o2], E) for the current weights: a fresh graph."""
        outs = self.model(self.inputs)
        outs = outs if isinstance(outs, list) else [outs]
        error = half_sse(outs, self.targets)
        error.label = "E_total"
        return outs, error

    def optimizer(self) -> SGD:
        """Plain gradient descent on the weights only, w = w - lr dE/dw."""
        return SGD(self.weights, lr=self.lr)

    def train(self, steps: int) -> float:
        """Run ``steps`` steps of gradient descent; return E_total after them."""
        optimizer = self.optimizer()
        for _ in range(steps):
            optimizer.zero_grad()
            _, error = self.forward()
            error.backward()
            optimizer.step()
            self.steps += 1
        return self.forward()[1].data


def build() -> WorkedExample:
    """A fresh copy of the worked example's network at its starting weights."""
    w = WEIGHTS
    b1, b2 = BIASES
    model = MLP.from_weights(
        [[[w[0], w[1]], [w[2], w[3]]], [[w[4], w[5]], [w[6], w[7]]]],
        [[b1, b1], [b2, b2]],
        activation="sigmoid",
        output_activation="sigmoid",
    )
    weights = [p for layer in model.layers for n in layer.neurons for p in n.w]
    biases = [n.b for layer in model.layers for n in layer.neurons]
    return WorkedExample(model, list(INPUTS), list(TARGETS), weights, biases)


def figures_table() -> str:
    """The article's later figures next to the exact ones, as a text table."""
    lines = [
        f"{'quantity':<10} {'steps':>6}  {'exact (float64)':>18}  {'the article':>14}  {'digits alike':>12}",
    ]
    lines += [
        f"{f.quantity:<10} {f.steps:>6}  {f.exact:>18.10g}  {f.article:>14.9g}  "
        f"{agreement(f.exact, f.article):>12.1f}"
        for f in ARTICLE_FIGURES
    ]
    lines.append("The article rounded intermediate values by hand; the exact values are what float64 gives.")
    return "\n".join(lines)
