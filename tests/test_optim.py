"""tinygrad_bp.optim: SGD and Adam follow torch.optim's float64 trajectories step by step."""

from __future__ import annotations

import math

import pytest

from tinygrad_bp import MLP, SGD, Adam, Value
from tinygrad_bp.losses import mse_loss

REL = 1e-12


def assert_close_lists(ours, theirs, rel=REL, where=""):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-14), f"{where} parameter {i}: {a!r} vs {b!r}"


def himmelblau(x, y):
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


SGD_CONFIGS = [
    {"lr": 1e-3},
    {"lr": 1e-3, "momentum": 0.9},
    {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.1},
    {"lr": 1e-3, "momentum": 0.9, "nesterov": True},
    {"lr": 5e-4, "momentum": 0.5, "dampening": 0.3},
    {"lr": 1e-3, "weight_decay": 0.01},
]
ADAM_CONFIGS = [
    {"lr": 1e-2},
    {"lr": 1e-2, "weight_decay": 0.1},
    {"lr": 5e-2, "betas": (0.8, 0.99), "eps": 1e-6},
    {"lr": 1e-3, "betas": (0.0, 0.5)},
    {"lr": 1e-2, "amsgrad": True},
    {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1},
]


def run_himmelblau(torch, ours_cls, theirs_cls, config, start, steps, lr_at=None):
    x, y = Value(start[0]), Value(start[1])
    ours = ours_cls([x, y], **config)
    t = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    theirs = theirs_cls([t], **config)
    for k in range(steps):
        if lr_at is not None:
            ours.lr = lr_at(k)
            for group in theirs.param_groups:
                group["lr"] = lr_at(k)
        ours.zero_grad()
        himmelblau(x, y).backward()
        ours.step()
        theirs.zero_grad()
        himmelblau(t[0], t[1]).backward()
        theirs.step()
        assert_close_lists([x.data, y.data], t.tolist(), where=f"step {k}:")
    return x.data, y.data


@pytest.mark.parametrize("config", SGD_CONFIGS, ids=str)
@pytest.mark.parametrize("start", [(0.0, 0.0), (-4.0, 0.5)])
def test_sgd_follows_torch_on_himmelblau(torch, config, start):
    end = run_himmelblau(torch, SGD, torch.optim.SGD, config, start, 300)
    assert end != start


@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=str)
@pytest.mark.parametrize("start", [(0.0, 0.0), (-2.0, 2.0)])
def test_adam_follows_torch_on_himmelblau(torch, config, start):
    end = run_himmelblau(torch, Adam, torch.optim.Adam, config, start, 300)
    assert end != start


def test_a_learning_rate_changed_between_steps_is_honoured(torch):
    schedule = lambda k: 1e-3 * (1 - k / 200) + 1e-5
    run_himmelblau(torch, SGD, torch.optim.SGD, {"lr": 1.0, "momentum": 0.9}, (0.0, 0.0), 200, schedule)
    run_himmelblau(torch, Adam, torch.optim.Adam, {"lr": 1.0}, (0.0, 0.0), 200, lambda k: 0.05 / (1 + k))


def test_changing_lr_changes_the_step():
    x = Value(1.0)
    opt = SGD([x], lr=0.1)
    x.grad = 2.0
    opt.step()
    assert x.data == 1.0 - 0.1 * 2.0
    opt.lr = 0.5
    opt.step()
    assert x.data == (1.0 - 0.1 * 2.0) - 0.5 * 2.0


def torch_copy(torch, mlp):
    layers = []
    for layer in mlp.layers:
        lin = torch.nn.Linear(len(layer.neurons[0].w), len(layer.neurons), dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor([[w.data for w in n.w] for n in layer.neurons]))
            lin.bias.copy_(torch.tensor([n.b.data for n in layer.neurons]))
        layers.append(lin)
        if layer.activation == "tanh":
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def torch_params(torch, net):
    out = []
    for module in net:
        if isinstance(module, torch.nn.Linear):
            for w_row, b in zip(module.weight.tolist(), module.bias.tolist()):
                out += [*w_row, b]
    return out


@pytest.mark.parametrize(
    ("ours_cls", "config"),
    [
        (SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}),
        (SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
        (Adam, {"lr": 0.01, "weight_decay": 1e-2}),
        (Adam, {"lr": 0.02}),
    ],
)
def test_tiny_mlp_follows_torch(torch, ours_cls, config):
    mlp = MLP(2, [4, 1], activation="tanh", seed=3)
    net = torch_copy(torch, mlp)
    X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, -0.3]]
    Y = [0.0, 1.0, 1.0, 0.0, 0.25]
    ours = ours_cls(mlp.parameters(), **config)
    theirs = (torch.optim.SGD if ours_cls is SGD else torch.optim.Adam)(net.parameters(), **config)
    xt, yt = torch.tensor(X), torch.tensor(Y)
    assert_close_lists([p.data for p in mlp.parameters()], torch_params(torch, net))
    first = last = None
    for k in range(60):
        ours.zero_grad()
        loss = mse_loss([mlp(x) for x in X], Y)
        loss.backward()
        ours.step()
        theirs.zero_grad()
        tloss = torch.nn.functional.mse_loss(net(xt).squeeze(1), yt)
        tloss.backward()
        theirs.step()
        assert math.isclose(loss.data, tloss.item(), rel_tol=REL)
        assert_close_lists([p.data for p in mlp.parameters()], torch_params(torch, net), where=f"step {k}:")
        first = loss.data if first is None else first
        last = loss.data
    assert last < first  # it did train


def test_zero_grad_and_state():
    x = Value(1.0)
    x.grad = 3.0
    opt = Adam([x], weight_decay=0.5)
    opt.zero_grad()
    assert x.grad == 0.0
    assert isinstance(x.grad, float)
    opt.step()  # no gradient since zero_grad: left alone, even with weight decay (torch's rule)
    assert x.data == 1.0
    assert opt.t == 0
    (x * 2.0).backward()
    opt.step()
    assert opt.t == 1
    assert x.data != 1.0


@pytest.mark.parametrize(
    ("ours_cls", "config"),
    [(SGD, {"lr": 0.1, "momentum": 0.9}), (Adam, {"lr": 0.1}), (Adam, {"lr": 0.1, "amsgrad": True})],
)
def test_a_parameter_without_gradient_is_skipped_as_torch_does(torch, ours_cls, config):
    """Step 1's loss a*b, step 2's a*a: b gets no gradient in step 2 and must not move."""
    a, b = Value(1.0), Value(2.0)
    ours = ours_cls([a, b], **config)
    ta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    theirs = getattr(torch.optim, ours_cls.__name__)([ta, tb], **config)
    for loss, tloss in ((lambda: a * b, lambda: ta * tb), (lambda: a * a, lambda: ta * ta)) * 2:
        ours.zero_grad()
        loss().backward()
        ours.step()
        theirs.zero_grad()
        tloss().backward()
        theirs.step()
        assert_close_lists([a.data, b.data], [ta.item(), tb.item()])


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("SGD", {"lr": 0.05, "momentum": 0.9, "maximize": True}),
        ("SGD", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
        ("Adam", {"lr": 0.05, "maximize": True}),
        ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01, "maximize": True}),
    ],
)
def test_maximize_climbs_as_torch_does(torch, name, config):
    """maximize=True: the update follows +grad, on f = -(x - 1)^2 - (y + 2)^2 (a maximum at (1, -2))."""
    ours_cls = {"SGD": SGD, "Adam": Adam}[name]
    x, y = Value(0.0), Value(0.0)
    ours = ours_cls([x, y], **config)
    t = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)
    theirs = getattr(torch.optim, name)([t], **config)
    for k in range(200):
        ours.zero_grad()
        (-((x - 1.0) ** 2) - (y + 2.0) ** 2).backward()
        ours.step()
        theirs.zero_grad()
        (-((t[0] - 1.0) ** 2) - (t[1] + 2.0) ** 2).backward()
        theirs.step()
        assert_close_lists([x.data, y.data], t.tolist(), where=f"step {k}:")
    assert x.data > 0.5
    assert y.data < -1.0


def test_sgd_takes_torchs_positional_order():
    x = Value(1.0)
    ours = SGD([x], 0.1, 0.9, 0.2, 0.05, False)  # lr, momentum, dampening, weight_decay, nesterov  # noqa: FBT003 - torch's positional order is the point
    assert (ours.momentum, ours.dampening, ours.weight_decay) == (0.9, 0.2, 0.05)
    with pytest.raises(TypeError):
        SGD([x], 0.1, 0.9, 0.2, 0.05, False, True)  # maximize is keyword-only, as in torch  # noqa: FBT003


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ps: SGD(ps, lr=-0.1), "SGD: lr must be a finite number >= 0, got -0.1"),
        (lambda ps: SGD(ps, lr="0.1"), "SGD: lr must be"),
        (lambda ps: SGD(ps, lr=math.nan), "SGD: lr must be"),
        (lambda ps: SGD(ps, lr=0.1, momentum=-0.9), "SGD: momentum must be"),
        (lambda ps: SGD(ps, lr=0.1, weight_decay=-1.0), "SGD: weight_decay must be"),
        (lambda ps: SGD(ps, lr=0.1, nesterov=True), "SGD: nesterov momentum needs momentum > 0"),
        (lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
        (lambda ps: Adam(ps, lr=-1e-3), "Adam: lr must be"),
        (lambda ps: Adam(ps, betas=(1.0, 0.999)), r"Adam: betas\[0\] must be in \[0, 1\), got 1.0"),
        (lambda ps: Adam(ps, betas=(0.9, -0.1)), r"Adam: betas\[1\] must be in \[0, 1\)"),
        (lambda ps: Adam(ps, betas=(0.9,)), r"Adam: betas must be a pair \(beta1, beta2\), got \(0.9,\)"),
        (lambda ps: Adam(ps, betas=0.9), "Adam: betas must be a pair"),
        (lambda ps: Adam(ps, betas=("0.9", 0.999)), r"Adam: betas\[0\] must be in \[0, 1\), got '0.9'"),
        (lambda ps: Adam(ps, betas=(0.9, math.nan)), r"Adam: betas\[1\] must be in"),
        (lambda ps: Adam(ps, eps=-1e-8), "Adam: eps must be"),
        (lambda ps: Adam(ps, weight_decay=math.inf), "Adam: weight_decay must be"),
        (lambda ps: SGD([], lr=0.1), "SGD: got an empty parameter list"),
        (lambda ps: Adam([], lr=0.1), "Adam: got an empty parameter list"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make([Value(1.0)])


def test_non_values_are_a_type_error():
    with pytest.raises(TypeError, match=r"params\[1\] is a float, not a Value"):
        SGD([Value(1.0), 2.0], lr=0.1)


def test_params_may_be_a_generator():
    mlp = MLP(2, [2, 1], seed=0)
    opt = SGD((p for p in mlp.parameters()), lr=0.1)
    assert opt.params == mlp.parameters()


@pytest.mark.parametrize(
    "make", [lambda ps: SGD(ps, lr=0.002, momentum=0.9), lambda ps: Adam(ps, lr=0.01, weight_decay=0.1)]
)
def test_optimizer_state_round_trips_through_json_and_resumes_the_same_run(make):
    import json

    def run(opt, params, steps):
        for _ in range(steps):
            opt.zero_grad()
            x, y = params
            ((x * x + y - 11) ** 2 + (x + y * y - 7) ** 2).backward()
            opt.step()

    straight = [Value(0.5), Value(-1.0)]
    run(make(straight), straight, 20)

    resumed = [Value(0.5), Value(-1.0)]
    first = make(resumed)
    run(first, resumed, 8)
    saved = json.loads(json.dumps(first.state_dict()))
    second = make(resumed)
    second.load_state_dict(saved)
    run(second, resumed, 12)
    assert [p.data for p in resumed] == [p.data for p in straight]


def test_optimizer_load_state_dict_rejects_bad_state_and_changes_nothing():
    ps = [Value(1.0), Value(2.0)]
    opt = Adam(ps, lr=0.01)
    before = opt.state_dict()
    for bad, word in (
        ({"lr": 0.1}, "keys"),
        ({**before, "exp_avg": [0.0]}, "exp_avg"),
        ({**before, "exp_avg_sq": [0.0, "x"]}, "exp_avg_sq"),
        ({**before, "step": 1.5}, "step"),
        ({**before, "lr": -1}, "lr"),
    ):
        with pytest.raises(ValueError, match=word):
            opt.load_state_dict(bad)
        assert opt.state_dict() == before


# --- property: optimizers against torch, with parameters that randomly receive no gradient ------

from hypothesis import given, settings  # noqa: E402 - the property tests below
from hypothesis import strategies as st  # noqa: E402

_CONFIGS = st.one_of(
    st.fixed_dictionaries(
        {
            "name": st.just("SGD"),
            "lr": st.sampled_from([0.01, 0.1]),
            "momentum": st.sampled_from([0.0, 0.5, 0.9]),
            "weight_decay": st.sampled_from([0.0, 0.1]),
            "maximize": st.booleans(),
        }
    ),
    st.fixed_dictionaries(
        {
            "name": st.just("Adam"),
            "lr": st.sampled_from([0.01, 0.1]),
            "weight_decay": st.sampled_from([0.0, 0.1]),
            "amsgrad": st.booleans(),
            "maximize": st.booleans(),
        }
    ),
)


@settings(max_examples=40, deadline=None)
@given(
    config=_CONFIGS,
    start=st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3),
    used=st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=1, max_size=6),
)
def test_optimizers_follow_torch_when_parameters_randomly_get_no_gradient(torch, config, start, used):
    """Each step, a random subset of the parameters enters the loss; the others get no gradient
    (torch: grad None after zero_grad(), and step() skips them; here: NO_GRAD)."""
    config = dict(config)
    name = config.pop("name")
    ours_params = [Value(x) for x in start]
    theirs_params = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in start]
    ours = {"SGD": SGD, "Adam": Adam}[name](ours_params, **config)
    theirs = getattr(torch.optim, name)(theirs_params, **config)
    for mask in used:
        ours.zero_grad()
        theirs.zero_grad()
        chosen = [i for i, on in enumerate(mask) if on]
        if chosen:
            sum((ours_params[i] - 0.5) * (ours_params[i] - 0.5) * (i + 1) for i in chosen).backward()
            sum((theirs_params[i] - 0.5) * (theirs_params[i] - 0.5) * (i + 1) for i in chosen).backward()
        ours.step()
        theirs.step()
        assert_close_lists([p.data for p in ours_params], [p.item() for p in theirs_params], rel=1e-12)
