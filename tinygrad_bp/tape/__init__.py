"""Record once, replay fast: a tape (Wengert list) of a scalar graph, replayed on whole batches.

The scalar engine builds a fresh graph of :class:`~tinygrad_bp.Value` objects for every sample.
A *tape* records that graph ONCE, as the classic Wengert list: one line per operation, each
naming its operands, printable for teaching::

    >>> from tinygrad_bp import MLP
    >>> from tinygrad_bp.losses import half_sse
    >>> from tinygrad_bp.tape import trace
    >>> model = MLP(2, [2, 1], activation="sigmoid", output_activation="sigmoid", seed=0)
    >>> tape = trace(lambda x, t: half_sse(model(x), t), [0.05, 0.10], 0.01,
    ...              params=model.parameters())
    >>> print(tape)                                     # doctest: +ELLIPSIS
    # tape: inputs x[0], x[1], t; params p0..p8; 7 instructions, 5 kernels
    #   p0 = layer1.neuron0.w0
    ...
    v0 = linear(p0, p1, x[0], x[1], p2)
    v1 = sigmoid(v0)
    v2 = linear(p3, p4, x[0], x[1], p5)
    v3 = sigmoid(v2)
    v4 = linear(p6, p7, v1, v3, p8)
    v5 = sigmoid(v4)
    v6 = half_sse(v5, t)
    return v6
    >>> print(tape.kernels())
    level 1: 2 x linear (per sample), n=2: one (2x2) @ (2xB) matrix product
    level 2: 2 x sigmoid (per sample)
    level 3: 1 x linear (per sample), n=2: one (1x2) @ (2xB) matrix product
    level 4: 1 x sigmoid (per sample)
    level 5: 1 x half_sse (per sample): broadcast products

and then replays it on new inputs, a single sample or a whole batch, without creating any Value:

* ``tape.forward(X, t)`` with ``X`` of shape (n, 2) and ``t`` of shape (n,) gives the n
  per-sample outputs; ``tape.backward()`` then gives d L / d param for the batch loss
  ``L = mean_i out_i`` (``reduction="mean"``, the default) or ``L = sum_i out_i`` (``"sum"``), and
  optionally d L / d input for every sample. ``tape.value_and_grad(X, t)`` does both at once.
* ``tape.run(x, t)`` replays the list one instruction at a time on Python floats, with the same
  rule functions as the engine (the textbook interpreter; also the reference for custom ops).

**Batch replay.** At record time the instructions are compiled into *kernels*: the instructions of
one topological level that apply the same operation to operands of the same kind become ONE array
operation over all of them and over the whole batch. All ``linear`` nodes of a level that read the
same inputs x (an MLP layer) become one matrix product ``W @ X + b`` with W (k x n) and X (n x
batch); all ``sigmoid`` nodes of a level become one ``np`` call, and so on. Values live in two
arrays: ``V[row, sample]`` for nodes that depend on the per-sample inputs, ``U[row, 0]`` for nodes
that do not (parameters, constants, and operations over them only, such as an L2 penalty, computed
once per batch). Index arrays are precomputed; a kernel whose operand rows are contiguous reads a
view, and one that reads only inputs of one argument (a first layer's X) reads the caller's array
itself, transposed as a view, not a copy. The backward pass runs the same kernels in reverse,
accumulating gradients with ``+=`` on rows (``np.add.at`` where an operand row repeats), and sums
over the batch the gradient of every node of ``U``. A kernel applies the array form of its
operation's row of the rule table (:meth:`tinygrad_bp.rules.Rule.array`), compiled from the same
text as the engine's derivatives: the tape restates none. A custom operation
(:func:`tinygrad_bp.custom_op`) is evaluated element by element with its own ``forward``/``local``
functions through ``np.vectorize``: correct, at scalar speed.

**What a tape captures.** The operations and their wiring (which node feeds which operand, in
order), which leaves are per-sample *inputs*, which are *params* (the Values whose gradients are
returned) and which are *constants* (every other leaf; ``requires_grad`` is False), and, for
:func:`trace`, the example's shapes. Values are NOT captured: params and constants are read from
their Values' ``.data`` at every replay, so optimizer updates are seen; inputs come from the
arrays passed in.

**No silent staleness.** A tape describes one graph structure. Python code that builds the graph
can make the structure depend on values; :func:`trace` watches for that while it runs ``fn``:

* a comparison of Values (``v > 0``, ``max(a, b)``, ``sorted``): ``Value.__lt__`` and friends read
  ``.data``. Each comparison is kept as a *guard* (subject, operator, other side, result) and
  re-evaluated, vectorised, on EVERY sample of every replay; a sample whose result differs raises
  :class:`~tinygrad_bp.errors.TapeMismatchError`. (``relu``/``abs`` are operations, not control
  flow, and need no guard.)
* reading a value out of the graph: ``float(v)``, ``v.item()``, ``format(v, spec)``,
  ``v.detach()``, a ``no_grad`` block, or ``v.data`` read from outside the library's own
  operation code (a loss written to shift by ``max(z.data)``, say). What the number is
  used for is invisible, so such a tape replays only when every sample is re-traced
  (``check="all"``) -- or, when only param-dependent values were read, with at least
  ``check="first"``. :func:`trace` refuses a weaker ``check`` at once, naming the place.
* Anything else (hidden Python state: a flag, a counter, a random draw) is caught by
  re-tracing: ``check="first"`` (the default) runs ``fn`` again with the scalar engine on the
  first sample of each replayed batch and compares the structure signature (every instruction
  and every constant's value); ``check="all"`` does so for every sample (scalar speed);
  ``check="none"`` skips it. A difference raises TapeMismatchError naming the first differing
  instruction. ``check="first"`` sees only the first sample of each batch: state that changes
  from sample to sample (a random draw per call, as in dropout) needs ``check="all"`` or the
  scalar engine. (Reading a value through ``str(v)`` or ``repr(v)`` is not watched either.)

Inputs of the wrong shape, a params list that is not the tape's own (``params=...``), and a model
whose parameter list changed (:class:`BatchObjective`) raise TapeMismatchError too. A replay that
leaves an operation's domain raises the engine's own error (DomainError, OperationOverflowError,
...) naming the operation, the inputs and the sample.

:meth:`Tape.record` captures an existing graph without ``fn``: it cannot see how the graph was
built, so it replays unchecked (guards and re-tracing need ``fn``): use :func:`trace` when the
structure could depend on values.

**The rooms.** :mod:`.recording` (the trace observer and the Wengert list of one sample),
:mod:`.kernels` (rows, the table's array forms, grouping by level), :mod:`.program` (the plan as
generated Python: ``print(tape.program())``), :mod:`.replay` (the Tape),
:mod:`.tracing` (:func:`trace`), :mod:`.objectives` (training with a tape), :mod:`.parameters`
(parameters held as arrays while a tape trains them).

**Training.** :class:`BatchObjective` and :func:`batch_loss_and_grad` compute the batch loss
``mean_i loss(model(x_i), y_i) [+ penalty()]`` with one replay and ADD its gradient to every
parameter's ``.grad`` (as ``Value.backward`` does), so ``tinygrad_bp.optim.SGD``/``Adam`` step
unchanged. Inside ``objective.hold(optimizer)`` the parameters are held as two arrays instead
(:class:`HeldParameters`: values and gradients): replays read and add into them and the
optimizer steps them in place with its own update rule; the Values get the numbers back when the
block ends. :func:`tinygrad_bp.train.fit` holds them for every epoch it trains on the tape.
"""

from __future__ import annotations

from .objectives import LOSSES, BatchObjective, BatchResult, batch_loss_and_grad
from .parameters import HeldParameters
from .recording import CHECK_MODES, Instruction
from .replay import Gradients, Replay, Tape
from .tracing import trace

__all__ = [
    "CHECK_MODES",
    "LOSSES",
    "BatchObjective",
    "BatchResult",
    "Gradients",
    "HeldParameters",
    "Instruction",
    "Replay",
    "Tape",
    "batch_loss_and_grad",
    "trace",
]
