"""Neurons, layers and multi-layer perceptrons built from Values.

A neuron computes ``act(w . x + b)``: by default (``fused=True``) the weighted
sum is ONE ``linear`` node (d/dw_i = x_i, d/dx_i = w_i, d/db = 1) and the
activation one more node, so drawings of big networks stay readable. With
``fused=False`` the sum is built as micrograd builds it, b + w0*x0 + w1*x1 +
..., from binary ``*`` and ``+`` nodes, so a drawing, the stepper and
``explain`` show every product and every addition. The numbers are the same
either way; the gradients of a perceptron, a layer or a deep network all come
out of the engine's general reverse mode.

Every parameter and every node a module makes carries a label naming the
module (``layer1.neuron0.w1``, ``layer1.neuron0.net``, ``layer1.neuron0.out``),
which drawings use to group nodes into clusters and steppers to name steps.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .value import NO_GRAD, Value, _finite_float, as_value, linear

__all__ = ["ACTIVATIONS", "MLP", "Layer", "Module", "Neuron"]

StateDict = dict[str, Any]

# activation name -> the Value method that applies it (None: the identity)
ACTIVATIONS: dict[str, Callable[[Value], Value] | None] = {
    "sigmoid": Value.sigmoid,
    "tanh": Value.tanh,
    "relu": Value.relu,
    "linear": None,
}


def _activation(name: str) -> Callable[[Value], Value] | None:
    """The function for an activation name, or ValueError listing the known names."""
    if name not in ACTIVATIONS:
        known = ", ".join(repr(k) for k in ACTIVATIONS)
        msg = f"unknown activation {name!r}; choose one of {known}"
        raise ValueError(msg)
    return ACTIVATIONS[name]


def _check_count(what: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        msg = f"{what} must be a positive int, got {n!r}"
        raise ValueError(msg)
    return n


def _rng(seed: int | random.Random | None) -> random.Random:
    """A private generator: the global ``random`` state is never touched."""
    return seed if isinstance(seed, random.Random) else random.Random(seed)


def _number(key: str, x: object) -> float:
    """``x`` as a finite float, or ValueError naming ``key`` (also for an int too large for a float)."""
    value = _finite_float(x)
    if value is None:
        shown = repr(x) if len(repr(x)) <= 40 else f"a number of {len(repr(x))} characters"
        msg = f"state_dict[{key!r}]: expected a finite number, got {shown}"
        raise ValueError(msg)
    return value


def _vector(key: str, xs: object, n: int) -> list[float]:
    """``xs`` as a list of n finite floats, or ValueError naming ``key`` and the shape."""
    if not isinstance(xs, (list, tuple)) or len(xs) != n:
        got = f"length {len(xs)}" if isinstance(xs, (list, tuple)) else type(xs).__name__
        msg = f"state_dict[{key!r}]: expected a list of {n} numbers, got {got}"
        raise ValueError(msg)
    return [_number(f"{key}[{i}]", x) for i, x in enumerate(xs)]


def _check_fused(fused: object) -> bool:
    if not isinstance(fused, bool):
        msg = f"fused must be True or False, not {fused!r}"
        raise TypeError(msg)
    return fused


def _unfused_sum(w: Sequence[Value], x: Sequence[Value | float], b: Value) -> Value:
    """b + w0*x0 + w1*x1 + ... from binary nodes, as micrograd builds a neuron."""
    net = b
    for wi, xi in zip(w, x):
        net = net + wi * xi
    return net


def _unique(params: list[Value]) -> list[Value]:
    """``params`` without repeats, in order: a Value shared by two neurons is one parameter.

    Values hash by identity, so ``dict.fromkeys`` does it in C; the list itself is returned
    when nothing repeats (the tape asks for the parameters on every replay).
    """
    unique = dict.fromkeys(params)
    return params if len(unique) == len(params) else list(unique)


class _LoadMethod:
    """``module.load(path)`` loads into the module; ``MLP.load(path)`` builds a new one from the file."""

    def __get__(self, obj: Module | None, cls: type[Module]) -> Callable[[str | os.PathLike[str]], Any]:
        if obj is None:
            return cls._load_new
        return obj._load_into


class Module:
    """Base class: parameters, zero_grad, and JSON state (never pickle)."""

    name: str = "module"

    def parameters(self) -> list[Value]:
        """Every trainable Value of this module, in a fixed order."""
        return []

    def named_parameters(self) -> list[tuple[str, Value]]:
        """(label, parameter) pairs."""
        return [(p.label, p) for p in self.parameters()]

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to 0.0 (``NO_GRAD``: no gradient yet, as torch's None)."""
        for p in self.parameters():
            p._grad = NO_GRAD  # the slot behind .grad

    def state_dict(self) -> StateDict:
        """The parameters as plain JSON types (lists and floats)."""
        raise NotImplementedError

    def _assign(self, state: Mapping[str, Any]) -> Callable[[], None]:
        """Validate ``state`` completely and return the function that writes it."""
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Set the parameters from ``state``.

        A missing or unexpected key, a wrong shape or a non-number raises
        ValueError naming it, and then no parameter has changed.
        """
        if not isinstance(state, Mapping):
            msg = f"load_state_dict: expected a dict, got {type(state).__name__}"
            raise ValueError(msg)  # noqa: TRY004 - API.md: a bad state is always ValueError
        expected = set(self.state_dict())
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected, key=repr)  # keys may be of any type: not only str
        if missing:
            msg = f"load_state_dict: missing key(s) {missing}"
            raise ValueError(msg)
        if unexpected:
            msg = f"load_state_dict: unexpected key(s) {unexpected}"
            raise ValueError(msg)
        self._assign(state)()

    def config(self) -> dict[str, Any]:
        """The constructor's arguments that fix this module's shape (saved beside the state)."""
        return {}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the configuration and the state as JSON to ``path``."""
        document = {"format": "tinygrad_bp", "version": 1, "module": type(self).__name__}
        document["config"] = self.config()
        document["state"] = self.state_dict()
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1)

    load = _LoadMethod()

    def _load_into(self, path: str | os.PathLike[str]) -> None:
        """``module.load(path)``: set this module's parameters from a file written by :meth:`save`."""
        self.load_state_dict(_read_module_file(path, type(self))["state"])

    @classmethod
    def _load_new(cls, path: str | os.PathLike[str]) -> Module:
        """``MLP.load(path)``: a new module built from a file written by :meth:`save`."""
        document = _read_module_file(path, cls)
        config = document.get("config")
        if not isinstance(config, dict):
            msg = f"load: {os.fspath(path)!r} has no configuration to build a {cls.__name__} from"
            raise ValueError(msg)  # noqa: TRY004 - a bad file is a ValueError, as API.md says
        declared, stored = _declared_parameters(cls.__name__, config), _count_numbers(document["state"])
        if declared is not None and declared > stored:  # a small file must not build a huge model
            msg = (
                f"load: {os.fspath(path)!r} describes a {cls.__name__} of {declared:,} parameters but "
                f"holds {stored:,} numbers; nothing was built"
            )
            raise ValueError(msg)
        try:
            module = cls(**config)
        except (TypeError, ValueError) as error:
            msg = f"load: {os.fspath(path)!r} holds a configuration {cls.__name__} rejects: {error}"
            raise ValueError(msg) from None
        module.load_state_dict(document["state"])
        return module


def _count_numbers(state: object) -> int:
    """How many numbers a (nested) state holds: what a file can build is bounded by its size."""
    if isinstance(state, dict):
        return sum(_count_numbers(v) for v in state.values())
    if isinstance(state, list):
        return sum(_count_numbers(v) for v in state)
    return 1


def _declared_parameters(module: str, config: Mapping[str, Any]) -> int | None:
    """The number of parameters a saved configuration describes, before anything is built (None: unknown)."""
    try:
        if module == "Neuron":
            return int(config["nin"]) + 1
        if module == "Layer":
            return (int(config["nin"]) + 1) * int(config["nout"])
        if module == "MLP":
            sizes = [int(config["nin"]), *(int(n) for n in config["nouts"])]
            return sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    except (KeyError, TypeError, ValueError):
        return None  # the constructor's own checks name what is wrong
    return None


MAX_STATE_BYTES = 256 * 2**20
"""The largest state file :meth:`Module.load` reads (256 MiB: some 10 million parameters as JSON)."""


def _read_module_file(path: str | os.PathLike[str], cls: type) -> dict[str, Any]:
    """The JSON document of a saved module, checked to be one of class ``cls``; else ValueError.

    Only a regular file is read (not a device such as /dev/zero, not a pipe), and at
    most :data:`MAX_STATE_BYTES` of it.
    """
    name = os.fspath(path)
    if Path(name).exists() and not Path(name).is_file():
        msg = f"load: {name!r} is not a regular file"
        raise ValueError(msg)
    with open(name, "rb") as f:
        raw = f.read(MAX_STATE_BYTES + 1)
    if len(raw) > MAX_STATE_BYTES:
        msg = f"load: {name!r} is larger than the limit of {MAX_STATE_BYTES:,} bytes (nn.MAX_STATE_BYTES)"
        raise ValueError(msg)
    try:
        document = json.loads(raw.decode("utf-8"))
    except RecursionError:
        msg = f"load: {name!r} is not a tinygrad_bp state file (its JSON is nested too deeply)"
        raise ValueError(msg) from None
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError, or an int of too many digits
        msg = f"load: {name!r} is not a valid JSON state file ({str(error)[:200]})"
        raise ValueError(msg) from None
    valid = isinstance(document, dict) and document.get("format") == "tinygrad_bp"
    if not valid or "state" not in document:
        msg = f"load: {os.fspath(path)!r} is not a tinygrad_bp state file"
        raise ValueError(msg)
    if document.get("module") != cls.__name__:
        msg = f"load: the file holds a {document.get('module')!r}, not a {cls.__name__!r}"
        raise ValueError(msg)
    checked: dict[str, Any] = document
    return checked


class Neuron(Module):
    """``act(w . x + b)`` over ``nin`` inputs.

    Weights and bias start uniform in [-1/sqrt(nin), 1/sqrt(nin)] (PyTorch's
    ``nn.Linear`` default), drawn from ``random.Random(seed)``.
    """

    def __init__(
        self,
        nin: int,
        activation: str = "relu",
        seed: int | random.Random | None = None,
        *,
        name: str = "neuron",
        fused: bool = True,
    ) -> None:
        _check_count("Neuron: nin", nin)
        self._act = _activation(activation)
        self.activation = activation
        self.fused = _check_fused(fused)
        rng = _rng(seed)
        bound = 1.0 / math.sqrt(nin)
        self.w = [Value(rng.uniform(-bound, bound)) for _ in range(nin)]
        self.b = Value(rng.uniform(-bound, bound))
        self.rename(name)

    @classmethod
    def from_weights(
        cls,
        w: Sequence[float],
        b: float,
        activation: str = "relu",
        *,
        name: str = "neuron",
        fused: bool = True,
    ) -> Neuron:
        """A neuron with the given weights and bias (for worked examples)."""
        neuron = cls(len(w), activation, seed=0, name=name, fused=fused)
        neuron.load_state_dict({"weight": list(w), "bias": b})
        return neuron

    def rename(self, name: str, *, net: str | None = None, out: str | None = None) -> None:
        """Name this neuron and relabel its parameters and the nodes it makes.

        The nodes it makes are labelled ``net`` (the weighted sum, default
        ``name.net``) and ``out`` (after the activation, default ``name.out``).
        """
        self.name = name
        for i, w in enumerate(self.w):
            w.label = f"{name}.w{i}"
        self.b.label = f"{name}.b"
        self._net_label = f"{name}.net" if net is None else net
        self._out_label = f"{name}.out" if out is None else out

    def __call__(self, x: Sequence[Value | float]) -> Value:
        """act(w . x + b) for the inputs ``x`` (Values or numbers)."""
        if len(x) != len(self.w):
            msg = f"{self.name}: expected {len(self.w)} inputs, got {len(x)}"
            raise ValueError(msg)
        net = linear(self.w, x, self.b) if self.fused else _unfused_sum(self.w, x, self.b)
        net.label = self._net_label
        if self._act is None:
            return net
        out = self._act(net)
        out.label = self._out_label
        return out

    def config(self) -> dict[str, Any]:
        """{"nin", "activation", "name", "fused"}."""
        return {"nin": len(self.w), "activation": self.activation, "name": self.name, "fused": self.fused}

    def parameters(self) -> list[Value]:
        """[w_0, ..., w_{n-1}, b]."""
        return [*self.w, self.b]

    def state_dict(self) -> StateDict:
        """{"weight": [w_0, ...], "bias": b}."""
        return {"weight": [w.data for w in self.w], "bias": self.b.data}

    def _assign(self, state: Mapping[str, Any]) -> Callable[[], None]:
        weights = _vector("weight", state["weight"], len(self.w))
        bias = _number("bias", state["bias"])

        def write() -> None:
            for w, x in zip(self.w, weights):
                w.data = x
            self.b.data = bias

        return write

    def __repr__(self) -> str:
        fused = "" if self.fused else ", fused=False"
        return f"Neuron({len(self.w)}, activation={self.activation!r}, name={self.name!r}{fused})"


class Layer(Module):
    """``nout`` neurons over the same ``nin`` inputs; ``layer(x)`` always returns a list."""

    def __init__(
        self,
        nin: int,
        nout: int,
        activation: str = "relu",
        seed: int | random.Random | None = None,
        *,
        name: str = "layer",
        fused: bool = True,
    ) -> None:
        _check_count("Layer: nin", nin)
        _check_count("Layer: nout", nout)
        rng = _rng(seed)
        self.activation = activation
        self.fused = _check_fused(fused)
        self.neurons = [
            Neuron(nin, activation, rng, name=f"{name}.neuron{j}", fused=fused) for j in range(nout)
        ]
        self.name = name

    @classmethod
    def from_weights(
        cls,
        weights: Sequence[Sequence[float]],
        biases: Sequence[float],
        activation: str = "relu",
        *,
        name: str = "layer",
        fused: bool = True,
    ) -> Layer:
        """A layer from a weight matrix (one row per neuron) and one bias per neuron."""
        if not weights or not isinstance(weights[0], (list, tuple)):
            msg = "Layer.from_weights: weights must be a non-empty list of rows"
            raise ValueError(msg)
        layer = cls(len(weights[0]), len(weights), activation, seed=0, name=name, fused=fused)
        layer.load_state_dict({"weight": [list(r) for r in weights], "bias": list(biases)})
        return layer

    def rename(self, name: str) -> None:
        """Name this layer and its neurons (``name.neuron{j}``)."""
        self.name = name
        for j, n in enumerate(self.neurons):
            n.rename(f"{name}.neuron{j}")

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        """Every neuron's output, as a list."""
        shared = [xi if isinstance(xi, Value) else as_value(xi) for xi in x]  # one constant per input
        return [n(shared) for n in self.neurons]

    def config(self) -> dict[str, Any]:
        """{"nin", "nout", "activation", "name", "fused"}."""
        nin = len(self.neurons[0].w)
        return {
            "nin": nin,
            "nout": len(self.neurons),
            "activation": self.activation,
            "name": self.name,
            "fused": self.fused,
        }

    def parameters(self) -> list[Value]:
        """Each neuron's parameters in turn (a Value shared by neurons once)."""
        return _unique([p for n in self.neurons for p in (*n.w, n.b)])

    def state_dict(self) -> StateDict:
        """{"weight": one row per neuron, "bias": one number per neuron}."""
        return {
            "weight": [[w.data for w in n.w] for n in self.neurons],
            "bias": [n.b.data for n in self.neurons],
        }

    def _assign(self, state: Mapping[str, Any]) -> Callable[[], None]:
        rows = state["weight"]
        if not isinstance(rows, (list, tuple)) or len(rows) != len(self.neurons):
            got = f"{len(rows)} rows" if isinstance(rows, (list, tuple)) else type(rows).__name__
            msg = f"state_dict['weight']: expected {len(self.neurons)} rows, got {got}"
            raise ValueError(msg)
        biases = _vector("bias", state["bias"], len(self.neurons))
        writes = [
            n._assign({"weight": _vector(f"weight[{j}]", row, len(n.w)), "bias": bias})
            for j, (n, row, bias) in enumerate(zip(self.neurons, rows, biases))
        ]

        def write() -> None:
            for w in writes:
                w()

        return write

    def __repr__(self) -> str:
        nin = len(self.neurons[0].w)
        fused = "" if self.fused else ", fused=False"
        return f"Layer({nin}, {len(self.neurons)}, activation={self.activation!r}, name={self.name!r}{fused})"


class MLP(Module):
    """A multi-layer perceptron: ``nin`` inputs, then one layer per entry of ``nouts``.

    Hidden layers use ``activation``, the last one ``output_activation``.
    ``mlp(x)`` returns a Value when the last layer has one output, else a list.
    Layers are named ``layer1``, ``layer2``, ... (``layer1`` is the first hidden layer).
    """

    def __init__(
        self,
        nin: int,
        nouts: Sequence[int],
        activation: str = "relu",
        output_activation: str = "linear",
        seed: int | random.Random | None = None,
        *,
        fused: bool = True,
    ) -> None:
        _check_count("MLP: nin", nin)
        if not nouts:
            msg = "MLP: nouts must list at least one layer size"
            raise ValueError(msg)
        rng = _rng(seed)
        sizes = [nin, *nouts]
        self.activation = activation
        self.output_activation = output_activation
        self.fused = _check_fused(fused)
        self.layers = [
            Layer(
                sizes[i],
                sizes[i + 1],
                activation if i < len(nouts) - 1 else output_activation,
                rng,
                name=f"layer{i + 1}",
                fused=fused,
            )
            for i in range(len(nouts))
        ]
        self.name = "mlp"

    @classmethod
    def from_weights(
        cls,
        weights: Sequence[Sequence[Sequence[float]]],
        biases: Sequence[Sequence[float]],
        activation: str = "relu",
        output_activation: str = "linear",
        *,
        fused: bool = True,
    ) -> MLP:
        """An MLP from one weight matrix (rows = neurons) and one bias list per layer."""
        if not weights:
            msg = "MLP.from_weights: at least one layer is needed"
            raise ValueError(msg)
        nin = len(weights[0][0])
        mlp = cls(nin, [len(w) for w in weights], activation, output_activation, seed=0, fused=fused)
        state: StateDict = {}
        for i, (w, b) in enumerate(zip(weights, biases)):
            state[f"layer{i + 1}.weight"] = [list(r) for r in w]
            state[f"layer{i + 1}.bias"] = list(b)
        mlp.load_state_dict(state)
        return mlp

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        """The last layer's output: a Value if it has one neuron, else a list."""
        out: Sequence[Value | float] = x
        for layer in self.layers:
            out = layer(out)
        return out[0] if len(out) == 1 else list(out)  # type: ignore[return-value, arg-type]

    def config(self) -> dict[str, Any]:
        """{"nin", "nouts", "activation", "output_activation", "fused"}."""
        return {
            "nin": len(self.layers[0].neurons[0].w),
            "nouts": [len(layer.neurons) for layer in self.layers],
            "activation": self.activation,
            "output_activation": self.output_activation,
            "fused": self.fused,
        }

    def parameters(self) -> list[Value]:
        """Each layer's parameters in turn (a Value shared by neurons once)."""
        return _unique([p for layer in self.layers for n in layer.neurons for p in (*n.w, n.b)])

    def state_dict(self) -> StateDict:
        """{"layer1.weight": rows, "layer1.bias": list, "layer2.weight": ...}."""
        state: StateDict = {}
        for layer in self.layers:
            for key, value in layer.state_dict().items():
                state[f"{layer.name}.{key}"] = value
        return state

    def _assign(self, state: Mapping[str, Any]) -> Callable[[], None]:
        writes = []
        for layer in self.layers:
            prefix = f"{layer.name}."
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                writes.append(layer._assign(part))
            except ValueError as error:
                msg = str(error).replace("state_dict['", f"state_dict['{prefix}")
                raise ValueError(msg) from None

        def write() -> None:
            for w in writes:
                w()

        return write

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        sizes = [len(self.layers[0].neurons[0].w)] + [len(layer.neurons) for layer in self.layers]
        fused = "" if self.fused else ", fused=False"
        return (
            f"MLP({sizes[0]}, {sizes[1:]}, activation={self.activation!r}, "
            f"output_activation={self.output_activation!r}{fused})"
        )
