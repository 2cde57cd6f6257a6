"""tinygrad_bp: a scalar automatic-differentiation engine for learning backpropagation.

A :class:`Value` records every operation into a graph; :meth:`Value.backward`
runs the chain rule over it in reverse topological order.
"""

from __future__ import annotations

from .custom import custom_op
from .engine import backward, grad, toposort
from .errors import (
    DomainError,
    GradcheckError,
    GraphTooLargeError,
    GraphvizNotFoundError,
    NonDifferentiableError,
    OperationOverflowError,
    TapeMismatchError,
    TinygradBPError,
    UnknownOperationError,
    UnusedInputError,
    ZeroDivisionInOperationError,
)
from .gradcheck import gradcheck
from .nn import MLP, Layer, Module, Neuron
from .optim import SGD, Adam
from .value import (
    Value,
    as_value,
    constant,
    cos,
    enable_grad,
    exp,
    is_grad_enabled,
    linear,
    log,
    no_grad,
    relu,
    sigmoid,
    sin,
    softplus,
    sqrt,
    sum,  # noqa: A004, F401 - tinygrad_bp.sum, as torch.sum; not in __all__
    tanh,
)

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "DomainError",
    "GradcheckError",
    "GraphTooLargeError",
    "GraphvizNotFoundError",
    "Layer",
    "Module",
    "Neuron",
    "NonDifferentiableError",
    "OperationOverflowError",
    "TapeMismatchError",
    "TinygradBPError",
    "UnknownOperationError",
    "UnusedInputError",
    "Value",
    "ZeroDivisionInOperationError",
    "__version__",
    "as_value",
    "backward",
    "constant",
    "cos",
    "custom_op",
    "enable_grad",
    "exp",
    "grad",
    "gradcheck",
    "is_grad_enabled",
    "linear",
    "log",
    "no_grad",
    "relu",
    "sigmoid",
    "sin",
    "softplus",
    "sqrt",
    "tanh",
    "toposort",
]
