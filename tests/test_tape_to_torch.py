"""Tape.to_torch: any recorded graph as a torch.nn.Module, with the tape's values and gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tape_cases import batch_case

import tinygrad_bp as tg
from tinygrad_bp.losses import cross_entropy, half_sse, mse_loss
from tinygrad_bp.tape import trace
from tinygrad_bp.testing import expressions

REL = 1e-12


def close(a, b, rel=REL):
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rel, atol=1e-14)


@pytest.mark.parametrize(
    ("activation", "fused"), [("tanh", True), ("relu", True), ("sigmoid", False), ("linear", True)]
)
def test_an_mlp_tape_in_torch_gives_the_tapes_outputs_and_gradients(torch, activation, fused):
    model = tg.MLP(3, [4, 2], activation=activation, seed=1, fused=fused)
    tape = trace(lambda x, t: mse_loss(model(x), t), [0.0] * 3, [0.0, 0.0], params=model.parameters())
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
    replay = tape.replay(X, Y, inputs=True)
    module = tape.to_torch()
    assert isinstance(module, torch.nn.Module)
    assert [p.shape for p in module.parameters()] == [(len(tape.params),)]
    x = torch.tensor(X, requires_grad=True)
    out = module(x, torch.tensor(Y))
    assert close(out.detach().numpy(), replay.outputs)
    out.mean().backward()  # the tape's loss is the batch mean of its per-sample outputs
    assert close(module.params.grad.numpy(), replay.grads.params)
    assert close(x.grad.numpy(), replay.grads.inputs[0])


def _logits(model, X):
    return np.array([[v.data for v in model(x)] for x in X.tolist()])


def test_cross_entropy_in_torch_is_torchs_cross_entropy(torch):
    model = tg.MLP(3, [4, 3], activation="tanh", seed=2)
    tape = trace(lambda x, t: cross_entropy(model(x), t), [0.0] * 3, [1.0, 0.0, 0.0], params=model.parameters())
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 3))
    T = rng.dirichlet(np.ones(3), size=8)  # class probabilities, which torch's cross_entropy also takes
    T[:3] = np.eye(3)  # and one-hot rows
    replay = tape.replay(X, T)
    module = tape.to_torch()
    out = module(torch.tensor(X), torch.tensor(T))
    assert close(out.detach().numpy(), replay.outputs)
    out.mean().backward()
    assert close(module.params.grad.numpy(), replay.grads.params)
    x, t = torch.tensor(X), torch.tensor(T, requires_grad=True)
    module(x, t).sum().backward()  # d/dt_i = -log softmax(z)_i, also where t_i = 0
    assert close(t.grad.numpy(), -torch.log_softmax(torch.tensor(_logits(model, X)), dim=1).numpy())
    # the same numbers as torch's own loss on the model's logits
    z = _logits(model, X)
    expected = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(T), reduction="none")
    assert close(replay.outputs, expected.numpy())


def test_one_sample_of_the_articles_network(torch):
    model = tg.MLP(2, [2, 2], activation="sigmoid", output_activation="sigmoid", seed=0)
    tape = trace(lambda x, t: half_sse(model(x), t), [0.05, 0.10], [0.01, 0.99], params=model.parameters())
    module = tape.to_torch()
    one = module(torch.tensor([0.05, 0.10]), torch.tensor([0.01, 0.99]))
    assert one.shape == ()
    assert close(one.item(), tape.replay(np.array([0.05, 0.10]), np.array([0.01, 0.99])).outputs[0])


@settings(max_examples=60, deadline=None)
@given(expressions(max_leaves=3, max_ops=8), st.integers(0, 2**32 - 1), st.integers(0, 2))
def test_random_graphs_in_torch_match_the_tape(torch, expr, seed, n_params):
    fn, params, X = batch_case(expr, seed, n_params)
    tape = trace(fn, X[0], params=params, check="none")
    replay = tape.replay(X, inputs=True)
    module = tape.to_torch()
    x = torch.tensor(X, requires_grad=True)
    out = module(x)
    assert close(out.detach().numpy(), replay.outputs)
    out.mean().backward()
    if params:
        assert close(module.params.grad.numpy(), replay.grads.params)
    assert close(x.grad.numpy(), replay.grads.inputs[0])


def test_aux_outputs_come_back_as_a_second_tensor(torch):
    model = tg.MLP(2, [3, 2], seed=0)

    def fn(x, t):
        out = model(x)
        return mse_loss(out, t), out

    tape = trace(fn, [0.0, 0.0], [0.0, 0.0], params=model.parameters())
    X, Y = np.ones((4, 2)), np.zeros((4, 2))
    loss, aux = tape.to_torch()(torch.tensor(X), torch.tensor(Y))
    replay = tape.replay(X, Y)
    assert close(loss.detach().numpy(), replay.outputs)
    assert close(aux.detach().numpy(), replay.aux)


def test_the_module_trains_with_torch_optim_and_moves_with_to(torch):
    model = tg.MLP(2, [4, 1], activation="tanh", seed=0)
    tape = trace(lambda x, t: mse_loss(model(x), t), [0.0, 0.0], 0.0, params=model.parameters())
    module = tape.to_torch().to("cpu")
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    X = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    Y = torch.tensor([1.0, -1.0])
    first = module(X, Y).mean().item()
    for _ in range(50):
        opt.zero_grad()
        module(X, Y).mean().backward()
        opt.step()
    assert module(X, Y).mean().item() < first / 10
    assert module.to(torch.float32)(X.float(), Y.float()).dtype == torch.float32


@pytest.mark.usefixtures("torch")
def test_a_custom_operation_is_refused_by_name():
    cube = tg.custom_op("cube_for_to_torch", lambda x: x**3, lambda x: 3 * x**2)
    tape = trace(lambda x: cube(x), 2.0)
    with pytest.raises(NotImplementedError, match="cube_for_to_torch"):
        tape.to_torch()
