"""micrograd 0.1.0's API on tinygrad_bp's engine: its programs run with only the import changed.

    from tinygrad_bp.micrograd.engine import Value      # was: from micrograd.engine import Value
    from tinygrad_bp.micrograd.nn import MLP            # was: from micrograd.nn import MLP

``Value(data, _children=(), _op='', label='')`` with ``_prev``, ``_op`` and
``_backward()``; ``Module``, ``Neuron(nin, nonlin=True)``, ``Layer(nin, nout,
**kwargs)`` and ``MLP(nin, nouts)`` initialised from the global ``random`` as
micrograd does (weights uniform in [-1, 1], bias 0), so ``random.seed(1337)``
gives micrograd's weights. The differences are the engine's: repeated
``backward()`` calls do not compound intermediate gradients, there is no
recursion limit, and an operation outside its domain raises an error instead
of returning NaN.
"""

from __future__ import annotations

from . import engine, nn

__all__ = ["engine", "nn"]
