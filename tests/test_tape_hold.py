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


# --- what an outside attack found (each a regression test) ----------------------------------------


def test_an_optimizer_with_its_own_step_is_not_held_and_fit_trains_it_on_the_values():
    from tinygrad_bp.optim import Optimizer
    from tinygrad_bp.train import fit

    class SignSGD(Optimizer):
        def step(self):
            for p in self.params:
                p.data -= self.lr * ((p.grad > 0) - (p.grad < 0))

    class ClippedSGD(SGD):
        def step(self):
            for p in self.params:
                p.grad = max(-0.01, min(0.01, p.grad))
            super().step()

    model, objective = make()
    with pytest.raises(TypeError, match="has its own step"):
        objective.hold(SignSGD(model.parameters(), lr=0.1)).__enter__()
    for cls in (SignSGD, ClippedSGD):
        runs = []
        for engine in ("scalar", "auto"):
            net = MLP(3, [4, 1], activation="tanh", seed=1)
            fit(net, X.tolist(), Y.tolist(), loss="hinge", engine=engine, epochs=3, batch_size=8,
                optimizer=cls(net.parameters(), lr=0.05), progress=False, seed=0)
            runs.append([p.data for p in net.parameters()])
        assert runs[1] == pytest.approx(runs[0], rel=1e-12, abs=1e-15)
        assert runs[1] != [p.data for p in MLP(3, [4, 1], activation="tanh", seed=1).parameters()]


def test_held_adam_with_different_step_counts_is_still_the_values_path_to_the_bit():
    model_a, objective_a = make()
    model_b, objective_b = make()
    opt_a, opt_b = Adam(model_a.parameters(), lr=0.01), Adam(model_b.parameters(), lr=0.01)
    for model, opt in ((model_a, opt_a), (model_b, opt_b)):
        opt.zero_grad()
        model.parameters()[-1].grad = 0.5  # one warm-up step in which one parameter moved alone
        opt.step()
    train(objective_a, opt_a, 6)
    with objective_b.hold(opt_b):
        train(objective_b, opt_b, 6)
        assert opt_b.t == 7
    assert [p.data for p in model_a.parameters()] == [p.data for p in model_b.parameters()]
    assert opt_a.state_dict() == opt_b.state_dict()


def test_held_values_are_held_by_one_block_and_read_through_it_only():
    from tinygrad_bp.tape import batch_loss_and_grad

    model, objective = make()
    other = BatchObjective(model, "hinge", check="none")
    other(X, Y)  # traced before the block
    with objective.hold():
        with pytest.raises(RuntimeError, match="already held as arrays by another hold"):
            other.hold().__enter__()
        with pytest.raises(TapeMismatchError, match="held as arrays by a hold"):
            other(X, Y)  # its Values are stale inside the block
        with pytest.raises(TapeMismatchError, match="held as arrays by a hold"):
            batch_loss_and_grad(model, X, Y, "hinge", check="none")
    other(X, Y)  # fine after the block


def test_a_parameter_replaced_inside_the_block_is_an_error_when_it_ends():
    model, objective = make()
    opt = SGD(model.parameters(), lr=0.1)

    def replace_inside() -> None:
        with objective.hold(opt):
            train(objective, opt, 1)
            model.layers[-1].neurons[0].b = Value(5.0)
            train(objective, opt, 1)

    with pytest.raises(TapeMismatchError, match="replaced inside the hold"):
        replace_inside()


def test_held_arrays_are_checked_and_cannot_be_replaced():
    model, objective = make()
    with objective.hold() as held:
        with pytest.raises(AttributeError):
            held.data = np.zeros(1)
        held.data[2] = float("nan")
        with pytest.raises(ValueError, match=r"held parameter 2 \('layer1.neuron0.w2'\) is nan"):
            objective(X, Y)  # the first call: it traces
        with pytest.raises(ValueError, match=r"held parameter 2 \('layer1.neuron0.w2'\) is nan"):
            held.write_back()  # and nothing is written
        assert all(np.isfinite([p.data for p in model.parameters()]))
        held.data[2] = 0.5
        objective(X, Y)
        held.data[2] = float("inf")
        with pytest.raises(ValueError, match=r"held parameter 2 \('layer1.neuron0.w2'\) is inf"):
            objective(X, Y)  # a replay
        held.data[2] = 0.5


def test_replays_in_many_threads_with_a_tiny_switch_interval():
    import sys

    _model, objective = make()
    tape = objective.tape(X, Y)
    sizes = (3, 5, 7, 16)
    expected = {n: tape.replay(X[:n], Y[:n]).loss for n in sizes}
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(40):
                for n in sizes:
                    assert tape.replay(X[:n], Y[:n]).loss == expected[n]
        except BaseException as error:  # noqa: BLE001 - collected, then asserted on
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


def test_a_big_replay_does_not_keep_its_arrays():
    import gc
    import tracemalloc

    from tinygrad_bp.tape import replay as replay_module

    _model, objective = make()
    big = np.random.default_rng(1).normal(size=(200_000, 3))
    tracemalloc.start()
    try:
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        objective.replay(big, np.zeros(len(big)))  # bigger than MAX_SCRATCH_BYTES: not kept
        tape = objective.tape(X, Y)
        for _ in range(3):
            tape.forward(big[:50_000], np.zeros(50_000))  # forward() never keeps its arrays' views
        tape._last = None
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    plan = tape._plan
    assert 2 * 8 * plan.n_v * len(big) > replay_module.MAX_SCRATCH_BYTES  # so it was too big to keep
    assert len(big) not in tape._workspace.by_size
    assert kept < 8 * 2**20


def test_a_hold_whose_numbers_cannot_be_written_back_still_frees_the_values():
    model = MLP(2, [2, 1], seed=0)
    objective = BatchObjective(model, "mse", check="none")
    with pytest.raises(ValueError, match="finite"), objective.hold() as held:
        held.data[0] = float("nan")
    with objective.hold():  # not "already held"
        objective(np.zeros((2, 2)), np.zeros(2))
