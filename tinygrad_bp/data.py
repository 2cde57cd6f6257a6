"""Small data sets: two moons, scikit-learn's handwritten digits, and MNIST's IDX files.

Everything here returns plain Python lists (rows of floats, labels as ints),
so the scalar engine can consume them directly and no NumPy is needed:

- :func:`make_moons` draws the two interleaving half circles of
  ``sklearn.datasets.make_moons`` with its own ``random.Random`` (no
  scikit-learn, no global random state touched).
- :func:`load_digits` wraps scikit-learn's 8x8 digits (1,797 images, 10
  classes), scaled to [0, 1] and split into train and test sets
  (``pip install 'tinygrad_bp[digits]'``).
- :func:`read_idx` and :func:`load_mnist` read the IDX files MNIST is
  distributed in, plain or gzip-compressed, and refuse a truncated or corrupt
  file with a ValueError that says what is wrong.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import struct
import zlib
from typing import Any, NamedTuple

__all__ = [
    "IDX_TYPES",
    "MAX_IDX_BYTES",
    "Split",
    "load_digits",
    "load_mnist",
    "make_moons",
    "read_idx",
    "write_idx",
]


def _rng(seed: int | random.Random | None) -> random.Random:
    """A private generator: the global ``random`` state is never touched."""
    return seed if isinstance(seed, random.Random) else random.Random(seed)


def _linspace(start: float, stop: float, num: int) -> list[float]:
    """``num`` evenly spaced numbers from ``start`` to ``stop`` inclusive, as ``numpy.linspace``.

    x_i = start + i * (stop - start) / (num - 1), the last one exactly ``stop``.
    """
    if num == 1:
        return [start]
    step = (stop - start) / (num - 1)
    xs = [i * step + start for i in range(num)]
    if num > 0:
        xs[-1] = stop
    return xs


def make_moons(
    n_samples: int | tuple[int, int] = 100,
    noise: float | None = 0.1,
    seed: int | random.Random | None = None,
    *,
    shuffle: bool = True,
) -> tuple[list[list[float]], list[int]]:
    """Two interleaving half circles, the geometry of ``sklearn.datasets.make_moons``.

    The outer moon (label 0) is (cos t, sin t) and the inner moon (label 1) is
    (1 - cos t, 1/2 - sin t), for t evenly spaced over [0, pi]: n // 2 points
    on the outer moon, the rest on the inner one (or ``(n_out, n_in)`` given
    as a tuple). Then, as scikit-learn does, the samples are shuffled (unless
    ``shuffle=False``) and Gaussian noise of standard deviation ``noise`` is
    added to every coordinate (none for ``noise=None`` or 0).

    The random numbers come from ``random.Random(seed)``, never from the
    global ``random`` module, so the same seed gives the same data set. They
    are not scikit-learn's random numbers: with noise, the points differ from
    scikit-learn's for the same seed, while the construction is the same.

    Returns ``(X, y)``: X a list of ``[x, y]`` float pairs, y a list of 0/1 ints.
    """
    if isinstance(n_samples, tuple):
        if len(n_samples) != 2:
            raise ValueError(f"make_moons: n_samples as a tuple must be (n_out, n_in), got {n_samples!r}")
        n_out, n_in = n_samples
        for what, n in (("n_samples[0]", n_out), ("n_samples[1]", n_in)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"make_moons: {what} must be an int >= 0, got {n!r}")
    else:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"make_moons: n_samples must be a positive int, got {n_samples!r}")
        n_out = n_samples // 2
        n_in = n_samples - n_out
    if noise is not None and (
        isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < math.inf
    ):
        raise ValueError(f"make_moons: noise must be a finite number >= 0 or None, got {noise!r}")
    rng = _rng(seed)
    t_out = _linspace(0.0, math.pi, n_out)
    t_in = _linspace(0.0, math.pi, n_in)
    points = [[math.cos(t), math.sin(t)] for t in t_out]
    points += [[1.0 - math.cos(t), 1.0 - math.sin(t) - 0.5] for t in t_in]
    y = [0] * n_out + [1] * n_in
    if shuffle:
        order = list(range(len(points)))
        rng.shuffle(order)
        points = [points[i] for i in order]
        y = [y[i] for i in order]
    if noise:
        points = [[a + rng.gauss(0.0, noise), b + rng.gauss(0.0, noise)] for a, b in points]
    return points, y


class Split(NamedTuple):
    """A train/test split: unpack as ``X_train, y_train, X_test, y_test = split``."""

    X_train: list[list[float]]
    y_train: list[int]
    X_test: list[list[float]]
    y_test: list[int]


_DIGITS_HINT = "load_digits needs scikit-learn: pip install 'tinygrad_bp[digits]'"


def load_digits(test_fraction: float = 0.2, seed: int | random.Random | None = 0) -> Split:
    """scikit-learn's handwritten digits (8x8 images, 1,797 samples, 10 classes), split in two.

    Each image becomes a row of 64 floats in [0, 1] (pixel / 16; the pixels
    are 0..16), each label an int 0..9. The samples are shuffled with
    ``random.Random(seed)`` and the last ``round(test_fraction * n)`` of them
    form the test set (at least one sample in each part).

    Needs scikit-learn (it ships the data; nothing is downloaded): without it
    this raises ImportError naming ``pip install 'tinygrad_bp[digits]'``.
    """
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not (0.0 < test_fraction < 1.0)
    ):
        raise ValueError(f"load_digits: test_fraction must be a number in (0, 1), got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as error:
        raise ImportError(_DIGITS_HINT) from error
    digits = _sk_load_digits()
    rows = [[float(p) / 16.0 for p in row] for row in digits.data.tolist()]
    y = [int(t) for t in digits.target.tolist()]
    order = list(range(len(rows)))
    _rng(seed).shuffle(order)
    n_test = min(max(round(test_fraction * len(rows)), 1), len(rows) - 1)
    train, test = order[: len(rows) - n_test], order[len(rows) - n_test :]
    return Split(
        [rows[i] for i in train], [y[i] for i in train], [rows[i] for i in test], [y[i] for i in test]
    )


# --- MNIST's IDX format ------------------------------------------------------------
#
# magic number: 0x00 0x00 <type code> <number of dimensions>, then one big-endian
# unsigned 32-bit size per dimension, then the data in row-major order, big-endian.

IDX_TYPES: dict[int, tuple[str, str, str]] = {
    # type code: (struct format letter, NumPy dtype, name)
    0x08: ("B", "u1", "unsigned byte"),
    0x09: ("b", "i1", "signed byte"),
    0x0B: ("h", "i2", "short (2 bytes)"),
    0x0C: ("i", "i4", "int (4 bytes)"),
    0x0D: ("f", "f4", "float (4 bytes)"),
    0x0E: ("d", "f8", "double (8 bytes)"),
}

_GZIP_MAGIC = b"\x1f\x8b"


# The most data bytes an IDX file may declare (MNIST's largest file holds 47 MB): a header that asks
# for more is refused before anything is read, so a small or endless file cannot take all memory.
# 128 MiB: as nested Python lists (8 bytes a reference), that is already about 1 GiB of memory.
MAX_IDX_BYTES = 1 << 27


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The IDX document's bytes, decompressed when it starts with gzip's magic bytes 1f 8b.

    Only as many bytes as the header declares are read (and one more, to notice
    leftovers), so a gzip bomb, ``/dev/zero`` or a huge file is never read whole.
    """
    name = os.fspath(path)
    with open(path, "rb") as f:
        if f.peek(2)[:2] != _GZIP_MAGIC:
            return _read_declared(f, name)
        try:
            with gzip.GzipFile(fileobj=f) as unzipped:
                return _read_declared(unzipped, name)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"read_idx: {name!r} is a corrupt gzip file ({error})") from None


def _read_declared(stream: Any, name: str) -> bytes:
    """The header and then at most the data bytes it declares plus one, from ``stream``."""
    head = stream.read(4)
    if len(head) < 4 or head[0] or head[1] or head[2] not in IDX_TYPES or head[3] == 0:
        return head  # _parse_idx says what is wrong with it
    dims_bytes = stream.read(4 * head[3])
    if len(dims_bytes) < 4 * head[3]:
        return head + dims_bytes
    dims = struct.unpack(f">{head[3]}I", dims_bytes)
    declared = math.prod(dims) * struct.calcsize(">" + IDX_TYPES[head[2]][0])
    if declared > MAX_IDX_BYTES:
        raise ValueError(
            f"read_idx: {name!r} declares dimensions {list(dims)}: {declared:,} data bytes, more than "
            f"the {MAX_IDX_BYTES:,} this reader accepts"
        )
    if declared == 0 and math.prod(dims[:-1]) > MAX_IDX_BYTES // 64:
        raise ValueError(f"read_idx: {name!r} declares dimensions {list(dims)}: that many empty rows")
    return head + dims_bytes + stream.read(declared + 1)


def _parse_idx(raw: bytes, name: str) -> tuple[int, tuple[int, ...], bytes]:
    """Validate an IDX document; return (type code, dimensions, data bytes)."""
    if len(raw) < 4:
        raise ValueError(f"read_idx: {name} is truncated: {len(raw)} bytes, too short for the magic number")
    zero1, zero2, code, ndims = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0:
        raise ValueError(
            f"read_idx: {name} has a bad magic number {raw[:4].hex(' ')}: "
            "an IDX file starts with the bytes 00 00"
        )
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise ValueError(f"read_idx: {name} has the unsupported type code 0x{code:02X} (known: {known})")
    if ndims == 0:
        raise ValueError(f"read_idx: {name} declares 0 dimensions")
    header = 4 + 4 * ndims
    if len(raw) < header:
        raise ValueError(
            f"read_idx: {name} is truncated: the header of {ndims} dimension(s) needs {header} bytes, "
            f"the file has {len(raw)}"
        )
    dims = struct.unpack(f">{ndims}I", raw[4:header])
    itemsize = struct.calcsize(">" + IDX_TYPES[code][0])
    expected = math.prod(dims) * itemsize
    found = len(raw) - header
    if found < expected:
        raise ValueError(
            f"read_idx: {name} is truncated: dimensions {list(dims)} of {IDX_TYPES[code][2]} need "
            f"{expected} data bytes, the file has {found}"
        )
    if found > expected:
        raise ValueError(
            f"read_idx: {name} has trailing bytes after the "
            f"{expected} data bytes that dimensions {list(dims)} describe"
        )
    return code, dims, raw[header:]


def _nest(flat: list[Any], dims: tuple[int, ...]) -> list[Any]:
    """A flat row-major list as nested lists of shape ``dims``."""
    if len(dims) == 1:
        return flat
    inner = math.prod(dims[1:])
    return [_nest(flat[i * inner : (i + 1) * inner], dims[1:]) for i in range(dims[0])]


def read_idx(path: str | os.PathLike[str], *, as_numpy: bool = False) -> Any:
    """Read an IDX file (MNIST's format), plain or gzip-compressed.

    Layout: the magic number ``00 00 <type code> <number of dimensions>``, one
    big-endian unsigned 32-bit size per dimension, then the data, row-major
    and big-endian. Type codes: 0x08 unsigned byte, 0x09 signed byte, 0x0B
    short, 0x0C int, 0x0D float, 0x0E double. A gzip file is recognised by
    its first two bytes (1f 8b), whatever its name.

    Returns nested Python lists of shape ``dims`` (ints, or floats for the
    float and double types), so no NumPy is needed; with ``as_numpy=True`` a
    NumPy array of that shape and a native-endian dtype instead.

    A bad magic number, an unsupported type code, a file shorter than its
    header or than its dimensions require, or bytes left over after the data
    raise ValueError saying which; a corrupt gzip stream too.
    """
    code, dims, data = _parse_idx(_read_bytes(path), repr(os.fspath(path)))
    return _decode(code, dims, data, as_numpy=as_numpy)


def _decode(code: int, dims: tuple[int, ...], data: bytes, *, as_numpy: bool) -> Any:
    """The data bytes of an IDX file as nested lists (or a NumPy array) of shape ``dims``."""
    typecode, fmt, _ = IDX_TYPES[code]
    if as_numpy:
        import numpy as np

        return np.frombuffer(data, dtype=np.dtype(">" + fmt)).astype(fmt).reshape(dims)
    if code == 0x08:
        flat = list(data)
    else:  # '>' gives the standard sizes: b 1, h 2, i 4, f 4, d 8 bytes
        count = len(data) // struct.calcsize(">" + typecode)
        flat = list(struct.unpack(f">{count}{typecode}", data))
    return _nest(flat, dims)


def _shape(data: Any) -> list[int]:
    """The dimensions of nested lists, read along the first entries."""
    dims: list[int] = []
    level: Any = data
    while isinstance(level, (list, tuple)):
        dims.append(len(level))
        if not level:
            break
        level = level[0]
    return dims


def _flatten(x: Any, dims: list[int], depth: int, out: list[Any]) -> None:
    """Append the entries of nested lists of shape ``dims[depth:]`` to ``out``, refusing ragged rows."""
    if depth == len(dims):
        out.append(x)
        return
    if not isinstance(x, (list, tuple)) or len(x) != dims[depth]:
        raise ValueError(f"write_idx: ragged data: expected {dims[depth]} items at depth {depth}")
    for item in x:
        _flatten(item, dims, depth + 1, out)


def write_idx(
    path: str | os.PathLike[str], data: Any, type_code: int = 0x08, *, compress: bool = False
) -> None:
    """Write nested lists of shape (d_1, ..., d_n) as an IDX file (gzip-compressed with ``compress``).

    The inverse of :func:`read_idx`: handy for making small MNIST-like files.
    Every row at one depth must have the same length.
    """
    if type_code not in IDX_TYPES:
        raise ValueError(f"write_idx: unsupported type code {type_code!r}")
    dims = _shape(data)
    if not dims or len(dims) > 255:
        raise ValueError("write_idx: data must be a (nested) list with 1 to 255 dimensions")
    flat: list[Any] = []
    _flatten(data, dims, 0, flat)
    typecode = IDX_TYPES[type_code][0]
    payload = bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    try:
        payload += struct.pack(f">{len(flat)}{typecode}", *flat)
    except struct.error as error:
        raise ValueError(f"write_idx: the data do not fit type code 0x{type_code:02X} ({error})") from None
    if compress:
        payload = gzip.compress(payload)
    with open(path, "wb") as f:
        f.write(payload)


def load_mnist(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    flatten: bool = True,
    scale: bool = True,
) -> tuple[list[Any], list[int]]:
    """MNIST images and labels from their IDX files (plain or gzip), e.g. ``train-images-idx3-ubyte.gz``.

    The images file must hold unsigned bytes of shape (n, rows, cols), the
    labels file unsigned bytes of shape (n,), with the same n; otherwise
    ValueError says which. Returns ``(X, y)``: with ``flatten`` (default) each
    image is one row of rows * cols numbers, with ``scale`` (default) divided
    by 255 into [0, 1] floats; y a list of ints.
    """
    images = _read_mnist_part(images_path, 3, "images (n, rows, cols)")
    labels = _read_mnist_part(labels_path, 1, "labels (n,)")
    if len(images) != len(labels):
        raise ValueError(
            f"load_mnist: {len(images)} images in {os.fspath(images_path)!r} but "
            f"{len(labels)} labels in {os.fspath(labels_path)!r}"
        )
    samples: list[Any] = images
    if flatten:
        samples = [[p for row in image for p in row] for image in images]
    if scale:
        samples = _scaled(samples)
    return samples, labels


def _scaled(x: Any) -> Any:
    """Every int in nested lists divided by 255."""
    if isinstance(x, list):
        return [_scaled(item) for item in x]
    return x / 255.0


def _read_mnist_part(path: str | os.PathLike[str], ndims: int, what: str) -> list[Any]:
    """An IDX file that must hold unsigned bytes with ``ndims`` dimensions."""
    name = repr(os.fspath(path))
    code, dims, data = _parse_idx(_read_bytes(path), name)
    if code != 0x08:
        raise ValueError(
            f"load_mnist: {name} holds {IDX_TYPES[code][2]} values; MNIST {what} are unsigned bytes (0x08)"
        )
    if len(dims) != ndims:
        raise ValueError(f"load_mnist: {name} has {len(dims)} dimension(s); MNIST {what} need {ndims}")
    return _decode(code, dims, data, as_numpy=False)
