"""tinygrad_bp.data: make_moons, load_digits, and the IDX reader on files written here."""

from __future__ import annotations

import builtins
import gzip
import math
import random
import struct
from pathlib import Path

import pytest

from tinygrad_bp.data import load_digits, load_mnist, make_moons, read_idx, write_idx

# --- make_moons --------------------------------------------------------------------


def test_make_moons_without_noise_or_shuffle_is_sklearns_geometry():
    sklearn = pytest.importorskip("sklearn.datasets")
    for n in (1, 2, 7, 100, 101, (3, 5), (0, 4)):
        X, y = make_moons(n, noise=None, shuffle=False)
        Xs, ys = sklearn.make_moons(n, noise=None, shuffle=False)
        assert y == ys.tolist()
        assert len(X) == len(Xs)
        for a, b in zip(X, Xs.tolist()):
            assert a == pytest.approx(b, abs=1e-15)


def test_make_moons_shuffled_has_the_same_points_as_sklearn():
    sklearn = pytest.importorskip("sklearn.datasets")
    X, y = make_moons(100, noise=0.0, seed=3)
    Xs, ys = sklearn.make_moons(100, noise=0.0, random_state=3)
    key = lambda p: (p[1], round(p[0][0], 12), round(p[0][1], 12))
    ours = sorted(zip(X, y), key=key)
    theirs = sorted(zip(Xs.tolist(), ys.tolist()), key=key)
    assert [t for _, t in ours] == [t for _, t in theirs]
    for (a, _), (b, _) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=1e-15)
    assert y != sorted(y)  # shuffled


def test_make_moons_shape_types_and_labels():
    X, y = make_moons(100, noise=0.1, seed=0)
    assert len(X) == len(y) == 100
    assert all(isinstance(p, list) and len(p) == 2 for p in X)
    assert all(type(c) is float for p in X for c in p)
    assert all(type(t) is int for t in y)
    assert y.count(0) == y.count(1) == 50
    assert make_moons(7, seed=0)[1].count(0) == 3  # n // 2 on the outer moon


def test_make_moons_geometry_with_noise():
    # the noise is N(0, noise^2) per coordinate around the two half circles
    X, y = make_moons(2000, noise=0.05, seed=1)
    residuals = []
    for (a, b), t in zip(X, y):
        cx, cy = (0.0, 0.0) if t == 0 else (1.0, 0.5)
        residuals.append(math.hypot(a - cx, b - cy) - 1.0)
    mean = sum(residuals) / len(residuals)
    sd = math.sqrt(sum((r - mean) ** 2 for r in residuals) / len(residuals))
    assert abs(mean) < 0.01
    assert 0.04 < sd < 0.06
    assert all(b > -0.3 for (a, b), t in zip(X, y) if t == 0)  # the outer moon is the upper one


def test_make_moons_seeded_and_private():
    random.seed(0)
    state = random.getstate()
    a = make_moons(50, noise=0.2, seed=7)
    b = make_moons(50, noise=0.2, seed=7)
    c = make_moons(50, noise=0.2, seed=8)
    assert random.getstate() == state
    assert a == b
    assert a != c
    assert make_moons(50, seed=random.Random(7)) == make_moons(50, seed=7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_samples": 0}, "n_samples must be a positive int"),
        ({"n_samples": 2.5}, "n_samples must be a positive int"),
        ({"n_samples": (1, 2, 3)}, "n_samples as a tuple"),
        ({"n_samples": (1, -2)}, r"n_samples\[1\]"),
        ({"noise": -0.1}, "noise must be"),
        ({"noise": math.nan}, "noise must be"),
    ],
)
def test_make_moons_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_moons(**kwargs)


# --- load_digits -------------------------------------------------------------------


def test_load_digits_split_and_scale():
    pytest.importorskip("sklearn")
    X_train, y_train, X_test, y_test = load_digits()
    assert len(X_train) + len(X_test) == 1797
    assert len(X_test) == round(0.2 * 1797)
    assert len(X_train) == len(y_train)
    assert len(X_test) == len(y_test)
    assert all(len(row) == 64 for row in X_train + X_test)
    pixels = [p for row in X_train for p in row]
    assert min(pixels) == 0.0
    assert max(pixels) == 1.0
    assert all(type(p) is float for p in pixels)
    assert set(y_train) == set(range(10))
    assert all(type(t) is int for t in y_train + y_test)


def test_load_digits_is_seeded_and_a_partition():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits as sk

    state = random.getstate()
    a = load_digits(seed=1)
    b = load_digits(seed=1)
    assert random.getstate() == state
    c = load_digits(seed=2)
    assert a == b
    assert a.y_test != c.y_test
    digits = sk()
    original = sorted(([p / 16 for p in row], int(t)) for row, t in zip(digits.data.tolist(), digits.target))
    ours = sorted(zip(a.X_train + a.X_test, a.y_train + a.y_test))
    assert ours == original
    small = load_digits(test_fraction=0.5, seed=0)
    assert len(small.X_test) == round(0.5 * 1797)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.2, "0.2", True])
def test_load_digits_bad_fraction(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=bad)


def test_load_digits_without_sklearn_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'tinygrad_bp\[digits\]'"):
        load_digits()


# --- IDX files ------------------------------------------------------------------------


def idx_bytes(type_code, dims, fmt, values):
    header = bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return header + struct.pack(f">{len(values)}{fmt}", *values)


IMAGES = [[[0, 255, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 128]]]  # 2 images of 2x3
LABELS = [3, 9]


def flat(x):
    return [v for row in x for v in (flat(row) if isinstance(row, list) else [row])]


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_unsigned_bytes_plain_and_gzip(tmp_path, compress):
    data = idx_bytes(0x08, (2, 2, 3), "B", flat(IMAGES))
    path = tmp_path / "images.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    assert read_idx(path) == IMAGES


@pytest.mark.parametrize(
    ("code", "fmt", "values"),
    [
        (0x08, "B", [0, 1, 200, 255, 17, 42]),
        (0x09, "b", [-128, -1, 0, 1, 127, 5]),
        (0x0B, "h", [-32768, -2, 0, 300, 32767, 7]),
        (0x0C, "i", [-(2**31), -5, 0, 70000, 2**31 - 1, 9]),
        (0x0D, "f", [0.5, -1.25, 3.0, 1e-3, -2.5, 0.0]),
        (0x0E, "d", [0.1, -1e300, math.pi, 2.5e-310, -0.0, 1.0]),
    ],
)
def test_read_idx_every_type_code(tmp_path, code, fmt, values):
    path = tmp_path / "t.idx"
    path.write_bytes(idx_bytes(code, (3, 2), fmt, values))
    expected = [list(struct.unpack(f">{len(values)}{fmt}", struct.pack(f">{len(values)}{fmt}", *values)))]
    expected = [expected[0][0:2], expected[0][2:4], expected[0][4:6]]
    assert read_idx(path) == expected
    array = read_idx(path, as_numpy=True)
    assert array.shape == (3, 2)
    assert array.tolist() == expected
    assert array.dtype.isnative


def test_read_idx_one_dimension_and_empty_shapes(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(idx_bytes(0x08, (4,), "B", [1, 2, 3, 4]))
    assert read_idx(path) == [1, 2, 3, 4]
    path.write_bytes(idx_bytes(0x08, (0, 28, 28), "B", []))
    assert read_idx(path) == []
    path.write_bytes(idx_bytes(0x08, (2, 0), "B", []))
    assert read_idx(path) == [[], []]


def test_write_idx_round_trips(tmp_path):
    for compress in (False, True):
        path = tmp_path / f"w{compress}.idx"
        write_idx(path, IMAGES, compress=compress)
        assert read_idx(path) == IMAGES
        assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    write_idx(tmp_path / "d.idx", [[0.5, -2.0]], type_code=0x0E)
    assert read_idx(tmp_path / "d.idx") == [[0.5, -2.0]]
    with pytest.raises(ValueError, match="ragged"):
        write_idx(tmp_path / "r.idx", [[1, 2], [3]])
    with pytest.raises(ValueError, match="do not fit"):
        write_idx(tmp_path / "r.idx", [256])
    with pytest.raises(ValueError, match="unsupported type code"):
        write_idx(tmp_path / "r.idx", [1], type_code=0x07)


GOOD = idx_bytes(0x08, (2, 2, 3), "B", flat(IMAGES))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"truncated: 0 bytes, too short for the magic number"),
        (b"\x00\x00\x08", "too short for the magic number"),
        (b"\x01\x00\x08\x01" + b"\x00" * 8, "bad magic number 01 00 08 01"),
        (b"\x00\x07\x08\x01" + b"\x00" * 8, "bad magic number"),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05", "unsupported type code 0x0A"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "the header of 3 dimension"),
        (
            GOOD[:-1],
            r"truncated: dimensions \[2, 2, 3\] of unsigned byte need 12 data bytes, the file has 11",
        ),
        (GOOD[:16], "truncated"),
        (GOOD + b"\x00", "trailing bytes after the 12 data bytes"),
        (GOOD + b"garbage", "trailing bytes"),
        (idx_bytes(0x0C, (3,), "i", [1, 2, 3])[:-2], "need 12 data bytes, the file has 10"),
        (b"\x00\x00\x08\x01\xff\xff\xff\xff\x00", "4,294,967,295 data bytes, more than"),
        (b"\x00\x00\x08\x02\xff\xff\xff\xff\x00\x00\x00\x00", "that many empty rows"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_refuses_corrupt_files(tmp_path, content, message, compress):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_read_idx_refuses_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    packed = gzip.compress(GOOD)
    path.write_bytes(packed[:-6])  # cut: the stream ends early
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(path)
    path.write_bytes(b"\x1f\x8b" + b"not deflate at all")
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(path)
    path.write_bytes(packed + b"junk")  # trailing garbage after the gzip member
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(path)


def test_read_idx_detects_gzip_by_magic_bytes_not_name(tmp_path):
    path = tmp_path / "images.idx"  # no .gz suffix
    path.write_bytes(gzip.compress(GOOD))
    assert read_idx(path) == IMAGES
    path = tmp_path / "images.gz"  # a .gz name on a plain file
    path.write_bytes(GOOD)
    assert read_idx(path) == IMAGES


# --- load_mnist --------------------------------------------------------------------


def write_mnist(tmp_path, images=IMAGES, labels=LABELS, compress=True):
    ipath, lpath = tmp_path / "images.gz", tmp_path / "labels.gz"
    write_idx(ipath, images, compress=compress)
    write_idx(lpath, labels, compress=compress)
    return ipath, lpath


def test_load_mnist_flattens_and_scales(tmp_path):
    X, y = load_mnist(*write_mnist(tmp_path))
    assert y == LABELS
    assert [[p / 255 for p in flat(img)] for img in IMAGES] == X
    assert X[0][1] == 1.0
    X, _ = load_mnist(*write_mnist(tmp_path, compress=False), flatten=False, scale=False)
    assert X == IMAGES
    X, _ = load_mnist(*write_mnist(tmp_path), flatten=False)
    assert X[1][1][2] == 128 / 255


def test_load_mnist_checks_counts_shapes_and_types(tmp_path):
    ipath, lpath = write_mnist(tmp_path, labels=[1, 2, 3])
    with pytest.raises(ValueError, match=r"2 images in .* but 3 labels in"):
        load_mnist(ipath, lpath)
    ipath, lpath = write_mnist(tmp_path, images=[[1, 2], [3, 4]], labels=[1, 2])
    with pytest.raises(ValueError, match=r"has 2 dimension\(s\); MNIST images \(n, rows, cols\) need 3"):
        load_mnist(ipath, lpath)
    ipath, lpath = write_mnist(tmp_path, labels=[[1], [2]])
    with pytest.raises(ValueError, match=r"MNIST labels \(n,\) need 1"):
        load_mnist(ipath, lpath)
    ipath, lpath = write_mnist(tmp_path)
    write_idx(lpath, LABELS, type_code=0x0C)
    with pytest.raises(
        ValueError, match=r"holds int \(4 bytes\) values; MNIST labels \(n,\) are unsigned bytes"
    ):
        load_mnist(ipath, lpath)
    ipath.write_bytes(GOOD + b"x")
    with pytest.raises(ValueError, match="trailing"):
        load_mnist(ipath, lpath)


def test_read_idx_reads_no_more_than_the_header_declares(tmp_path):
    """A gzip bomb, /dev/zero or a huge file is never read whole (issue 12)."""
    bomb = tmp_path / "bomb.idx.gz"
    header = b"\x00\x00\x08\x01" + (10).to_bytes(4, "big")
    bomb.write_bytes(gzip.compress(header + bytes(10) + bytes(50_000_000)))  # 50 MB of zeros, 50 KB packed
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(bomb)
    zero = tmp_path / "zero.idx"
    if Path("/dev/zero").exists():
        zero.symlink_to("/dev/zero")
        with pytest.raises(ValueError, match=r"magic number|type code"):
            read_idx(zero)
