"""Regression tests for the findings of the outside attack (issue 12), one or more per finding.

Each test names the finding's number. Bad input gets a clear error naming the operation, and a
failed call changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest

import tinygrad_bp as tg
from tinygrad_bp import Value, linear
from tinygrad_bp.errors import NonDifferentiableError, OperationOverflowError, TapeMismatchError
from tinygrad_bp.explain import explain, printable
from tinygrad_bp.stepper import Stepper

HUGE = 10**400


# --- 4: a tape's aux outputs are checked by re-tracing too --------------------------------------


def test_4_aux_outputs_built_from_hidden_state_are_refused_not_replayed_stale():
    np = pytest.importorskip("numpy")
    from tinygrad_bp.tape import trace

    state = {"k": 1}

    def fn(x):
        y = x * x
        return y, [y * 2.0 if state["k"] == 1 else y + 100.0]

    tape = trace(fn, 1.0, check="all")
    assert tape.replay(np.array([1.0, 2.0])).aux.ravel().tolist() == [2.0, 8.0]
    state["k"] = 2
    with pytest.raises(TapeMismatchError, match="different graph"):
        tape.replay(np.array([1.0, 2.0]))


# --- 13: overlong labels are shortened for drawing; the Value keeps all of it -------------------


@pytest.mark.parametrize("label", ['"' * 2800, "x" * 100_000])
def test_13_a_huge_label_draws(label, tmp_path):
    from tinygrad_bp import viz

    v = Value(1.0, label=label)
    y = v * 2.0
    svg = viz.to_svg(y)
    assert "characters)" in svg
    assert v.label == label
    Stepper(y).to_html(tmp_path / "steps.html")
    assert (tmp_path / "steps.html").stat().st_size < 1_000_000


# --- 14: a failing optimizer step leaves everything as it was ------------------------------------


def test_14_sgd_step_that_overflows_changes_nothing():
    a, b = Value(1.0), Value(1.0)
    opt = tg.SGD([a, b], lr=1e10, momentum=0.9)
    a.grad, b.grad = 1.0, 1e300
    with pytest.raises(OperationOverflowError, match="params\\[1\\]"):
        opt.step()
    assert (a.data, b.data) == (1.0, 1.0)
    assert opt.state_dict()["momentum_buffer"] == [None, None]


def test_14_a_learning_rate_set_to_nan_is_refused_before_anything_is_written():
    a = Value(1.0)
    opt = tg.SGD([a], lr=0.1, momentum=0.9)
    a.grad = 1.0
    opt.lr = math.nan
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    assert a.data == 1.0
    assert opt.state_dict()["momentum_buffer"] == [None]


def test_14_adam_refuses_a_negative_second_moment_and_keeps_its_state():
    p = Value(1.0)
    opt = tg.Adam([p])
    p.grad = 1.0
    opt.step()
    good = opt.state_dict()
    bad = {**good, "exp_avg_sq": [-1.0]}
    with pytest.raises(ValueError, match="exp_avg_sq"):
        opt.load_state_dict(bad)
    assert opt.state_dict() == good


def test_14_17_adam_step_whose_moment_overflows_changes_nothing_and_its_state_still_loads():
    p = Value(1.0)
    opt = tg.Adam([p])
    before = opt.state_dict()
    p.grad = 1e200
    with pytest.raises(OperationOverflowError, match="second moment"):
        opt.step()
    assert p.data == 1.0
    assert opt.state_dict() == before
    opt.load_state_dict(opt.state_dict())


# --- 15: readers and fit -----------------------------------------------------------------------


def test_15_deeply_nested_json_is_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"deep\.json"):
        tg.MLP.load(path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_15_a_symlink_to_a_device_is_refused_without_reading_it(tmp_path):
    link = tmp_path / "model.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="not a regular file"):
        tg.MLP.load(link)


def test_15_fit_takes_numpy_arrays():
    np = pytest.importorskip("numpy")
    from tinygrad_bp.train import fit

    for engine in ("auto", "scalar"):
        model = tg.MLP(2, [1], seed=0)
        history = fit(model, np.zeros((4, 2)), np.zeros(4), epochs=1, progress=False, engine=engine)
        assert len(history["loss"]) == 1


# --- 16: numbers too large for a float ---------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: Value(HUGE), "Value"),
        (lambda: Value(1.0) + HUGE, "\\+"),
        (lambda: HUGE * Value(1.0), "\\*"),
        (lambda: Value(1.0) ** HUGE, "\\*\\*"),
        (lambda: Value(10**5000), "Value"),
    ],
)
def test_16_a_huge_int_is_the_librarys_overflow_error_naming_the_operation(make, name):
    with pytest.raises(OperationOverflowError, match=f"^{name}: an int of about \\d+ digits is too large"):
        make()


def test_16_assigning_a_huge_int_to_data_changes_nothing():
    v = Value(1.0)
    with pytest.raises(OperationOverflowError, match=r"^data: "):
        v.data = HUGE
    assert v.data == 1.0


def test_16_huge_ints_in_settings_state_dicts_and_files_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="lr"):
        tg.SGD([Value(1.0)], lr=HUGE)
    model = tg.MLP(2, [1], seed=0)
    state = model.state_dict()
    key = next(iter(state))
    with pytest.raises(ValueError, match=key):
        model.load_state_dict({**state, key: HUGE})
    path = tmp_path / "m.json"
    model.save(path)
    document = json.loads(path.read_text())
    document["state"]["layer1.bias"] = ["HUGE"]
    path.write_text(json.dumps(document).replace('"HUGE"', "1" + "0" * 5000))
    with pytest.raises(ValueError, match=r"m\.json"):
        tg.MLP.load(path)


# --- 17: a derivative too large for a float is an overflow, not "undefined" ---------------------


@pytest.mark.parametrize(("make", "at"), [(lambda x: x.log(), 5e-324), (lambda x: 1.0 / x, 1e-200)])
def test_17_a_finite_derivative_beyond_float_range_raises_overflow(make, at):
    x = Value(at)
    y = make(x)
    with pytest.raises(OperationOverflowError, match="too large for a float"):
        y.backward()
    assert x.grad == 0.0


def test_17_an_undefined_derivative_is_still_non_differentiable():
    x = Value(0.0)
    with pytest.raises(NonDifferentiableError):
        x.sqrt().backward()


def test_17_linear_whose_products_overflow_says_so():
    with pytest.raises(OperationOverflowError, match="linear: an intermediate product or sum"):
        linear([1e200, 1e200], [1e200, -1e200])


# --- 19: comparisons -----------------------------------------------------------------------------


def test_19_comparisons_with_huge_ints_are_exact_and_with_other_types_are_type_errors():
    assert Value(1.0) < HUGE
    assert not Value(1.0) > HUGE
    assert Value(1.0) >= -HUGE
    with pytest.raises(TypeError, match="'<' not supported between instances of 'Value' and 'str'"):
        _ = Value(1.0) < "x"


# --- 20: console text escapes control characters of labels --------------------------------------


def test_20_explain_and_stepper_text_escape_newlines_and_terminal_codes():
    a = Value(1.0, label="a\x1b[31mred\nline")
    y = a * 2.0
    for text in (str(explain(y, a)), str(Stepper(y))):
        assert "\x1b" not in text
        assert "a\\x1b[31mred\\nline" in text
    assert printable("plain text") == "plain text"
    assert printable("tab\there") == "tab\\there"


# --- properties that go on attacking the readers --------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402 - the property tests below
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(key_values=st.dictionaries(st.sampled_from(["layer1.weight", "layer1.bias", "x", 1]), _JSON, max_size=3))
def test_load_state_dict_refuses_anything_else_with_a_value_error_and_changes_nothing(key_values):
    model = tg.MLP(2, [2], seed=0)
    before = model.state_dict()
    state = {**before, **key_values}
    try:
        model.load_state_dict(state)
    except ValueError:
        assert model.state_dict() == before
    else:
        assert model.state_dict() == {k: state[k] for k in before}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64))
def test_read_idx_of_any_bytes_is_data_or_a_value_error_and_allocates_what_the_file_holds(raw, tmp_path):
    from tinygrad_bp.data import read_idx

    path = tmp_path / "x.idx"
    path.write_bytes(raw)
    try:
        data = read_idx(path)
    except ValueError:
        return
    assert len(repr(data)) < 100 * (len(raw) + 10)  # no more entries than the bytes could justify


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_JSON)
def test_mlp_load_of_any_json_is_a_model_or_a_value_error(document, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(document))
    with contextlib.suppress(ValueError):  # anything else (TypeError, RecursionError, ...) fails the test
        tg.MLP.load(path)


def test_10_a_gzip_bomb_is_refused_from_its_header_before_it_is_decompressed(tmp_path):
    import gzip
    import struct

    from tinygrad_bp.data import MAX_IDX_BYTES, read_idx

    path = tmp_path / "bomb.idx.gz"
    declared = 800_000_000
    assert declared > MAX_IDX_BYTES
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", declared))
        f.write(b"\0" * 1_000_000)  # what follows is never read
    with pytest.raises(ValueError, match="more than the"):
        read_idx(path)
