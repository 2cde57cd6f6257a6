"""Parameters held as arrays by a tape (BatchObjective.hold): the same numbers as the Values' path.

Inside ``objective.hold(optimizer)`` a replay reads the parameters from one array and adds its
gradient into another, and the optimizer steps those arrays with its own update rule. Everything
here compares that path with the ordinary one (replay into ``.grad``, optimizer over Values),
number for number with ``==``, and checks what a user meets at the edges.
"""

from __future__ import annotations

import threading

import pytest

np = pytest.importorskip("numpy", reason="the tape needs numpy")

from hypothesis import given, settings  # noqa: E402 - after the numpy skip
from hypothesis import strategies as st  # noqa: E402

from tinygrad_bp import MLP, SGD, Adam, Value  # noqa: E402
from tinygrad_bp.errors import OperationOverflowError, TapeMismatchError  # noqa: E402
from tinygrad_bp.losses import l2_penalty  # noqa: E402
from tinygrad_bp.tape import BatchObjective, HeldParameters  # noqa: E402
from tinygrad_bp.value import NO_GRAD  # noqa: E402

RNG = np.random.default_rng(7)
X = RNG.normal(size=(24, 3))
Y = np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0)


def make(seed: int = 3, *, penalty: bool = True) -> tuple[MLP, BatchObjective]:
    model = MLP(3, [5, 4, 1], activation="tanh", output_activation="linear", seed=seed)
    params = model.parameters()
    pen = (lambda: l2_penalty(params, 1e-3)) if penalty else None
    return model, BatchObjective(model, "hinge", penalty=pen, check="none")


def train(objective: BatchObjective, optimizer, steps: int, batches=((X, Y),)) -> list[float]:
    losses = []
    for _ in range(steps):
        for Xb, yb in batches:
            optimizer.zero_grad()
            losses.append(objective(Xb, yb).loss)
            optimizer.step()
    return losses


OPTIMIZERS = [
    (SGD, {"lr": 0.1}),
    (SGD, {"lr": 0.05, "momentum": 0.9}),
    (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    (SGD, {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "maximize": True}),
    (Adam, {"lr": 0.01}),
    (Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 1e-2}),
    (Adam, {"lr": 0.02, "betas": (0.5, 0.9), "maximize": True}),
]


@pytest.mark.parametrize(("cls", "options"), OPTIMIZERS)
def test_held_training_gives_exactly_the_values_path_numbers(cls, options):
    model_a, objective_a = make()
    model_b, objective_b = make()
    opt_a, opt_b = cls(model_a.parameters(), **options), cls(model_b.parameters(), **options)
    halves = ((X[:12], Y[:12]), (X[12:], Y[12:]))  # two batch sizes: two scratch workspaces
    losses_a = train(objective_a, opt_a, 4, halves)
    with objective_b.hold(opt_b):
        losses_b = train(objective_b, opt_b, 4, halves)
    assert losses_a == losses_b
    assert [p.data for p in model_a.parameters()] == [p.data for p in model_b.parameters()]
    assert [p.grad for p in model_a.parameters()] == [p.grad for p in model_b.parameters()]
    assert opt_a.state_dict() == opt_b.state_dict()
    # and the optimizer goes on over Values after the block, from the state it had in it
    train(objective_a, opt_a, 1)
    train(objective_b, opt_b, 1)
    assert [p.data for p in model_a.parameters()] == [p.data for p in model_b.parameters()]


@settings(max_examples=25, deadline=None)
@given(
    lr=st.floats(1e-4, 0.5),
    momentum=st.floats(0.0, 0.99),
    dampening=st.floats(0.0, 0.9),
    weight_decay=st.floats(0.0, 0.1),
    steps=st.integers(1, 4),
)
def test_held_sgd_equals_the_loop_for_any_settings(lr, momentum, dampening, weight_decay, steps):
    options = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay}
    model_a, objective_a = make(penalty=False)
    model_b, objective_b = make(penalty=False)
    opt_a, opt_b = SGD(model_a.parameters(), **options), SGD(model_b.parameters(), **options)
    train(objective_a, opt_a, steps)
    with objective_b.hold(opt_b):
        train(objective_b, opt_b, steps)
    assert [p.data for p in model_a.parameters()] == [p.data for p in model_b.parameters()]


def test_inside_the_block_the_arrays_are_the_parameters_and_the_values_catch_up_at_the_end():
    model, objective = make()
    opt = SGD(model.parameters(), lr=0.1)
    before = [p.data for p in model.parameters()]
    with objective.hold(opt) as held:
        assert isinstance(held, HeldParameters)
        assert held.data.tolist() == before
        train(objective, opt, 2)
        assert [p.data for p in model.parameters()] == before  # not written yet
        assert held.data.tolist() != before
        held.write_back()
        assert [p.data for p in model.parameters()] == held.data.tolist()
        moved = held.data.tolist()
    assert [p.data for p in model.parameters()] == moved


def test_an_error_inside_the_block_still_writes_back_and_releases_the_optimizer():
    model, objective = make()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    moved: list[float] = []

    def fail_inside() -> None:
        with objective.hold(opt) as held:
            train(objective, opt, 2)
            moved.extend(held.data.tolist())
            raise KeyError("stop")

    with pytest.raises(KeyError):
        fail_inside()
    assert [p.data for p in model.parameters()] == moved
    assert len(opt.state_dict()["momentum_buffer"]) == len(moved)  # released: usable again
    with objective.hold(opt):  # and it can be held again
        train(objective, opt, 1)


def test_a_step_that_would_overflow_raises_and_changes_nothing():
    model, objective = make()
    opt = SGD(model.parameters(), lr=1e308)
    with objective.hold(opt) as held:
        opt.zero_grad()
        objective(X, Y)
        held.grad[3] = 1e10  # lr * grad beyond the float range
        before = held.data.copy()
        with pytest.raises(OperationOverflowError, match=r"SGD.step: the new value of params\[3\]"):
            opt.step()
        assert (held.data == before).all()
    adam = Adam(model.parameters(), lr=0.1)
    with objective.hold(adam) as held:
        adam.zero_grad()
        objective(X, Y)
        held.grad[0] = 1e200  # a moment that overflows
        before = held.data.copy()
        with pytest.raises(OperationOverflowError, match=r"Adam\.step: the new second moment of params"):
            adam.step()
        assert (held.data == before).all()


def test_after_zero_grad_and_no_replay_a_step_changes_nothing():
    model, objective = make()
    opt = Adam(model.parameters(), lr=0.1)
    with objective.hold(opt) as held:
        opt.zero_grad()
        before = held.data.copy()
        opt.step()
        assert (held.data == before).all()
    assert all(p._grad is NO_GRAD for p in model.parameters())


def test_parameters_without_gradient_at_the_start_are_left_alone_as_torch_does():
    model_a, _objective_a = make()
    model_b, objective_b = make()
    opt_a, opt_b = SGD(model_a.parameters(), lr=0.1), SGD(model_b.parameters(), lr=0.1)
    for model in (model_a, model_b):
        model.zero_grad()
        for p in model.parameters()[::2]:
            p._grad = NO_GRAD  # half the parameters received no gradient
    opt_a.step()
    with objective_b.hold(opt_b):
        opt_b.step()
    assert [p.data for p in model_a.parameters()] == [p.data for p in model_b.parameters()]


def test_what_a_hold_refuses():
    model, objective = make()
    other = MLP(3, [2, 1], seed=0)
    wrong = SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"SGD.hold: the held parameters \(\d+\) are not this optimizer's"):
        objective.hold(wrong).__enter__()
    with objective.hold():  # the refused hold left nothing held
        pass
    opt = SGD(model.parameters(), lr=0.1)
    with objective.hold(opt):
        with pytest.raises(RuntimeError, match="already held"), objective.hold():
            pass
        with pytest.raises(RuntimeError, match=r"SGD.state_dict: the parameters are held as arrays"):
            opt.state_dict()
    opt.state_dict()  # fine after the block


def test_a_tape_refuses_held_parameters_of_another_model():
    _model, objective = make()
    tape = objective.tape(X, Y)
    other = MLP(3, [5, 4, 1], seed=9)
    with pytest.raises(TapeMismatchError, match="not the tape's"):
        tape.replay(X, Y, params=HeldParameters(other.parameters()))


def test_a_tape_traced_inside_the_block_sees_the_current_numbers():
    model, objective = make()
    checked = BatchObjective(model, "hinge", check="first")  # re-traces the first sample each time
    opt = SGD(model.parameters(), lr=0.1)
    with objective.hold(opt):
        train(objective, opt, 3)
    with checked.hold(opt) as held:
        result = checked(X, Y)
        assert [p.data for p in model.parameters()] == held.data.tolist()
    model.zero_grad()
    assert checked(X, Y).loss == result.loss


def test_replays_reuse_their_arrays_but_never_what_they_return():
    _model, objective = make()
    tape = objective.tape(X, Y)
    first = tape.replay(X, Y, inputs=True)
    kept = (first.outputs.copy(), first.aux.copy(), first.grads.params.copy(), first.grads.inputs[0].copy())
    tape.replay(-X, Y, inputs=True)  # the same batch size: the same scratch arrays
    assert (first.outputs == kept[0]).all()
    assert (first.aux == kept[1]).all()
    assert (first.grads.params == kept[2]).all()
    assert (first.grads.inputs[0] == kept[3]).all()


def test_replays_in_two_threads_each_get_their_own_numbers():
    _model, objective = make()
    tape = objective.tape(X, Y)
    inputs = [X * (1 + k / 10) for k in range(8)]
    expected = [tape.replay(x, Y).loss for x in inputs]
    found: dict[int, list[float]] = {0: [], 1: []}

    def work(k: int) -> None:
        for _ in range(30):
            found[k].extend(tape.replay(x, Y).loss for x in inputs)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert found[0] == found[1] == expected * 30


def test_held_parameters_report_which_have_a_gradient():
    a, b = Value(1.0), Value(2.0)
    a._grad, b._grad = 0.5, NO_GRAD
    held = HeldParameters([a, b])
    assert held.grad.tolist() == [0.5, 0.0]
    assert held.reached.tolist() == [True, False]
    held.add_grad(np.array([1.0, 1.0]))
    assert held.reached is True
    held.data[:] = [3.0, 4.0]
    held.write_back()
    assert (a.data, b.data, a.grad, b.grad) == (3.0, 4.0, 1.5, 1.0)
    held.zero_grad()
    held.write_back()
    assert a._grad is NO_GRAD
    assert b._grad is NO_GRAD
    assert repr(held) == "<HeldParameters: 2 parameters as arrays>"
