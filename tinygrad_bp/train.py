# ruff: noqa: TRY004
# TRY004: a list where one output is expected (or the reverse) is a wrong value for the loss,
# hence ValueError.
"""Training loops: seeded mini-batches, :func:`fit`, and the articles' ``Network.SGD`` recipe.

With the scalar engine each sample's forward pass builds a graph of Values
and its backward pass adds that sample's share of the gradient into the
parameters' ``.grad``; the tape engine (:mod:`tinygrad_bp.tape`) records one
sample's graph once and replays it over the whole batch with numpy, giving
the same numbers. One batch is therefore

    L_batch = (1/B) sum_{i in batch} loss(model(x_i), y_i)  [+ penalty(parameters)]

    dL_batch/dp = (1/B) sum_i dloss_i/dp  [+ dpenalty/dp]

followed by one optimizer step. The function that computes L_batch and fills
the gradients is looked up by name in :data:`ENGINES` (``"scalar"``,
``"tape"``, ``"auto"``).
"""

from __future__ import annotations

import numbers
import random
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, TypeVar, Union, overload

from . import losses as _losses
from .nn import MLP, Layer, Module, Neuron
from .optim import SGD, Optimizer
from .value import Value, no_grad

__all__ = [
    "ENGINES",
    "OBJECTIVES",
    "BatchResult",
    "DemoResult",
    "Network",
    "Objective",
    "accuracy",
    "batches",
    "fit",
    "micrograd_demo",
    "micrograd_init",
    "network_sgd",
    "scalar_batch",
    "tape_batch",
]

T = TypeVar("T")
Output = Union[Value, list[Value]]
History = dict[str, list[Any]]  # floats per epoch; "engine": which engine ran each epoch


def _rng(seed: int | random.Random | None) -> random.Random:
    """A private generator: the global ``random`` state is never touched."""
    return seed if isinstance(seed, random.Random) else random.Random(seed)


# --- mini-batches -------------------------------------------------------------------


@overload
def batches(
    data: int,
    batch_size: int | None,
    seed: int | random.Random | None = ...,
    *,
    shuffle: bool = ...,
    drop_last: bool = ...,
) -> list[list[int]]: ...
@overload
def batches(
    data: Sequence[T],
    batch_size: int | None,
    seed: int | random.Random | None = ...,
    *,
    shuffle: bool = ...,
    drop_last: bool = ...,
) -> list[list[T]]: ...
def batches(
    data: int | Sequence[Any],
    batch_size: int | None,
    seed: int | random.Random | None = None,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
) -> list[list[Any]]:
    """Split ``data`` (or the indices ``range(data)`` for an int) into mini-batches.

    The order is shuffled with ``random.Random(seed)`` (or with the given
    ``random.Random``, so successive epochs can draw from one generator),
    never with the global ``random`` state. Every batch has ``batch_size``
    items except the last, which holds the rest, unless ``drop_last``.
    ``batch_size=None`` gives one batch of everything.
    """
    if isinstance(data, bool):
        raise ValueError("batches: data must be an int or a sequence, not a bool")
    items: list[Any] = list(range(data)) if isinstance(data, int) else list(data)
    if isinstance(data, int) and data < 0:
        raise ValueError(f"batches: the number of samples must be >= 0, got {data}")
    if batch_size is None:
        batch_size = max(len(items), 1)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive int or None, got {batch_size!r}")
    if shuffle:
        _rng(seed).shuffle(items)
    out = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if drop_last and out and len(out[-1]) < batch_size:
        out.pop()
    return out


# --- objectives: a per-sample loss and the decision rule that goes with it ---------


def _argmax(xs: Sequence[Any]) -> int:
    """The index of the largest entry (the first one on ties)."""
    values = [float(x) for x in xs]
    return max(range(len(values)), key=values.__getitem__)


def _one_hot(target: Any, n: int) -> list[float]:
    """An int class index as a one-hot list of length n; a list is returned unchanged."""
    if isinstance(target, (list, tuple)):
        return [float(t) for t in target]
    if isinstance(target, bool) or not isinstance(target, numbers.Integral) or not 0 <= int(target) < n:
        raise ValueError(f"a class index in [0, {n}) or a list of {n} targets is needed, got {target!r}")
    return [1.0 if k == target else 0.0 for k in range(n)]


def _squared(loss_fn: Callable[..., Any]) -> Callable[[Output, Any], Value]:
    """A squared-error loss over a scalar output or an output vector (int targets one-hot)."""

    def loss(out: Output, target: Any) -> Value:
        if isinstance(out, list):
            return loss_fn(out, _one_hot(target, len(out)))
        return loss_fn(out, target)

    return loss


def _threshold(out: Output) -> int:
    """A list: the argmax; one output o: 1 if o >= 0.5 else 0 (a probability, labels 0/1)."""
    if isinstance(out, list):
        return _argmax(out)
    return 1 if out.data >= 0.5 else 0


def _sign(out: Output) -> int:
    """One score s: 1 if s > 0 else -1 (labels +-1, as micrograd's demo)."""
    if isinstance(out, list):
        raise ValueError("hinge_loss needs one output per sample, got a list")
    return 1 if out.data > 0 else -1


def _logit(out: Output) -> int:
    """One logit z: 1 if z >= 0 (probability s(z) >= 0.5) else 0."""
    if isinstance(out, list):
        raise ValueError("binary_cross_entropy_with_logits needs one output per sample, got a list")
    return 1 if out.data >= 0 else 0


def _argmax_of(out: Output) -> int:
    if not isinstance(out, list):
        raise ValueError("cross_entropy needs a list of logits per sample, got one output")
    return _argmax(out)


def _scalar_only(name: str, fn: Callable[[Any, Any], Value]) -> Callable[[Output, Any], Value]:
    def loss(out: Output, target: Any) -> Value:
        if isinstance(out, list):
            raise ValueError(f"{name} needs one output per sample, got a list of {len(out)}")
        return fn(out, target)

    return loss


def _label(target: Any) -> Any:
    """The class a target stands for: the argmax of a row (a list or a 1-D array), else the target itself."""
    if _is_row(target):
        return _argmax(target)
    return target


def _is_row(target: Any) -> bool:
    """A target that is one number per class (one-hot, or class probabilities): a list or a 1-D array."""
    return isinstance(target, (list, tuple)) or getattr(target, "ndim", 0) == 1


class Objective(NamedTuple):
    """A per-sample loss ``loss(output, target) -> Value`` and its decision rule ``predict(output)``.

    ``output`` is what the model returns for one sample: a Value, or a list
    of Values. ``predict`` gives the class that ``accuracy`` compares with the
    target's class (the target itself, or the argmax of a one-hot list).
    ``name``, for the built-in objectives, is the loss's name in
    :data:`tinygrad_bp.tape.LOSSES`, the library function the tape replays on
    whole batches (``loss`` is the same function, or it wrapped to one-hot
    encode class targets and check the output's shape, which the tape's
    objective does on whole arrays). On the tape, ``name`` is what runs.
    """

    loss: Callable[[Output, Any], Value]
    predict: Callable[[Output], Any] | None
    name: str | None = None


OBJECTIVES: dict[str, Objective] = {
    # 1/n sum_k (o_k - t_k)^2; int targets of a vector output are one-hot encoded
    "mse": Objective(_squared(_losses.mse_loss), _threshold, "mse"),
    # 1/2 sum_k (o_k - t_k)^2, the articles' error E
    "half_sse": Objective(_squared(_losses.half_sse), _threshold, "half_sse"),
    # relu(1 - y s) for y in {-1, +1}
    "hinge": Objective(_scalar_only("hinge_loss", _losses.hinge_loss), _sign, "hinge"),
    # -(t log p + (1 - t) log(1 - p)) for a probability p
    "bce": Objective(_scalar_only("binary_cross_entropy", _losses.binary_cross_entropy), _threshold, "bce"),
    # softplus(z) - t z for a logit z
    "bce_with_logits": Objective(
        _scalar_only("binary_cross_entropy_with_logits", _losses.binary_cross_entropy_with_logits),
        _logit,
        "bce_with_logits",
    ),
    # logsumexp(z) - z_t for logits z and a class index t (or -sum_i t_i log softmax(z)_i for class
    # probabilities t)
    "cross_entropy": Objective(_losses.cross_entropy, _argmax_of, "cross_entropy"),
}


def _objective(
    loss: str | Callable[[Output, Any], Value] | Objective, predict: Callable[[Output], Any] | None
) -> Objective:
    if isinstance(loss, Objective):
        return loss if predict is None else loss._replace(predict=predict)
    if isinstance(loss, str):
        if loss not in OBJECTIVES:
            known = ", ".join(repr(k) for k in OBJECTIVES)
            raise ValueError(f"unknown loss {loss!r}; choose one of {known} or pass a function")
        objective = OBJECTIVES[loss]
        return objective if predict is None else objective._replace(predict=predict)
    if callable(loss):
        return Objective(loss, predict)
    raise ValueError(
        f"loss must be a name, a function (output, target) -> Value or an Objective, got {loss!r}"
    )


def accuracy(
    model: Callable[[Sequence[float]], Output],
    X: Sequence[Sequence[float]],
    y: Sequence[Any],
    *,
    loss: str | Objective = "mse",
    predict: Callable[[Output], Any] | None = None,
) -> float:
    """The fraction of samples whose predicted class equals their label (no graph is recorded).

    The prediction is ``predict(model(x))``, by default the decision rule of
    ``loss``: the argmax of a vector output; for one output o, o >= 0.5
    (``"mse"``, ``"half_sse"``, ``"bce"``, labels 0/1), o > 0 (``"hinge"``,
    labels +1/-1) or o >= 0 (``"bce_with_logits"``, labels 0/1). A label may
    be a class or a one-hot list.
    """
    objective = _objective(loss, predict)
    if objective.predict is None:  # pragma: no cover - only a custom Objective without a rule
        raise ValueError("accuracy: pass predict=... to decide the class of an output")
    if len(X) != len(y):
        raise ValueError(f"accuracy: {len(X)} samples but {len(y)} labels")
    if len(X) == 0:  # len(): X may be a NumPy array, whose truth value is ambiguous
        raise ValueError("accuracy: no samples")
    with no_grad():
        correct = sum(objective.predict(model(x)) == _label(t) for x, t in zip(X, y))
    return correct / len(X)


# --- one batch: the loss and the gradients ---------------------------------------------


class BatchResult(NamedTuple):
    """What a batch function reports: the batch objective and how many samples it classified right."""

    loss: float
    correct: int


BatchFn = Callable[..., BatchResult]


def scalar_batch(
    model: Callable[[Sequence[float]], Output],
    X: Sequence[Sequence[float]],
    y: Sequence[Any],
    objective: Objective,
    penalty: Callable[[], Value] | None = None,
) -> BatchResult:
    """L = (1/B) sum_i loss(model(x_i), y_i) + penalty(), one graph per sample; adds dL/dp into ``.grad``.

    Each sample's graph is built, run backwards with the upstream gradient
    1/B (so the parameters accumulate the batch mean), and dropped. The
    caller zeroes the gradients before and steps the optimizer after.
    """
    n = len(X)
    share = 1.0 / n
    total = 0.0
    correct = 0
    predict = objective.predict
    for x, t in zip(X, y):
        out = model(x)
        sample_loss = objective.loss(out, t)
        if sample_loss.requires_grad:
            sample_loss.backward(share)
        total += sample_loss.data
        if predict is not None:
            correct += predict(out) == _label(t)
    batch_loss = total / n
    if penalty is not None:
        reg = penalty()
        if reg.requires_grad:
            reg.backward()
        batch_loss += reg.data
    return BatchResult(batch_loss, correct)


def _array_predictions(predict: Callable[[Output], Any], outputs: Any) -> list[Any]:
    """``predict`` applied to each row of a (batch, outputs) array, vectorised for the built-in rules."""
    single = outputs.shape[1] == 1
    column = outputs[:, 0]
    if predict is _sign and single:
        return [1 if o > 0 else -1 for o in column.tolist()]
    if predict is _logit and single:
        return [1 if o >= 0 else 0 for o in column.tolist()]
    if predict is _threshold and single:
        return [1 if o >= 0.5 else 0 for o in column.tolist()]
    if predict in (_threshold, _argmax_of) and not single:
        return outputs.argmax(axis=1).tolist()
    with no_grad():  # a user's rule: hand it Values, as the scalar engine would
        rows = [[Value(o) for o in row] for row in outputs.tolist()]
        return [predict(row[0] if single else row) for row in rows]


_tape_objectives: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def _tape_check(model: Any, objective: Objective) -> Literal["none", "first", "all"]:
    """How the tape re-checks the graph's structure on each batch (see :func:`tinygrad_bp.tape.trace`).

    The library's own modules and losses build the same graph for every sample, so their tape
    needs no re-tracing (``"none"``; comparisons of Values are still guarded on every sample).
    Any other model or loss may hide Python state that changes the graph, so the first sample of
    every batch is re-traced and compared (``"first"``). (The penalty is not on the tape: it is
    evaluated afresh by the scalar engine for every batch.)
    """
    own_model = type(model) in (MLP, Layer, Neuron, Network)
    own_loss = objective.name is not None
    return "none" if own_model and own_loss else "first"


def _tape_objective(model: Any, objective: Objective) -> Any:
    """The cached :class:`~tinygrad_bp.tape.BatchObjective` of this model and loss."""
    from .tape.objectives import BatchObjective, model_cache

    cache = model_cache(model, "_tinygrad_bp_fit_tapes", _tape_objectives)
    if objective.loss not in cache:
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))
        loss = objective.loss if objective.name is None else objective.name
        cache[objective.loss] = BatchObjective(model, loss, check=_tape_check(model, objective))
    return cache[objective.loss]


def _forget_tapes(model: Any) -> None:
    """Drop the tapes recorded for ``model`` by :func:`fit`."""
    _tape_objectives.pop(model, None)
    store = getattr(model, "__dict__", None)
    if isinstance(store, dict):
        store.pop("_tinygrad_bp_fit_tapes", None)


def _check_class_targets(objective: Objective, y: Sequence[Any]) -> None:
    """cross_entropy takes an int class or a row of class probabilities, on the tape as on the scalar engine.

    (A float such as 2.0 is refused by the loss itself; the tape, which sees targets as an
    array of floats, would take it for class 2.)
    """
    if objective.name == "cross_entropy":
        for t in y:
            if _is_row(t):
                continue  # class probabilities: the loss checks their number
            if isinstance(t, bool) or not isinstance(t, numbers.Integral):
                raise ValueError(
                    f"cross_entropy: target_index must be an int class index or a row of class "
                    f"probabilities, got {t!r}"
                )


def _replay_batch(
    model: Callable[[Sequence[float]], Output], X: Sequence[Any], y: Sequence[Any], objective: Objective
) -> BatchResult:
    """The batch's mean loss and right predictions by one tape replay; adds dL/dp into ``.grad``.

    Raises before any gradient is written if the tape cannot record the
    model and loss or no longer describes their graph.
    """
    _check_class_targets(objective, y)
    result = _tape_objective(model, objective)(X, y)
    correct = 0
    if objective.predict is not None:
        predictions = _array_predictions(objective.predict, result.outputs)
        correct = sum(p == _label(t) for p, t in zip(predictions, y))
    return BatchResult(float(result.loss), correct)


def _with_penalty(result: BatchResult, penalty: Callable[[], Value] | None) -> BatchResult:
    """Add the penalty, built and run backwards by the scalar engine (it depends on the parameters only)."""
    if penalty is None:
        return result
    reg = penalty()
    if reg.requires_grad:
        reg.backward()
    return BatchResult(result.loss + reg.data, result.correct)


def tape_batch(
    model: Callable[[Sequence[float]], Output],
    X: Sequence[Sequence[float]],
    y: Sequence[Any],
    objective: Objective,
    penalty: Callable[[], Value] | None = None,
) -> BatchResult:
    """As :func:`scalar_batch`, by replaying a recorded tape over the whole batch with numpy.

    The graph of one sample is traced once (per model and loss) and replayed
    on every batch (see :mod:`tinygrad_bp.tape` for how a changed structure
    is caught). The penalty is evaluated afresh by the scalar engine for every
    batch, so it is never stale.
    """
    return _with_penalty(_replay_batch(model, X, y, objective), penalty)


def _auto_batch(
    model: Callable[[Sequence[float]], Output],
    X: Sequence[Sequence[float]],
    y: Sequence[Any],
    objective: Objective,
    penalty: Callable[[], Value] | None = None,
) -> BatchResult:
    """The tape when numpy is installed and the tape can record this model and loss, else the scalar engine.

    A tape that cannot be recorded (a loss that reads values to decide the
    graph's shape, one that needs plain numbers as targets), or whose replay
    finds that the graph has changed (a comparison that goes the other way,
    hidden state), is noticed before any gradient of that batch is written;
    that batch and every later one of the same :func:`fit` call then run on
    the scalar engine (a graph that changed after replaying: with a RuntimeWarning); the
    history's ``"engine"`` says which engine ran each epoch, and the next call
    tries the tape again.
    """
    if model in _scalar_only_models or not _numpy_available():
        return scalar_batch(model, X, y, objective, penalty)
    from .errors import TapeMismatchError

    try:
        result = _replay_batch(model, X, y, objective)
    except (TapeMismatchError, TypeError, ValueError) as error:
        # Not recordable, or no longer the recorded graph: the scalar engine takes over (and
        # reports any real error in the data itself). A graph that changed mid-training is a
        # surprise worth a warning; a model or loss the tape cannot record is known at once.
        _release_hold(model)  # the scalar engine reads and writes the Values themselves
        _scalar_only_models[model] = True
        _forget_tapes(model)  # a stale recording: the next call records afresh
        if _replayed.pop(model, False):  # it did replay before: the graph changed under it
            warnings.warn(
                f"fit: the tape no longer describes this model's graph ({error}); this call goes on "
                "with the scalar engine (slower, the same numbers)",
                RuntimeWarning,
                stacklevel=4,
            )
        return scalar_batch(model, X, y, objective, penalty)
    _replayed[model] = True
    return _with_penalty(result, penalty)


# Models that fell back to the scalar engine in the current fit() call, and models whose tape has
# replayed in it (a later refusal then means the graph changed mid-training: warned about).
_scalar_only_models: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_replayed: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _numpy_available() -> bool:
    """True when numpy (needed by the tape) can be imported."""
    import importlib.util

    return importlib.util.find_spec("numpy") is not None


ENGINES: dict[str, BatchFn] = {"scalar": scalar_batch, "tape": tape_batch, "auto": _auto_batch}


def _evaluate(
    model: Callable[[Sequence[float]], Output],
    X: Sequence[Sequence[float]],
    y: Sequence[Any],
    objective: Objective,
) -> tuple[float, int]:
    """The mean loss and the number of right predictions, without recording a graph."""
    total = 0.0
    correct = 0
    with no_grad():
        for x, t in zip(X, y):
            out = model(x)
            total += objective.loss(out, t).data
            if objective.predict is not None:
                correct += objective.predict(out) == _label(t)
    return total / len(X), correct


def _tape_evaluate(
    model: Callable[[Sequence[float]], Output],
    X: Sequence[Sequence[float]],
    y: Sequence[Any],
    objective: Objective,
) -> tuple[float, int]:
    """As :func:`_evaluate`, by one tape replay over all of X (no ``.grad`` is touched)."""
    _check_class_targets(objective, y)
    _, result = _tape_objective(model, objective).replay(X, y)
    correct = 0
    if objective.predict is not None:
        predictions = _array_predictions(objective.predict, result.aux)
        correct = sum(p == _label(t) for p, t in zip(predictions, y))
    return float(result.loss), correct


def _auto_evaluate(
    model: Callable[[Sequence[float]], Output],
    X: Sequence[Sequence[float]],
    y: Sequence[Any],
    objective: Objective,
) -> tuple[float, int]:
    """The tape's evaluation when the model trains on the tape, else the scalar engine's."""
    if model in _scalar_only_models or not _numpy_available():
        return _evaluate(model, X, y, objective)
    from .errors import TapeMismatchError

    try:
        return _tape_evaluate(model, X, y, objective)
    except (TapeMismatchError, TypeError, ValueError):
        return _evaluate(model, X, y, objective)  # reports any real error itself


# How each engine measures the test set after an epoch.
_EVALUATORS: dict[BatchFn, Callable[..., tuple[float, int]]] = {
    scalar_batch: _evaluate,
    tape_batch: _tape_evaluate,
    _auto_batch: _auto_evaluate,
}


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    """A tqdm bar, or None when switched off or when tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="batch", leave=True)


def _check_fit(
    X: Sequence[Any],
    y: Sequence[Any],
    X_test: Sequence[Any] | None,
    y_test: Sequence[Any] | None,
    epochs: int,
    engine: str,
) -> None:
    """ValueError for inconsistent data or arguments, before anything changes."""
    if len(X) != len(y):
        raise ValueError(f"fit: {len(X)} samples but {len(y)} targets")
    if len(X) == 0:  # len(): X may be a NumPy array, whose truth value is ambiguous
        raise ValueError("fit: no training samples")
    if (X_test is None) != (y_test is None):
        raise ValueError("fit: give both X_test and y_test, or neither")
    if X_test is not None and y_test is not None and len(X_test) != len(y_test):
        raise ValueError(f"fit: {len(X_test)} test samples but {len(y_test)} test targets")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
    if engine not in ENGINES:
        known = ", ".join(repr(k) for k in ENGINES)
        raise ValueError(f"fit: unknown engine {engine!r}; choose one of {known}")


def _metric_functions(
    metrics: Sequence[str | Callable[[Any, Any, Any], float]], objective: Objective
) -> tuple[bool, list[Callable[[Any, Any, Any], float]]]:
    """(whether accuracy is wanted, the metric functions)."""
    functions: list[Callable[[Any, Any, Any], float]] = []
    want_accuracy = False
    for m in metrics:
        if m == "accuracy":
            want_accuracy = True
        elif callable(m):
            functions.append(m)
        else:
            raise ValueError(
                f"fit: unknown metric {m!r}; use 'accuracy' or a function (model, X, y) -> float"
            )
    if want_accuracy and objective.predict is None:
        raise ValueError("fit: a custom loss needs predict=... to measure accuracy (or pass metrics=())")
    return want_accuracy, functions


def _empty_history(
    want_accuracy: bool, with_test: bool, functions: list[Callable[[Any, Any, Any], float]]
) -> History:
    keys = ["loss", "lr", "engine"]
    if want_accuracy:
        keys.append("accuracy")
    if with_test:
        keys += ["test_loss", "test_accuracy"] if want_accuracy else ["test_loss"]
    for f in functions:
        keys += [f.__name__, f"test_{f.__name__}"] if with_test else [f.__name__]
    return {key: [] for key in keys}


def _postfix(history: History, epoch: int, epochs: int) -> dict[str, str]:
    """What the progress bar shows after an epoch."""
    shown = {"epoch": f"{epoch + 1}/{epochs}", "loss": f"{history['loss'][-1]:.4g}"}
    for key, name in (("accuracy", "acc"), ("test_accuracy", "test_acc")):
        if key in history:
            shown[name] = f"{history[key][-1]:.3f}"
    return shown


class _Run(NamedTuple):
    """Everything one training run needs at each batch."""

    model: Module
    objective: Objective
    optimizer: Optimizer
    run_batch: BatchFn
    penalty: Callable[[], Value] | None
    lr_schedule: Callable[[int], float] | None
    bar: Any


# The tape objective's hold() block of a model while an epoch of fit() trains it on the tape.
_holds: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _hold_for_epoch(run: _Run) -> None:
    """Hold the parameters as arrays for the epoch's tape replays, when nothing else needs the Values.

    Not with a penalty (the scalar engine evaluates it on the Values at every batch), not once
    the model fell back to the scalar engine, and not with an optimizer of the user's own or
    one over other parameters (those step the Values).
    """
    if run.run_batch not in (tape_batch, _auto_batch) or run.penalty is not None:
        return
    if run.model in _scalar_only_models or not _numpy_available() or not isinstance(run.optimizer, Optimizer):
        return
    block = _tape_objective(run.model, run.objective).hold(run.optimizer)
    try:
        block.__enter__()
    except (TypeError, ValueError):  # its own step(), or other parameters: the Values' path it is
        return
    _holds[run.model] = block


def _release_hold(model: Any) -> None:
    """End the epoch's hold: the Values get the numbers back."""
    block = _holds.pop(model, None)
    if block is not None:
        block.__exit__(None, None, None)


def _epoch(
    run: _Run, X: Sequence[Sequence[float]], y: Sequence[Any], plan: list[list[int]], step: int
) -> tuple[float, int, int]:
    """One pass over the batches of ``plan``: (mean loss, right predictions, next step number).

    On the tape, the parameters are held as arrays for the whole pass (see
    :meth:`tinygrad_bp.tape.BatchObjective.hold`), and the Values get them back at its end.
    """
    _hold_for_epoch(run)
    try:
        return _batches(run, X, y, plan, step)
    finally:
        _release_hold(run.model)


def _batches(
    run: _Run, X: Sequence[Sequence[float]], y: Sequence[Any], plan: list[list[int]], step: int
) -> tuple[float, int, int]:
    """The batches of one epoch: zero the gradients, compute the batch's loss and gradients, step."""
    weighted = 0.0
    correct = 0
    for index in plan:
        run.optimizer.zero_grad()
        xs, ys = [X[i] for i in index], [y[i] for i in index]
        result = run.run_batch(run.model, xs, ys, run.objective, run.penalty)
        if run.lr_schedule is not None:
            run.optimizer.lr = float(run.lr_schedule(step))
        run.optimizer.step()
        step += 1
        weighted += result.loss * len(index)
        correct += result.correct
        if run.bar is not None:
            run.bar.update(1)
    return weighted / len(X), correct, step


def _after_epoch(
    history: History,
    run: _Run,
    train: tuple[Sequence[Any], Sequence[Any]],
    test: tuple[Sequence[Any] | None, Sequence[Any] | None],
    functions: list[Callable[[Any, Any, Any], float]],
) -> None:
    """Record the test loss and accuracy and the metric functions after an epoch."""
    X_test, y_test = test
    if X_test is not None and y_test is not None:
        evaluate = _EVALUATORS.get(run.run_batch, _evaluate)
        test_loss, test_correct = evaluate(run.model, X_test, y_test, run.objective)
        history["test_loss"].append(test_loss)
        if "test_accuracy" in history:
            history["test_accuracy"].append(test_correct / len(X_test))
    for f in functions:
        history[f.__name__].append(float(f(run.model, *train)))
        if X_test is not None:
            history[f"test_{f.__name__}"].append(float(f(run.model, X_test, y_test)))


def fit(
    model: Module,
    X: Sequence[Sequence[float]],
    y: Sequence[Any],
    *,
    loss: str | Callable[[Output, Any], Value] | Objective = "mse",
    optimizer: Optimizer | None = None,
    lr: float = 0.1,
    epochs: int = 10,
    batch_size: int | None = None,
    seed: int | random.Random | None = None,
    shuffle: bool = True,
    penalty: Callable[[list[Value]], Value] | None = None,
    lr_schedule: Callable[[int], float] | None = None,
    progress: bool = True,
    X_test: Sequence[Sequence[float]] | None = None,
    y_test: Sequence[Any] | None = None,
    metrics: Sequence[str | Callable[[Any, Any, Any], float]] = ("accuracy",),
    predict: Callable[[Output], Any] | None = None,
    engine: str = "auto",
    callback: Callable[[int, History], None] | None = None,
) -> History:
    """Train ``model`` on (X, y) with mini-batches; return the history of every epoch.

    Each epoch shuffles the samples (``random.Random(seed)``, one generator
    for the whole run, so a seed makes the run reproducible), splits them
    into batches of ``batch_size`` and for each batch of B samples:

        optimizer.zero_grad()
        L = (1/B) sum_i loss(model(x_i), y_i) + penalty(model.parameters())
        (dL/dp filled into .grad by the engine), optimizer.step()

    Args:
        model: the network; ``model(x)`` gives a Value or a list of Values.
        X: the training inputs, one sequence of numbers per sample.
        y: the training targets (classes, numbers or one-hot lists).
        loss: a name from :data:`OBJECTIVES` (``"mse"``, ``"half_sse"``,
            ``"hinge"``, ``"bce"``, ``"bce_with_logits"``, ``"cross_entropy"``),
            a function ``loss(output, target) -> Value`` for one sample (give
            ``predict`` too, or ``metrics=()``), or an :class:`Objective`.
        optimizer: any optimizer over the model's parameters; by default
            ``SGD(model.parameters(), lr)``.
        lr: the learning rate of the default optimizer.
        epochs: the number of passes over the training set.
        batch_size: samples per batch; ``None`` is the whole set (full-batch
            gradient descent).
        seed: an int or a ``random.Random`` for the shuffling.
        shuffle: shuffle before each epoch (else the batches keep the order).
        penalty: ``penalty(parameters) -> Value`` added to each batch's loss,
            e.g. ``lambda ps: l2_penalty(ps, 1e-4)``.
        lr_schedule: ``lr_schedule(k) -> lr`` for step k = 0, 1, ... (counted
            over all epochs), set on the optimizer before the step.
        progress: show a tqdm bar (nothing when tqdm is not installed).
        X_test: inputs evaluated after every epoch, without recording a graph.
        y_test: their targets.
        metrics: ``"accuracy"`` and/or functions ``metric(model, X, y) -> float``
            evaluated after every epoch (on the test set too when given).
        predict: the decision rule ``predict(output) -> class`` for accuracy
            (default: the loss's rule, see :func:`accuracy`).
        engine: how a batch's loss and gradients are computed, a key of
            :data:`ENGINES`: ``"scalar"`` (one Value graph per sample),
            ``"tape"`` (one recorded graph replayed over the whole batch with
            numpy: the same numbers, much faster) or ``"auto"`` (the tape
            when numpy is installed and the model and loss can be recorded,
            else the scalar engine).
        callback: ``callback(epoch, history)`` after every epoch.

    Returns:
        A dict of lists with one entry per epoch: ``"loss"`` (the mean of the
        batch objectives, each weighted by its batch size, penalty included),
        ``"lr"`` (the learning rate of the epoch's last step), ``"accuracy"``
        (the share of training samples classified right during the epoch's
        own forward passes, as Keras reports it), with test data
        ``"test_loss"`` and ``"test_accuracy"`` (after the epoch), and one
        list per metric function, named after it (``"test_" + name`` on the
        test set).

    """
    objective = _objective(loss, predict)
    _check_fit(X, y, X_test, y_test, epochs, engine)
    want_accuracy, functions = _metric_functions(metrics, objective)
    if optimizer is None:
        optimizer = SGD(model.parameters(), lr)
    params = model.parameters()
    rng = _rng(seed)
    history = _empty_history(want_accuracy, X_test is not None, functions)
    plan = batches(len(X), batch_size, rng, shuffle=shuffle)  # the first epoch's batches
    run = _Run(
        model,
        objective,
        optimizer,
        ENGINES[engine],
        None if penalty is None else (lambda: penalty(params)),
        lr_schedule,
        _progress_bar(progress, epochs * len(plan), "fit"),
    )
    step = 0
    _scalar_only_models.pop(model, None)  # a fallback lasts for one call: this one tries the tape again
    _replayed.pop(model, None)
    try:
        for epoch in range(epochs):
            if epoch:
                plan = batches(len(X), batch_size, rng, shuffle=shuffle)
            mean_loss, correct, step = _epoch(run, X, y, plan, step)
            history["loss"].append(mean_loss)
            history["lr"].append(optimizer.lr)
            history["engine"].append(_engine_that_ran(engine, model))
            if want_accuracy:
                history["accuracy"].append(correct / len(X))
            _after_epoch(history, run, (X, y), (X_test, y_test), functions)
            if run.bar is not None:
                run.bar.set_postfix(_postfix(history, epoch, epochs))
            if callback is not None:
                callback(epoch, history)
    finally:
        _scalar_only_models.pop(model, None)
        _replayed.pop(model, None)
        if run.bar is not None:
            run.bar.close()
    return history


def _engine_that_ran(engine: str, model: Any) -> str:
    """Which engine trained the last epoch: "scalar" or "tape" (``engine="auto"`` falls back)."""
    if engine == "auto":
        return "scalar" if model in _scalar_only_models or not _numpy_available() else "tape"
    return engine


# --- the articles' recipe: Network(sizes).SGD(training_data, epochs, mini_batch_size, eta, test_data) ---


def network_sgd(
    network: Module,
    training_data: Sequence[tuple[Sequence[float], Any]],
    epochs: int,
    mini_batch_size: int,
    eta: float,
    test_data: Sequence[tuple[Sequence[float], Any]] | None = None,
    *,
    seed: int | random.Random | None = None,
    progress: bool = False,
) -> History:
    """The articles' ``SGD(training_data, epochs, mini_batch_size, eta, test_data)`` recipe.

    For each epoch: shuffle the (x, y) pairs, split them into mini-batches
    of ``mini_batch_size``, and for each mini-batch average the gradients of
    C = 1/2 sum_k (y_hat_k - y_k)^2, whose derivative is dC/dy_hat = y_hat - y
    (the articles' code returns y_hat alone there, a bug not copied here),
    then step every weight and bias: p = p - eta * mean(dC/dp). After each
    epoch the test accuracy is measured (y_hat >= 0.5 for one output, the
    argmax for several; y an int class or a one-hot list).

    Returns :func:`fit`'s history (``"loss"``, ``"accuracy"``, and with test
    data ``"test_loss"`` and ``"test_accuracy"``).
    """
    X = [list(x) for x, _ in training_data]
    y = [t for _, t in training_data]
    X_test = None if test_data is None else [list(x) for x, _ in test_data]
    y_test = None if test_data is None else [t for _, t in test_data]
    optimizer = SGD(network.parameters(), lr=eta)
    return fit(
        network,
        X,
        y,
        loss="half_sse",
        optimizer=optimizer,
        epochs=epochs,
        batch_size=mini_batch_size,
        seed=seed,
        progress=progress,
        X_test=X_test,
        y_test=y_test,
    )


class Network(MLP):
    """The articles' ``Network(sizes)``: an MLP with sigmoid units everywhere.

    ``Network([2, 3, 1])`` has 2 inputs, a hidden layer of 3 and one output;
    train it with ``net.SGD(training_data, epochs, mini_batch_size, eta, test_data)``.
    """

    def __init__(self, sizes: Sequence[int], seed: int | random.Random | None = None) -> None:
        if len(sizes) < 2:
            raise ValueError(f"Network: sizes must list the inputs and at least one layer, got {sizes!r}")
        super().__init__(sizes[0], list(sizes[1:]), "sigmoid", "sigmoid", seed)
        self.sizes = list(sizes)

    def config(self) -> dict[str, Any]:
        """{"sizes"}: what ``Network.load(path)`` needs to rebuild it."""
        return {"sizes": list(self.sizes)}

    def feedforward(self, a: Sequence[float]) -> Output:
        """The network's output for input ``a`` (as the articles' ``feedforward``)."""
        return self(a)

    def SGD(  # noqa: N802 - the articles' name
        self,
        training_data: Sequence[tuple[Sequence[float], Any]],
        epochs: int,
        mini_batch_size: int,
        eta: float,
        test_data: Sequence[tuple[Sequence[float], Any]] | None = None,
        *,
        seed: int | random.Random | None = None,
        progress: bool = False,
    ) -> History:
        """Mini-batch gradient descent: see :func:`network_sgd`."""
        return network_sgd(
            self, training_data, epochs, mini_batch_size, eta, test_data, seed=seed, progress=progress
        )

    def evaluate(self, test_data: Sequence[tuple[Sequence[float], Any]]) -> int:
        """How many test samples the network classifies right (as the articles' ``evaluate``)."""
        xs = [list(x) for x, _ in test_data]
        ys = [t for _, t in test_data]
        return round(accuracy(self, xs, ys, loss="half_sse") * len(xs))

    def __repr__(self) -> str:
        return f"Network({self.sizes})"


# --- micrograd's demo -----------------------------------------------------------------


def micrograd_init(model: MLP, seed: int | random.Random | None = None) -> MLP:
    """Re-draw ``model``'s parameters as micrograd does: w ~ U(-1, 1), b = 0.

    The draws come from ``random.Random(seed)`` in micrograd's order (neuron
    by neuron, its weights only), so ``seed=1337`` gives exactly the weights
    micrograd's demo gets after ``random.seed(1337)``. Returns ``model``.
    """
    rng = _rng(seed)
    for layer in model.layers:
        for neuron in layer.neurons:
            for w in neuron.w:
                w.data = rng.uniform(-1, 1)
            neuron.b.data = 0.0
    return model


class DemoResult(NamedTuple):
    """What :func:`micrograd_demo` returns."""

    model: MLP
    X: list[list[float]]
    y: list[int]
    history: History
    accuracy: float


def micrograd_demo(
    seed: int = 1337,
    *,
    X: Sequence[Sequence[float]] | None = None,
    y: Sequence[int] | None = None,
    steps: int = 100,
    init: str = "micrograd",
    progress: bool = False,
) -> DemoResult:
    """micrograd's demo: a 2-16-16-1 ReLU MLP separates two moons with a hinge loss.

    Data: ``make_moons(100, noise=0.1, seed=seed)`` (or the given X, y with
    labels 0/1 or -1/+1), labels mapped to y in {-1, +1}. Model:
    ``MLP(2, [16, 16, 1])``, ReLU hidden units, a linear output; with
    ``init="micrograd"`` re-drawn as micrograd does (:func:`micrograd_init`,
    w ~ U(-1, 1), b = 0), with ``init="default"`` this library's
    U(-1/sqrt(nin), 1/sqrt(nin)). Loss, for the whole data set at every step:

        L = (1/n) sum_i relu(1 - y_i s_i) + 1e-4 sum_p p^2

    and ``steps`` steps of p = p - lr_k dL/dp with lr_k = 1 - 0.9 k / 100.
    Returns the model, the data, :func:`fit`'s history and the final
    training accuracy.
    """
    from .data import make_moons
    from .losses import l2_penalty

    if init not in ("micrograd", "default"):
        raise ValueError(f"micrograd_demo: init must be 'micrograd' or 'default', got {init!r}")
    if X is None or y is None:
        X, y = make_moons(100, noise=0.1, seed=seed)
    Xs = [list(map(float, x)) for x in X]
    labels = [1 if t > 0 else -1 for t in y]
    model = MLP(2, [16, 16, 1], activation="relu", output_activation="linear", seed=seed)
    if init == "micrograd":
        micrograd_init(model, seed)
    optimizer = SGD(model.parameters(), lr=1.0)
    history = fit(
        model,
        Xs,
        labels,
        loss="hinge",
        optimizer=optimizer,
        epochs=steps,
        batch_size=None,
        shuffle=False,
        penalty=lambda ps: l2_penalty(ps, 1e-4),
        lr_schedule=lambda k: 1.0 - 0.9 * k / 100,
        progress=progress,
    )
    return DemoResult(model, Xs, labels, history, accuracy(model, Xs, labels, loss="hinge"))
