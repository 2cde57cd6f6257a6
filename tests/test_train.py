"""tinygrad_bp.train: seeded batches, fit (against hand-written loops), the articles' recipe, micrograd's demo."""

from __future__ import annotations

import math
import random
import sys

import pytest

from tinygrad_bp import MLP, SGD, Adam, Value
from tinygrad_bp.data import make_moons
from tinygrad_bp.losses import cross_entropy, l2_penalty, mse_loss
from tinygrad_bp.train import (
    OBJECTIVES,
    Network,
    Objective,
    accuracy,
    batches,
    fit,
    micrograd_demo,
    micrograd_init,
    network_sgd,
)


def params(model):
    return [p.data for p in model.parameters()]


def assert_close(xs, ys, rel=1e-12):
    assert len(xs) == len(ys)
    for i, (a, b) in enumerate(zip(xs, ys)):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-15), f"{i}: {a!r} vs {b!r}"


# --- batches -----------------------------------------------------------------------


def test_batches_cover_everything_once_in_batches_of_the_size():
    out = batches(10, 3, seed=0)
    assert [len(b) for b in out] == [3, 3, 3, 1]
    assert sorted(i for b in out for i in b) == list(range(10))
    assert [len(b) for b in batches(10, 3, seed=0, drop_last=True)] == [3, 3, 3]
    assert batches(4, None, seed=0, shuffle=False) == [[0, 1, 2, 3]]
    assert batches(5, 2, shuffle=False) == [[0, 1], [2, 3], [4]]
    assert batches(0, 2) == []


def test_batches_seeded_private_and_of_a_sequence():
    random.seed(3)
    state = random.getstate()
    a = batches(50, 7, seed=11)
    assert random.getstate() == state
    assert a == batches(50, 7, seed=11)
    assert a != batches(50, 7, seed=12)
    assert a != batches(50, 7, shuffle=False)
    letters = list("abcdefg")
    out = batches(letters, 3, seed=11)
    assert sorted(x for b in out for x in b) == letters
    assert [[letters[i] for i in b] for b in batches(7, 3, seed=11)] == out
    rng = random.Random(5)
    first, second = batches(8, 8, rng), batches(8, 8, rng)  # one generator: epochs differ
    assert first != second


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_batches_bad_size(bad):
    with pytest.raises(ValueError, match="batch_size must be a positive int or None"):
        batches(10, bad)


def test_batches_bad_data():
    with pytest.raises(ValueError, match=">= 0"):
        batches(-1, 2)
    with pytest.raises(ValueError, match="not a bool"):
        batches(True, 2)  # noqa: FBT003


# --- accuracy ----------------------------------------------------------------------


def test_accuracy_decision_rules():
    scalar = lambda x: Value(x[0])
    vector = lambda x: [Value(v) for v in x]
    X = [[0.7], [0.2], [0.5], [-0.1]]
    assert accuracy(scalar, X, [1, 0, 1, 0]) == 1.0  # o >= 0.5 -> 1
    assert accuracy(scalar, X, [1, 1, 1, 1], loss="hinge") == 0.75  # o > 0 -> 1, else -1
    assert accuracy(scalar, X, [1, 1, 1, -1], loss="hinge") == 1.0
    assert accuracy(scalar, X, [1, 1, 1, 0], loss="bce_with_logits") == 1.0  # z >= 0 -> 1
    assert accuracy(vector, [[0.1, 0.9, 0.0], [2.0, 1.0, 0.5]], [1, 0], loss="cross_entropy") == 1.0
    assert (
        accuracy(vector, [[0.1, 0.9, 0.0], [2.0, 1.0, 0.5]], [[0, 1, 0], [0, 0, 1]]) == 0.5
    )  # one-hot labels
    assert accuracy(scalar, X, [0, 0, 0, 0], predict=lambda o: 0) == 1.0


def test_accuracy_records_no_graph_and_checks_its_input():
    m = MLP(2, [3, 1], seed=0)
    outs = []
    accuracy(lambda x: outs.append(m(x)) or outs[-1], [[1.0, 2.0]], [1])
    assert outs[0].inputs == ()
    with pytest.raises(ValueError, match="2 samples but 1 labels"):
        accuracy(m, [[1.0, 2.0], [0.0, 0.0]], [1])
    with pytest.raises(ValueError, match="no samples"):
        accuracy(m, [], [])
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        accuracy(m, [[1.0, 2.0]], [1], loss="l1")


# --- fit -------------------------------------------------------------------------------


XOR_X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 0.2], [0.1, 0.8]]
XOR_Y = [0, 1, 1, 0, 1, 1]


def test_full_batch_fit_is_gradient_descent_on_the_mean_loss():
    m = MLP(2, [5, 1], activation="tanh", seed=1)
    ref = MLP(2, [5, 1], activation="tanh", seed=1)
    history = fit(m, XOR_X, XOR_Y, loss="mse", lr=0.3, epochs=5, progress=False, seed=0)
    losses = []
    for _ in range(5):
        ref.zero_grad()
        loss = mse_loss([ref(x) for x in XOR_X], XOR_Y)  # one graph, one backward
        loss.backward()
        losses.append(loss.data)
        for p in ref.parameters():
            p.data -= 0.3 * p.grad
    assert_close(params(m), params(ref))
    assert_close(history["loss"], losses)
    assert history["lr"] == [0.3] * 5


def test_mini_batch_fit_follows_a_hand_written_loop():
    m = MLP(2, [4, 3], activation="relu", seed=2)
    ref = MLP(2, [4, 3], activation="relu", seed=2)
    y = [0, 1, 2, 1, 0, 2]
    opt = Adam(ref.parameters(), lr=0.01, weight_decay=1e-3)
    history = fit(
        m,
        XOR_X,
        y,
        loss="cross_entropy",
        optimizer=Adam(m.parameters(), lr=0.01, weight_decay=1e-3),
        epochs=4,
        batch_size=4,
        seed=9,
        progress=False,
    )
    rng = random.Random(9)
    epoch_losses = []
    for _ in range(4):
        total = 0.0
        for index in batches(len(XOR_X), 4, rng):
            opt.zero_grad()
            loss = sum(cross_entropy(ref(XOR_X[i]), y[i]) for i in index) / len(index)
            loss.backward()
            opt.step()
            total += loss.data * len(index)
        epoch_losses.append(total / len(XOR_X))
    assert_close(params(m), params(ref))
    assert_close(history["loss"], epoch_losses)


def test_fit_is_reproducible_with_a_seed():
    runs = []
    for _ in range(2):
        m = MLP(2, [4, 1], activation="tanh", seed=4)
        h = fit(m, XOR_X, XOR_Y, lr=0.2, epochs=3, batch_size=2, seed=5, progress=False)
        runs.append((params(m), h))
    assert runs[0] == runs[1]
    m = MLP(2, [4, 1], activation="tanh", seed=4)
    fit(m, XOR_X, XOR_Y, lr=0.2, epochs=3, batch_size=2, seed=6, progress=False)
    assert params(m) != runs[0][0]


def test_history_keys_test_metrics_and_callback():
    m = MLP(2, [4, 2], activation="tanh", seed=0)
    seen = []

    def l1_norm(model, _x, _y):
        return sum(abs(p.data) for p in model.parameters())

    history = fit(
        m,
        XOR_X,
        XOR_Y,
        loss="cross_entropy",
        optimizer=SGD(m.parameters(), lr=0.5, momentum=0.9),
        epochs=3,
        batch_size=3,
        seed=0,
        progress=False,
        X_test=XOR_X[:3],
        y_test=XOR_Y[:3],
        metrics=("accuracy", l1_norm),
        callback=lambda epoch, h: seen.append((epoch, len(h["loss"]))),
    )
    assert set(history) == {
        "loss", "lr", "engine", "accuracy", "test_loss", "test_accuracy", "l1_norm", "test_l1_norm"
    }  # fmt: skip
    assert all(len(v) == 3 for v in history.values())
    assert seen == [(0, 1), (1, 2), (2, 3)]
    assert history["l1_norm"][-1] == pytest.approx(l1_norm(m, None, None), rel=1e-15)
    assert history["test_accuracy"][-1] == accuracy(m, XOR_X[:3], XOR_Y[:3], loss="cross_entropy")
    test_loss = sum(cross_entropy(m(x), t).data for x, t in zip(XOR_X[:3], XOR_Y[:3])) / 3
    assert history["test_loss"][-1] == pytest.approx(test_loss, rel=1e-12)
    assert all(0.0 <= a <= 1.0 for a in history["accuracy"])


def test_fit_accuracy_is_that_of_the_epochs_own_forward_passes():
    m = MLP(2, [4, 1], activation="tanh", seed=0)
    before = accuracy(m, XOR_X, XOR_Y)
    history = fit(m, XOR_X, XOR_Y, lr=0.1, epochs=1, progress=False)  # full batch: before the step
    assert history["accuracy"] == [before]


def test_penalty_and_lr_schedule():
    m = MLP(2, [3, 1], seed=0)
    ref = MLP(2, [3, 1], seed=0)
    y = [1, -1, -1, 1, -1, -1]
    schedule = lambda k: 1.0 - 0.9 * k / 10
    history = fit(
        m,
        XOR_X,
        y,
        loss="hinge",
        optimizer=SGD(m.parameters(), lr=123.0),
        epochs=3,
        progress=False,
        penalty=lambda ps: l2_penalty(ps, 1e-2),
        lr_schedule=schedule,
    )
    for k in range(3):
        ref.zero_grad()
        scores = [ref(x) for x in XOR_X]
        loss = sum((1 - yi * s).relu() for s, yi in zip(scores, y)) / len(y) + 1e-2 * sum(
            p * p for p in ref.parameters()
        )
        loss.backward()
        for p in ref.parameters():
            p.data -= schedule(k) * p.grad
        assert history["loss"][k] == pytest.approx(loss.data, rel=1e-12)
    assert_close(params(m), params(ref))
    assert history["lr"] == [schedule(k) for k in range(3)]


def test_custom_loss_function_and_objective():
    m = MLP(2, [3, 1], seed=0)
    squared = lambda out, t: (out - t) ** 2
    with pytest.raises(ValueError, match="custom loss needs predict"):
        fit(m, XOR_X, XOR_Y, loss=squared, progress=False)
    h = fit(m, XOR_X, XOR_Y, loss=squared, epochs=2, metrics=(), progress=False)
    assert set(h) == {"loss", "lr", "engine"}
    h = fit(m, XOR_X, XOR_Y, loss=squared, epochs=2, predict=lambda o: int(o.data > 0.5), progress=False)
    assert len(h["accuracy"]) == 2
    h = fit(m, XOR_X, XOR_Y, loss=Objective(squared, OBJECTIVES["mse"].predict), epochs=1, progress=False)
    assert "accuracy" in h


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y": [0, 1]}, "6 samples but 2 targets"),
        ({"X": [], "y": []}, "no training samples"),
        ({"X_test": XOR_X}, "both X_test and y_test"),
        ({"X_test": XOR_X, "y_test": [1]}, "6 test samples but 1 test targets"),
        ({"epochs": -1}, "epochs must be"),
        ({"engine": "gpu"}, "unknown engine 'gpu'"),
        ({"loss": "l1"}, "unknown loss 'l1'"),
        ({"loss": 3}, "loss must be"),
        ({"metrics": ("f1",)}, "unknown metric 'f1'"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_fit_bad_arguments(kwargs, message):
    m = MLP(2, [3, 1], seed=0)
    before = params(m)
    args = {"X": XOR_X, "y": XOR_Y, **kwargs}
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(ValueError, match=message):
        fit(m, X, y, progress=False, **args)
    assert params(m) == before


def test_loss_output_mismatch_is_explained():
    m = MLP(2, [3, 2], seed=0)
    with pytest.raises(ValueError, match=r"hinge.* one output"):
        fit(m, XOR_X, XOR_Y, loss="hinge", progress=False)
    with pytest.raises(ValueError, match="cross_entropy needs a list of logits"):
        fit(MLP(2, [3, 1], seed=0), XOR_X, XOR_Y, loss="cross_entropy", progress=False)


def test_progress_bar_and_switching_it_off(capsys, monkeypatch):
    m = MLP(2, [3, 1], seed=0)
    fit(m, XOR_X, XOR_Y, epochs=2, progress=False)
    assert capsys.readouterr().err == ""
    pytest.importorskip("tqdm")
    fit(m, XOR_X, XOR_Y, epochs=2, batch_size=3, progress=True)
    err = capsys.readouterr().err
    assert "4/4" in err
    assert "loss=" in err
    monkeypatch.setitem(sys.modules, "tqdm", None)  # tqdm missing: no bar, no error
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    h = fit(m, XOR_X, XOR_Y, epochs=2, progress=True)
    assert len(h["loss"]) == 2
    assert capsys.readouterr().err == ""


def test_zero_epochs_changes_nothing():
    m = MLP(2, [3, 1], seed=0)
    before = params(m)
    h = fit(m, XOR_X, XOR_Y, epochs=0, progress=False)
    assert h["loss"] == []
    assert params(m) == before


# --- the articles' Network.SGD recipe ----------------------------------------------------


def separable(n, seed):
    rng = random.Random(seed)
    data = []
    for _ in range(n):
        x = [rng.uniform(-1, 1), rng.uniform(-1, 1)]
        data.append((x, 1 if x[0] + x[1] > 0.1 else 0))
    return data


def test_network_sgd_trains_a_separable_problem():
    net = Network([2, 3, 1], seed=0)
    train, test = separable(200, 1), separable(100, 2)
    before = net.evaluate(test)
    history = net.SGD(train, 30, 10, 3.0, test_data=test, seed=0)
    assert len(history["test_accuracy"]) == 30
    after = net.evaluate(test)
    assert after >= 95
    assert after > before
    assert history["test_accuracy"][-1] == after / 100
    assert history["loss"][-1] < history["loss"][0]


def test_network_sgd_step_is_eta_times_the_mean_gradient_of_half_squared_error():
    net = Network([2, 3, 1], seed=3)
    ref = Network([2, 3, 1], seed=3)
    data = separable(4, 0)
    network_sgd(net, data, 1, 4, 3.0)  # one mini-batch of everything
    ref.zero_grad()
    for x, t in data:
        # C = 1/2 (y_hat - y)^2: dC/dy_hat = y_hat - y, not y_hat
        (0.5 * (ref(x) - t) ** 2 / len(data)).backward()
    for p in ref.parameters():
        p.data -= 3.0 * p.grad
    assert_close(params(net), params(ref))


def test_network_is_an_all_sigmoid_mlp():
    net = Network([3, 4, 2], seed=0)
    assert [layer.activation for layer in net.layers] == ["sigmoid", "sigmoid"]
    assert repr(net) == "Network([3, 4, 2])"
    assert len(net.feedforward([0.0, 1.0, 2.0])) == 2
    assert net.evaluate([([0.0, 1.0, 2.0], _argmax(net([0.0, 1.0, 2.0])))]) == 1
    with pytest.raises(ValueError, match="sizes"):
        Network([3])


def _argmax(outs):
    return max(range(len(outs)), key=lambda i: outs[i].data)


# --- micrograd's demo ------------------------------------------------------------------


def test_micrograd_init_draws_like_micrograd():
    m = micrograd_init(MLP(2, [16, 16, 1], seed=0), 1337)
    rng = random.Random(1337)
    for layer in m.layers:
        for n in layer.neurons:
            assert [w.data for w in n.w] == [rng.uniform(-1, 1) for _ in n.w]
            assert n.b.data == 0.0


def test_micrograd_demo_reaches_full_training_accuracy():
    # make_moons(100, noise=0.1, seed=1337), micrograd's init from seed 1337, hinge + 1e-4 L2,
    # 100 full-batch steps with lr = 1 - 0.9 k / 100
    result = micrograd_demo(1337)
    assert result.accuracy == 1.0
    assert result.history["accuracy"][-1] == 1.0
    assert result.history["loss"][-1] < 0.05
    assert result.history["loss"][-1] < result.history["loss"][0] / 10
    assert result.history["lr"][-1] == pytest.approx(1.0 - 0.9 * 99 / 100)


def test_micrograd_demo_follows_micrograd_itself():
    # the same data, init and recipe through micrograd's own engine: the same numbers
    micrograd = pytest.importorskip("micrograd")
    from micrograd.engine import Value as MValue
    from micrograd.nn import MLP as MMLP

    X, y = make_moons(20, noise=0.1, seed=5)
    y = [2 * t - 1 for t in y]
    state = random.getstate()
    random.seed(5)  # micrograd draws from the global generator
    model = MMLP(2, [16, 16, 1])
    random.setstate(state)
    losses = []
    for k in range(3):
        scores = [model([MValue(a) for a in x]) for x in X]
        data_loss = sum((1 + -yi * s).relu() for yi, s in zip(y, scores)) * (1.0 / len(X))
        total = data_loss + 1e-4 * sum(p * p for p in model.parameters())
        model.zero_grad()
        total.backward()
        for p in model.parameters():
            p.data -= (1.0 - 0.9 * k / 100) * p.grad
        losses.append(total.data)
    ours = micrograd_demo(5, X=X, y=y, steps=3)
    assert_close(ours.history["loss"], losses, rel=1e-12)
    assert_close(params(ours.model), [p.data for p in model.parameters()], rel=1e-12)
    assert micrograd.__name__ == "micrograd"


def test_micrograd_demo_bad_init():
    with pytest.raises(ValueError, match="init must be"):
        micrograd_demo(0, init="xavier")


# --- scripts/train_digits.py -----------------------------------------------------------


def test_train_digits_script_runs_and_learns(capsys):
    pytest.importorskip("sklearn")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "train_digits.py"
    spec = importlib.util.spec_from_file_location("train_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # one short epoch as a smoke test; the full run (10 epochs, 32 hidden units) reaches >= 95%
    assert module.main(["--epochs", "1", "--hidden", "16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "epoch  1: loss" in out
    final = float(out.split("test accuracy ")[-1].split()[0])
    assert final > 0.5  # chance is 0.1
    assert " s\n" in out


# --- the tape engine inside fit ----------------------------------------------------------


def _run_fit(engine, loss, X, y, nouts, **kwargs):
    out = "sigmoid" if loss == "bce" else "linear"  # bce takes a probability
    model = MLP(len(X[0]), nouts, activation="tanh", output_activation=out, seed=3)
    history = fit(model, X, y, loss=loss, engine=engine, progress=False, seed=5, **kwargs)
    return history, [p.data for p in model.parameters()]


@pytest.mark.parametrize(
    ("loss", "nouts", "labels"),
    [
        ("hinge", [8, 1], "sign"),
        ("mse", [6, 1], "bit"),
        ("half_sse", [6, 1], "bit"),
        ("bce", [6, 1], "bit"),  # a row of the table, so the tape replays it too
        ("bce_with_logits", [6, 1], "bit"),
        ("cross_entropy", [6, 3], "class"),
    ],
)
def test_tape_engine_trains_exactly_like_the_scalar_engine(loss, nouts, labels):
    pytest.importorskip("numpy")
    X, y01 = make_moons(40, noise=0.2, seed=2)
    y = {"sign": [2 * t - 1 for t in y01], "bit": y01, "class": [(t + i) % 3 for i, t in enumerate(y01)]}[labels]
    kwargs = {"epochs": 3, "batch_size": 16, "lr": 0.05, "penalty": lambda ps: l2_penalty(ps, 1e-3)}
    kwargs.update(X_test=X[:10], y_test=y[:10])  # measured after each epoch, by the same engine
    scalar, p_scalar = _run_fit("scalar", loss, X, y, nouts, **kwargs)
    tape, p_tape = _run_fit("tape", loss, X, y, nouts, **kwargs)
    auto, p_auto = _run_fit("auto", loss, X, y, nouts, **kwargs)
    assert (scalar["engine"], tape["engine"], auto["engine"]) == (["scalar"] * 3, ["tape"] * 3, ["tape"] * 3)
    for key in set(scalar) - {"engine"}:
        assert tape[key] == pytest.approx(scalar[key], rel=1e-12, abs=1e-15), key
        assert auto[key] == pytest.approx(scalar[key], rel=1e-12, abs=1e-15), key
    assert p_tape == pytest.approx(p_scalar, rel=1e-11, abs=1e-14)
    assert p_auto == pytest.approx(p_scalar, rel=1e-11, abs=1e-14)


def test_auto_engine_falls_back_to_the_scalar_engine_when_the_tape_refuses():
    pytest.importorskip("numpy")
    X, y01 = make_moons(20, noise=0.2, seed=1)
    y = [(t + i) % 3 for i, t in enumerate(y01)]

    def value_dependent(out, t):  # shifts by max(z.data): the tape cannot record that
        return cross_entropy(out, t)

    kwargs = {"epochs": 2, "batch_size": 8, "lr": 0.05, "predict": lambda out: max(range(3), key=lambda i: out[i].data)}
    scalar, p_scalar = _run_fit("scalar", value_dependent, X, y, [4, 3], **kwargs)
    auto, p_auto = _run_fit("auto", value_dependent, X, y, [4, 3], **kwargs)
    assert auto == scalar
    assert p_auto == p_scalar
    from tinygrad_bp.errors import TapeMismatchError

    with pytest.raises((TapeMismatchError, ValueError)):
        _run_fit("tape", value_dependent, X, y, [4, 3], **kwargs)


def test_a_fallback_lasts_for_one_call_is_reported_and_is_warned_about():
    """A graph that changes mid-training: the rest of that call runs on the scalar engine, with a warning;
    the history says which engine ran each epoch; the next call records the new graph on the tape."""
    pytest.importorskip("numpy")

    class Switching:
        def __init__(self):
            self.mlp = MLP(2, [3, 1], activation="tanh", seed=0)
            self.doubled = False

        def __call__(self, x):
            out = self.mlp(x)
            return out * 2.0 if self.doubled else out

        def parameters(self):
            return self.mlp.parameters()

    X, y01 = make_moons(24, noise=0.2, seed=1)
    model = Switching()

    def switch(_epoch, _history):
        model.doubled = True

    with pytest.warns(RuntimeWarning, match="no longer describes"):
        first = fit(model, X, y01, loss="mse", engine="auto", epochs=3, batch_size=8, progress=False,
                    seed=0, callback=switch)
    assert first["engine"] == ["tape", "scalar", "scalar"]
    second = fit(model, X, y01, loss="mse", engine="auto", epochs=2, batch_size=8, progress=False, seed=0)
    assert second["engine"] == ["tape", "tape"]  # not stuck on the scalar engine


def test_tape_rechecks_structure_only_for_code_it_does_not_know():
    from tinygrad_bp.train import OBJECTIVES, Objective, _tape_check

    class Custom(MLP):
        pass

    assert _tape_check(MLP(2, [1]), OBJECTIVES["mse"]) == "none"
    assert _tape_check(Custom(2, [1]), OBJECTIVES["mse"]) == "first"
    assert _tape_check(MLP(2, [1]), Objective(lambda out, t: (out - t) ** 2, None)) == "first"


def test_hidden_state_that_changes_the_graph_is_caught_by_the_tape():
    pytest.importorskip("numpy")
    from tinygrad_bp.errors import TapeMismatchError

    class Moody(MLP):
        calls = 0

        def __call__(self, x):
            Moody.calls += 1
            out = super().__call__(x)
            return out.tanh() if Moody.calls > 3 else out  # the graph changes after three calls

    X, y = make_moons(16, noise=0.1, seed=0)
    with pytest.raises(TapeMismatchError):
        fit(Moody(2, [3, 1], seed=0), X, y, loss="mse", engine="tape", epochs=2, batch_size=4, progress=False)


# --- the tape engine never trains a different model than the scalar engine (review findings) ------


def _same_runs(make_model, X, y, **kwargs):
    runs = []
    for engine in ("scalar", "auto"):
        model = make_model()
        history = fit(model, X, y, engine=engine, progress=False, seed=0, **kwargs)
        runs.append((history, [p.data for p in model.parameters()]))
    (h_scalar, p_scalar), (h_auto, p_auto) = runs
    for key in set(h_scalar) - {"engine"}:  # which engine ran is the point of "engine"; the numbers agree
        assert h_auto[key] == pytest.approx(h_scalar[key], rel=1e-12, abs=1e-15), key
    assert p_auto == pytest.approx(p_scalar, rel=1e-11, abs=1e-14)


def test_saturated_bce_trains_the_same_on_both_engines():
    pytest.importorskip("numpy")
    _same_runs(
        lambda: MLP.from_weights([[[1.0]]], [[0.0]], output_activation="sigmoid"),
        [[-120.0], [0.5], [60.0]],
        [1, 0, 0],
        loss="bce",
        epochs=2,
        lr=1e-3,
        metrics=(),
    )


def test_a_penalty_that_changes_between_batches_is_never_stale():
    pytest.importorskip("numpy")
    state = {"alpha": 0.0}

    def penalty(ps):
        return state["alpha"] * l2_penalty(ps)

    def anneal(epoch, _history):
        state["alpha"] = 0.1 * (epoch + 1)

    X, y = make_moons(12, noise=0.1, seed=0)
    runs = []
    for engine in ("scalar", "auto"):
        state["alpha"] = 0.0
        model = MLP(2, [3, 1], seed=1)
        runs.append(
            fit(model, X, y, loss="mse", engine=engine, epochs=3, lr=0.1, penalty=penalty, callback=anneal, progress=False)
        )
    assert runs[1]["loss"] == pytest.approx(runs[0]["loss"], rel=1e-12)


def test_a_graph_that_changes_mid_training_falls_back_to_the_scalar_engine():
    pytest.importorskip("numpy")

    class Leaky(MLP):
        def __call__(self, x):
            z = super().__call__(x)
            return z if z > 0 else z * 0.1  # value-dependent control flow

    X, y = make_moons(16, noise=0.1, seed=3)
    _same_runs(lambda: Leaky(2, [3, 1], seed=2), X, y, loss="mse", epochs=3, batch_size=4, lr=0.5)


def test_cross_entropy_takes_class_probabilities_on_both_engines_and_refuses_a_float_class():
    pytest.importorskip("numpy")
    X = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]
    soft = [[0.25, 0.5, 0.25], [1.0, 0.0, 0.0], [0.0, 0.1, 0.9]]  # as torch's cross_entropy allows
    _same_runs(lambda: MLP(2, [3], seed=0), X, soft, loss="cross_entropy", epochs=3, batch_size=3, lr=0.5)
    hard = [1, 0, 2]
    _same_runs(lambda: MLP(2, [3], seed=0), X, hard, loss="cross_entropy", epochs=3, batch_size=3, lr=0.5)
    for engine in ("scalar", "auto", "tape"):
        with pytest.raises(ValueError, match="int"):
            fit(MLP(2, [3], seed=0), X, [1, 2.0, 0], loss="cross_entropy", engine=engine, epochs=1, progress=False)
        with pytest.raises(ValueError, match="2 class probabilities for 3 logits"):
            fit(MLP(2, [3], seed=0), X, [[0.5, 0.5]] * 3, loss="cross_entropy", engine=engine, progress=False)


def test_class_probability_rows_as_an_array_give_one_accuracy_per_epoch():
    np = pytest.importorskip("numpy")
    X = np.random.default_rng(0).normal(size=(12, 3))
    rows = np.eye(3)[[0, 1, 2] * 4]
    for engine in ("scalar", "tape"):
        history = fit(MLP(3, [4, 3], seed=1), X, rows, loss="cross_entropy", engine=engine, progress=False)
        assert all(isinstance(a, float) for a in history["accuracy"]), history["accuracy"]
        as_lists = fit(MLP(3, [4, 3], seed=1), X, rows.tolist(), loss="cross_entropy", engine=engine, progress=False)
        assert history["accuracy"] == as_lists["accuracy"]


def test_mixed_class_and_row_targets_are_one_clear_error_on_the_tape():
    pytest.importorskip("numpy")
    X = [[0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match="all classes or all rows"):
        fit(MLP(2, [3], seed=0), X, [1, [0.0, 1.0, 0.0]], loss="cross_entropy", engine="tape", progress=False)
    with pytest.raises(ValueError, match="one number or Value per class"):
        fit(MLP(2, [1], seed=0), X, [0, 0], loss="cross_entropy", engine="tape", progress=False)


def test_fit_on_the_tape_keeps_no_model_alive():
    """The tapes fit records live on the model: a dropped model is freed (issue 12: 30 fits leaked 1.8 MB)."""
    pytest.importorskip("numpy")
    import gc
    import weakref

    X, y = make_moons(16, noise=0.1, seed=0)
    refs = []
    for k in range(3):
        model = MLP(2, [3, 1], seed=k)
        fit(model, X, y, loss="mse", engine="auto", epochs=1, batch_size=8, progress=False)
        refs.append(weakref.ref(model))
    del model
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


# --- the parameters held as arrays while fit trains on the tape ----------------------------------


def _fit_twice(monkeypatch, make_model, optimizer_of=lambda model: None, **kwargs):
    """(history, parameters) of fit with the epoch's hold, and again with the hold switched off."""
    import tinygrad_bp.train as train_module

    runs = []
    held_models = []
    real_hold = train_module._hold_for_epoch

    def spying_hold(run):
        real_hold(run)
        held_models.append(run.model in train_module._holds)

    for hold in (spying_hold, lambda run: None):
        monkeypatch.setattr(train_module, "_hold_for_epoch", hold)
        model = make_model()
        history = fit(model, progress=False, seed=5, optimizer=optimizer_of(model), **kwargs)
        runs.append((history, [p.data for p in model.parameters()]))
    return runs, held_models


@pytest.mark.parametrize(
    "optimizer_of",
    [
        lambda m: None,
        lambda m: SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True),
        lambda m: Adam(m.parameters(), lr=0.01, amsgrad=True),
    ],
)
def test_fit_on_the_tape_holds_the_parameters_as_arrays_with_the_same_numbers(monkeypatch, optimizer_of):
    pytest.importorskip("numpy")
    X, y01 = make_moons(40, noise=0.2, seed=2)
    y = [2 * t - 1 for t in y01]
    runs, held = _fit_twice(
        monkeypatch,
        lambda: MLP(2, [6, 1], activation="tanh", seed=3),
        X=X, y=y, loss="hinge", engine="tape", epochs=3, batch_size=16, lr=0.05,
        X_test=X[:10], y_test=y[:10], optimizer_of=optimizer_of,
    )
    (with_hold, p_with), (without, p_without) = runs
    assert held == [True, True, True]  # every epoch trained on held arrays
    assert with_hold == without
    assert p_with == p_without


def test_a_fallback_in_the_middle_of_a_held_epoch_gives_the_numbers_of_the_values_path(monkeypatch):
    pytest.importorskip("numpy")

    class SwitchesAfterCalls:
        """Not one of the library's models: its first sample is re-traced at every batch."""

        def __init__(self):
            self.mlp = MLP(2, [3, 1], activation="tanh", seed=0)
            self.calls = 0

        def __call__(self, x):
            self.calls += 1
            out = self.mlp(x)
            return out * 2.0 if self.calls > 6 else out

        def parameters(self):
            return self.mlp.parameters()

    X, y01 = make_moons(40, noise=0.2, seed=1)
    with pytest.warns(RuntimeWarning, match="no longer describes"):
        runs, held = _fit_twice(
            monkeypatch, SwitchesAfterCalls, X=X, y=y01, loss="mse", engine="auto", epochs=2, batch_size=8
        )
    (with_hold, p_with), (without, p_without) = runs
    assert held[0] is True
    assert with_hold["engine"][-1] == "scalar"  # it fell back during the first epoch
    assert with_hold == without
    assert p_with == p_without
