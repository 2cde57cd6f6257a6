"""tinygrad_bp.interop: to_torch / from_torch give the same outputs and the same gradients."""

from __future__ import annotations

import math
import sys

import pytest

from tinygrad_bp import MLP, Layer, Neuron, grad
from tinygrad_bp.interop import from_torch, to_torch
from tinygrad_bp.losses import mse_loss

X = [[0.3, -1.2, 0.5], [1.0, 0.0, -0.7], [-0.4, 0.9, 2.0], [0.05, 0.1, -0.2]]


def close_lists(xs, ys, rel=1e-12):
    return len(xs) == len(ys) and all(math.isclose(a, b, rel_tol=rel, abs_tol=1e-14) for a, b in zip(xs, ys))


def outputs(model, X):
    out = []
    for x in X:
        y = model(x)
        out += [v.data for v in y] if isinstance(y, list) else [y.data]
    return out


def torch_param_order(torch, net):
    """Parameters of a Sequential of Linears in tinygrad_bp's order: per neuron its weights, then its bias."""
    values, grads = [], []
    for module in net:
        if isinstance(module, torch.nn.Linear):
            for j in range(module.out_features):
                values += [*module.weight[j].tolist(), module.bias[j].item()]
                grads += [*module.weight.grad[j].tolist(), module.bias.grad[j].item()]
    return values, grads


@pytest.mark.parametrize(
    ("activation", "output_activation"),
    [("relu", "linear"), ("tanh", "sigmoid"), ("sigmoid", "tanh"), ("linear", "relu")],
)
def test_to_torch_same_outputs_and_gradients(torch, activation, output_activation):
    m = MLP(3, [5, 4, 2], activation=activation, output_activation=output_activation, seed=7)
    net = to_torch(m)
    assert isinstance(net, torch.nn.Sequential)
    assert all(p.dtype == torch.float64 for p in net.parameters())
    xt = torch.tensor(X)
    assert close_lists(outputs(m, X), net(xt).flatten().tolist())
    targets = [[0.5, -0.5]] * len(X)
    loss = mse_loss([v for x in X for v in m(x)], [t for row in targets for t in row])
    loss.backward()
    tloss = torch.nn.functional.mse_loss(net(xt), torch.tensor(targets))
    tloss.backward()
    assert math.isclose(loss.data, tloss.item(), rel_tol=1e-12)
    values, grads = torch_param_order(torch, net)
    assert close_lists([p.data for p in m.parameters()], values, rel=0)
    assert close_lists([p.grad for p in m.parameters()], grads)


def test_to_torch_layout_and_independence(torch):
    m = MLP(2, [3, 1], activation="tanh", output_activation="linear", seed=0)
    net = to_torch(m)
    kinds = [type(layer).__name__ for layer in net]
    assert kinds == ["Linear", "Tanh", "Linear"]
    assert net[0].weight.tolist() == [[w.data for w in n.w] for n in m.layers[0].neurons]
    assert net[2].bias.tolist() == [m.layers[1].neurons[0].b.data]
    with torch.no_grad():
        net[0].weight.zero_()
    assert m.layers[0].neurons[0].w[0].data != 0.0  # copies, not shared


def test_to_torch_layer_and_neuron(torch):
    layer = Layer(3, 2, activation="sigmoid", seed=1)
    net = to_torch(layer)
    assert close_lists([v for x in X for v in outputs(layer, [x])], net(torch.tensor(X)).flatten().tolist())
    neuron = Neuron(3, activation="relu", seed=2)
    net = to_torch(neuron)
    assert close_lists(outputs(neuron, X), net(torch.tensor(X)).flatten().tolist())
    with pytest.raises(ValueError, match="expected an MLP, a Layer or a Neuron"):
        to_torch(object())


@pytest.mark.parametrize("hidden", ["ReLU", "Tanh", "Sigmoid", "Identity", None])
@pytest.mark.parametrize("final", ["Sigmoid", None])
def test_from_torch_same_outputs_and_gradients(torch, hidden, final):
    torch.manual_seed(0)
    nn = torch.nn
    parts = [nn.Linear(3, 4)]
    if hidden:
        parts.append(getattr(nn, hidden)())
    parts.append(nn.Linear(4, 2, bias=False))
    if final:
        parts.append(getattr(nn, final)())
    net = nn.Sequential(*parts).double()
    m = from_torch(net)
    assert isinstance(m, MLP)
    assert m.layers[0].activation == {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}.get(
        hidden, "linear"
    )
    assert m.layers[1].activation == ("sigmoid" if final else "linear")
    assert all(n.b.data == 0.0 for n in m.layers[1].neurons)  # bias=False
    xt = torch.tensor(X, requires_grad=True)
    assert close_lists(outputs(m, X), net(xt).flatten().tolist())
    # gradients with respect to the inputs and the weights
    x = X[0]
    from tinygrad_bp import Value

    xv = [Value(v) for v in x]
    out = m(xv)
    s = out[0] * 2.0 + out[1]
    ours = grad(s, xv + m.parameters())
    xt0 = torch.tensor(x, requires_grad=True)
    y = net(xt0)
    (y[0] * 2.0 + y[1]).backward()
    assert close_lists(ours[:3], xt0.grad.tolist())
    first = net[0]
    assert close_lists(ours[3:6], first.weight.grad[0].tolist())
    assert math.isclose(ours[6], first.bias.grad[0].item(), rel_tol=1e-12)


@pytest.mark.usefixtures("torch")
def test_round_trip_through_torch_is_exact():
    m = MLP(3, [6, 6, 3], activation="tanh", output_activation="sigmoid", seed=11)
    back = from_torch(to_torch(m))
    assert back.state_dict() == m.state_dict()
    assert [layer.activation for layer in back.layers] == ["tanh", "tanh", "sigmoid"]


def test_from_torch_float32_is_widened_exactly(torch):
    lin = torch.nn.Linear(2, 1)  # float32 (the default dtype may be float64 in this session)
    lin = lin.float()
    m = from_torch(lin)
    assert [w.data for w in m.layers[0].neurons[0].w] == lin.weight.double()[0].tolist()


def test_from_torch_refuses_what_an_mlp_cannot_be(torch):
    nn = torch.nn
    cases = [
        (nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5), nn.Linear(3, 1)), r"unsupported layer 1: Dropout"),
        (nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=0)), r"unsupported layer 1: Softmax"),
        (nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Linear(3, 1))), r"unsupported layer 1: Sequential"),
        (nn.Sequential(nn.ReLU(), nn.Linear(2, 3)), r"layer 0 \(ReLU\(\)\) comes before any nn.Linear"),
        (
            nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Tanh()),
            r"layer 2 \(Tanh\(\)\) is a second activation",
        ),
        (
            nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1)),
            r"layer 1 .* takes 4 inputs, but the layer before gives 3",
        ),
        (
            nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)),
            "different activations",
        ),
        (nn.Sequential(), "no nn.Linear layer"),
        (nn.Conv1d(1, 1, 1), "expected an nn.Sequential or an nn.Linear, got Conv1d"),
    ]
    for module, message in cases:
        with pytest.raises(ValueError, match=message):
            from_torch(module)


def test_without_torch_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'tinygrad_bp\[torch\]'"):
        to_torch(MLP(2, [1], seed=0))
    with pytest.raises(ImportError, match=r"pip install 'tinygrad_bp\[torch\]'"):
        from_torch(None)


def test_interop_does_not_import_torch_at_import_time():
    import subprocess

    code = (
        "import sys, tinygrad_bp.interop, tinygrad_bp.train, tinygrad_bp.data; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
