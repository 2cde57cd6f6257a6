"""A recorded graph as a PyTorch module: the path from a scalar lesson to PyTorch training.

:meth:`tinygrad_bp.tape.Tape.to_torch` builds a :class:`TapeModule`, a
``torch.nn.Module`` whose ``forward`` computes the tape's Wengert list on
batched tensors, one instruction at a time, with each operation's forward
taken from the rule table (its array form, compiled with PyTorch's functions
in place of NumPy's). The tape's params are one ``nn.Parameter`` vector
(``module.params[j]`` is the tape's ``params[j]``) and its constants a buffer,
so the module moves to any device torch supports (``module.to("cuda")``),
and ``torch.optim``, ``torch.compile`` and DistributedDataParallel apply as
to any module. Gradients come from torch's autograd over the same
operations; they equal the tape's (tested).

A custom operation (:func:`tinygrad_bp.custom_op`) has no array form, so a
tape that uses one is refused by name. Outside an operation's domain the
module gives what torch gives (nan or inf), as any PyTorch model does.
"""

from __future__ import annotations

import math
import types
from typing import TYPE_CHECKING, Any

from tinygrad_bp.expressions import Signature, array_backend, compile_expressions

if TYPE_CHECKING:
    from .replay import Tape

__all__ = ["TapeModule", "to_torch"]

_TORCH_HINT = "Tape.to_torch needs PyTorch: pip install 'tinygrad_bp[torch]'"


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise ImportError(_TORCH_HINT) from error
    return torch


def _torch_namespace(torch: Any) -> types.SimpleNamespace:
    """The functions the table's array forms call, as PyTorch's (the NumPy backend's names)."""

    def fsum(terms: Any) -> Any:
        return terms.sum(dim=1)

    def fmax(terms: Any) -> Any:
        return terms.amax(dim=1)

    def dot(w: Any, x: Any) -> Any:
        return (w * x).sum(dim=1)

    softplus = torch.nn.functional.softplus
    return array_backend(
        torch, sigmoid=torch.sigmoid, softplus=softplus, fsum=fsum, fmax=fmax, dot=dot
    )


def to_torch(tape: Tape, dtype: Any = None) -> Any:
    """The :class:`TapeModule` of ``tape`` (float64 unless ``dtype`` says otherwise)."""
    torch = _torch()
    namespace = _torch_namespace(torch)
    graph = tape._graph
    forms = []
    for ins, rule in zip(graph.instructions, graph.rules):
        if rule.definition is None:
            msg = f"Tape.to_torch: the custom operation {rule.name!r} has no PyTorch form"
            raise NotImplementedError(msg)
        d = rule.definition
        signature = Signature(d.inputs)
        forward, _ = compile_expressions(
            d.name, signature, d.forward, d.derivatives, "array", namespace, d.domain, given=d.given
        )
        forms.append((ins, signature, forward))
    return _module_class(torch)(tape, forms, dtype or torch.float64)


def _module_class(torch: Any) -> type:  # noqa: C901 - the class is defined here: torch is optional
    """TapeModule, defined on first use (torch is optional)."""
    global TapeModule  # noqa: PLW0603 - defined once torch is imported
    if isinstance(TapeModule, type):
        return TapeModule

    class _TapeModule(torch.nn.Module):  # torch is Any here (optional): the base class is not checked
        """A tape's graph as a torch module: ``forward(*inputs)`` gives the per-sample outputs.

        Inputs are shaped as for :meth:`Tape.forward`: each argument as the
        example was, or with a leading batch dimension. The output has shape
        (batch,) (or () for one sample); with aux outputs, a pair
        ``(output, aux)`` with aux of shape (batch, m).
        """

        def __init__(self, tape: Tape, forms: list[Any], dtype: Any) -> None:
            super().__init__()
            graph = tape._graph
            self._graph = graph
            self._shapes = tape.shapes
            self._forms = forms
            data = [p._data for p in graph.params]
            self.params = torch.nn.Parameter(torch.tensor(data, dtype=dtype))
            constants = [c._data for c in graph.constants]
            self.register_buffer("constants", torch.tensor(constants, dtype=dtype))

        def _inputs(self, args: tuple[Any, ...]) -> tuple[list[Any], bool]:
            if len(args) != len(self._shapes):
                msg = f"the tape takes {len(self._shapes)} argument(s), got {len(args)}"
                raise TypeError(msg)
            tensors = [torch.as_tensor(a, dtype=self.params.dtype, device=self.params.device) for a in args]
            batched = bool(tensors) and tensors[0].dim() == len(self._shapes[0]) + 1
            columns: list[Any] = []
            for t, shape in zip(tensors, self._shapes):
                flat = t.reshape(t.shape[0], -1) if batched else t.reshape(1, -1)
                if flat.shape[1] != math.prod(shape):
                    msg = f"an argument of shape {tuple(t.shape)} does not match the example's {shape}"
                    raise ValueError(msg)
                columns += list(flat.T)
            return columns, batched

        def forward(self, *args: Any) -> Any:
            """The recorded graph on a batch, one instruction at a time (each node a (batch,) tensor)."""
            columns, batched = self._inputs(args)
            values: dict[int, Any] = dict(enumerate(columns))
            base = len(columns)
            # every node is (batch,) or (1,): a uniform value broadcasts against the batch
            for j in range(self.params.shape[0]):
                values[base + j] = self.params[j : j + 1]
            base += self.params.shape[0]
            for j in range(self.constants.shape[0]):
                values[base + j] = self.constants[j : j + 1]
            for ins, signature, forward in self._forms:
                operands = [values[a] for a in ins.args]
                parts = []
                for (lo, hi), is_group in zip(signature.spans(len(operands)), signature.is_group):
                    if is_group:
                        parts.append(torch.stack(torch.broadcast_tensors(*operands[lo:hi]))[None])
                    else:
                        parts.append(operands[lo][None])
                values[ins.out] = forward(*parts)[0]
            batch = columns[0].shape[0] if columns else 1
            outs = [values[o].expand(batch) for o in self._graph.outputs]
            output = outs[0] if batched else outs[0][0]
            if len(outs) == 1:
                return output
            aux = torch.stack(outs[1:], dim=1)
            return output, aux if batched else aux[0]

    TapeModule = _TapeModule
    return TapeModule


TapeModule: Any = None
"""The class of :func:`to_torch`'s modules (a ``torch.nn.Module``; defined once torch is imported)."""
