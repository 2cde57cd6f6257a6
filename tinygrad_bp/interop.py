"""Moving networks between tinygrad_bp and PyTorch.

:func:`to_torch` turns an :class:`~tinygrad_bp.nn.MLP` (or a Layer or a
Neuron) into a ``torch.nn.Sequential`` of ``nn.Linear`` layers and
activations, in float64, with the same weights: row j of a Linear's
``weight`` is neuron j's ``w`` and ``bias[j]`` its ``b``, so both compute
``act(W x + b)`` layer by layer. :func:`from_torch` goes the other way.

PyTorch is imported only when one of these functions is called; without it
they raise ImportError naming ``pip install 'tinygrad_bp[torch]'``.

**From a scalar lesson to PyTorch training.** A model of your own, not an
MLP, moves through a tape: record its loss once with
:func:`tinygrad_bp.tape.trace`, then ``tape.to_torch()`` gives a
``torch.nn.Module`` that computes the same graph on batched tensors, its
params one ``nn.Parameter`` (see :mod:`tinygrad_bp.tape.to_torch`). From
there it is PyTorch's: ``module.to("cuda")``, ``torch.optim``, and for
several GPUs or machines ``torch.nn.parallel.DistributedDataParallel(module)``
as for any module::

    tape = trace(lambda x, t: mse_loss(model(x), t), example_x, example_t, params=model.parameters())
    module = tape.to_torch().to(device)
    loss = module(X_batch, T_batch).mean()   # then loss.backward(), opt.step(), as in PyTorch
"""

from __future__ import annotations

from typing import Any

from .nn import MLP, Layer, Module, Neuron

__all__ = ["from_torch", "to_torch"]

_TORCH_HINT = "this needs PyTorch: pip install 'tinygrad_bp[torch]'"

# activation name -> torch.nn class name (the identity has none)
_TO_TORCH = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "linear": None}
_FROM_TORCH = {"Sigmoid": "sigmoid", "Tanh": "tanh", "ReLU": "relu", "Identity": "linear"}


def _torch() -> Any:
    """The torch module, or ImportError saying how to install it."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(_TORCH_HINT) from error
    return torch


def _layers_of(module: Module) -> list[Layer]:
    if isinstance(module, MLP):
        return list(module.layers)
    if isinstance(module, Layer):
        return [module]
    if isinstance(module, Neuron):
        layer = Layer(len(module.w), 1, module.activation, seed=0)
        layer.neurons = [module]
        return [layer]
    raise ValueError(f"to_torch: expected an MLP, a Layer or a Neuron, got {type(module).__name__}")


def to_torch(module: Module) -> Any:
    """A ``torch.nn.Sequential`` (float64) computing the same function with the same weights.

    Each layer becomes ``nn.Linear(nin, nout)`` with ``weight[j][i] = w_i``
    of neuron j and ``bias[j] = b`` of neuron j, followed by ``nn.Sigmoid``,
    ``nn.Tanh`` or ``nn.ReLU`` (nothing for ``"linear"``). The torch
    parameters are copies: training one side does not change the other.
    """
    torch = _torch()
    layers = _layers_of(module)
    parts: list[Any] = []
    with torch.no_grad():
        for layer in layers:
            nin, nout = len(layer.neurons[0].w), len(layer.neurons)
            linear = torch.nn.Linear(nin, nout, dtype=torch.float64)
            rows = [[w.data for w in n.w] for n in layer.neurons]
            linear.weight.copy_(torch.tensor(rows, dtype=torch.float64))
            linear.bias.copy_(torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64))
            parts.append(linear)
            name = _TO_TORCH[layer.activation]
            if name is not None:
                parts.append(getattr(torch.nn, name)())
    return torch.nn.Sequential(*parts)


def _children(torch: Any, module: Any) -> list[Any]:
    """The layers of a Sequential (or a lone Linear), or ValueError."""
    if isinstance(module, torch.nn.Linear):
        return [module]
    if isinstance(module, torch.nn.Sequential):
        return list(module)
    raise ValueError(f"from_torch: expected an nn.Sequential or an nn.Linear, got {type(module).__name__}")


def _read_layers(torch: Any, children: list[Any]) -> tuple[list[Any], list[Any], list[str]]:
    """(weight matrices, bias lists, activation names) of Linear + activation layers."""
    weights: list[list[list[float]]] = []
    biases: list[list[float]] = []
    activations: list[str | None] = []
    for index, child in enumerate(children):
        kind = type(child).__name__
        if isinstance(child, torch.nn.Linear):
            w = child.weight.detach().to(torch.float64)
            if weights and w.shape[1] != len(weights[-1]):
                raise ValueError(
                    f"from_torch: layer {index} ({child}) takes {w.shape[1]} inputs, "
                    f"but the layer before gives {len(weights[-1])}"
                )
            weights.append(w.tolist())
            b = child.bias
            biases.append([0.0] * w.shape[0] if b is None else b.detach().to(torch.float64).tolist())
            activations.append(None)
        elif kind in _FROM_TORCH and type(child) is getattr(torch.nn, kind):
            if not weights:
                raise ValueError(f"from_torch: layer {index} ({child}) comes before any nn.Linear")
            if activations[-1] is not None:
                raise ValueError(f"from_torch: layer {index} ({child}) is a second activation in a row")
            activations[-1] = _FROM_TORCH[kind]
        else:
            supported = "nn.Linear, " + ", ".join(f"nn.{k}" for k in _FROM_TORCH)
            raise ValueError(f"from_torch: unsupported layer {index}: {child} (supported: {supported})")
    if not weights:
        raise ValueError("from_torch: the module has no nn.Linear layer")
    return weights, biases, [a or "linear" for a in activations]


def from_torch(module: Any) -> MLP:
    """An MLP with the weights of a ``torch.nn.Sequential`` of ``nn.Linear`` layers and activations.

    Supported: ``nn.Linear`` (with or without bias), each optionally
    followed by one ``nn.Sigmoid``, ``nn.Tanh``, ``nn.ReLU`` or ``nn.Identity``;
    a lone ``nn.Linear`` works too. Every hidden layer must use the same
    activation (an MLP has one hidden activation and one output activation).
    Anything else (another layer type, an activation before the first
    Linear or two in a row, mismatched sizes) raises ValueError naming it.
    Weights are copied as float64.
    """
    torch = _torch()
    weights, biases, acts = _read_layers(torch, _children(torch, module))
    hidden = set(acts[:-1])
    if len(hidden) > 1:
        raise ValueError(
            f"from_torch: the hidden layers use different activations {acts[:-1]}; "
            "an MLP has one hidden activation"
        )
    activation = hidden.pop() if hidden else acts[-1]
    return MLP.from_weights(weights, biases, activation=activation, output_activation=acts[-1])
