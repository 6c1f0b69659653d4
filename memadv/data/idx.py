"""Reader of IDX files, the format of MNIST and Fashion-MNIST (gzipped or not).

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST DATABASE";
the same in Fashion-MNIST's README): a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then
``ndim`` big-endian uint32 dimension sizes, then the values in row-major (C) order. MNIST and
Fashion-MNIST use type ``0x08`` (unsigned byte): labels are ``idx1`` (n,), images ``idx3``
(n, rows, cols). Only unsigned-byte files are accepted: no other type occurs in these data sets,
and accepting one would hand a non-image array to code that expects uint8 pixels.

A file is gzipped when it starts with the gzip magic bytes ``1f 8b`` (not judged by its name, so a
renamed or unpacked copy reads the same).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from memadv.errors import IdxFileError

UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise IdxFileError(f"missing file {str(path)!r}")
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:  # truncated download / corrupt stream
        raise IdxFileError(f"{str(path)!r} is a damaged gzip file ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """The array stored in the IDX file ``path``: uint8 with ``ndim`` dimensions, e.g. (n,) for a
    labels file (``ndim=1``) or (n, rows, cols) for an images file (``ndim=3``).

    Raises :class:`memadv.errors.IdxFileError`, naming the file, when it is missing, is a damaged
    gzip stream, has a wrong magic number (not IDX, another element type, or another number of
    dimensions than ``ndim``), declares items without values (0 x 0 images), or holds fewer or more
    bytes than its header declares.
    """
    path = Path(path)
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxFileError(f"{str(path)!r} is not an IDX file (magic number {data[:4].hex() or 'missing'}, "
                           f"expected 0000{UBYTE:02x}{ndim:02x})")
    if data[2] != UBYTE or data[3] != ndim:
        raise IdxFileError(f"{str(path)!r}: wrong IDX magic number {data[:4].hex()}: expected 0000{UBYTE:02x}{ndim:02x} "
                           f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})")
    if len(data) < header:
        raise IdxFileError(f"{str(path)!r} is truncated: {len(data)} bytes, shorter than its {header}-byte header")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if 0 in shape[1:]:  # n items of no pixels would train and score on nothing
        raise IdxFileError(f"{str(path)!r}: header declares items of {' x '.join(map(str, shape[1:]))} values; "
                           f"each item needs at least one (an image at least 1 x 1 pixel)")
    expected = int(np.prod(shape, dtype=np.int64))
    body = len(data) - header
    if body != expected:
        what = "truncated" if body < expected else "longer than its header says"
        raise IdxFileError(f"{str(path)!r} is {what}: header {shape} needs {expected} data bytes, found {body}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array (header + data): what :func:`read_idx` reads back.
    Used by tests to write small data sets; raises ``TypeError`` for a non-uint8 array."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"IDX files here hold uint8 values, got {array.dtype}")
    head = bytes([0, 0, UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return head + array.tobytes()
