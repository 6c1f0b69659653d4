"""Reading .npz files that come from elsewhere (Feldman & Zhang's releases) without running code.

``np.load(allow_pickle=False)`` reads numeric and string arrays; object arrays (the released
``imagenet_index.npz`` stores its file names so, and public readers load it with pickles allowed)
are read by an unpickler that admits numpy's array reconstruction and nothing else, so the only
objects it can make are arrays of str/bytes.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from memadv.errors import SchemaError, UnsafeInputError


class _StringArrayUnpickler(pickle.Unpickler):
    """Admits only what ``np.save`` writes for an object array: numpy's array reconstruction and
    dtype; the elements themselves must be plain str/bytes (pickle opcodes, no class lookup). Any
    other global (os.system, a class with __reduce__, ...) is refused before it is called."""

    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                         ("numpy", "ndarray"), ("numpy", "dtype")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise UnsafeInputError(f"refused to unpickle {module}.{name} (only arrays of strings are read)")
        return super().find_class(module, name)


def _read_object_member(z: zipfile.ZipFile, member: str, where: str) -> np.ndarray:
    """An object array of a .npz member, read without unpickling anything but strings (the released
    ``imagenet_index.npz`` stores its file names so); returned as a numpy unicode array."""
    with z.open(member) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if not dtype.hasobject:
            raise SchemaError(f"{where}: {member} cannot be read")
        try:
            arr = _StringArrayUnpickler(io.BytesIO(f.read())).load()
        except UnsafeInputError as e:
            raise UnsafeInputError(f"{where}: {member}: {e}") from None
        except Exception as e:  # noqa: BLE001 - a truncated or malformed pickle
            raise SchemaError(f"{where}: {member} is not a readable object array ({type(e).__name__})") from None
    if not isinstance(arr, np.ndarray) or arr.shape != shape or \
            not all(isinstance(x, (str, bytes)) for x in arr.ravel().tolist()):
        raise UnsafeInputError(f"{where}: {member} holds objects other than strings; refused")
    return np.array([x.decode("utf-8") if isinstance(x, bytes) else x for x in arr.ravel().tolist()],
                    dtype=str).reshape(shape)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a .npz file. Numeric and string arrays are read with ``allow_pickle=False``; an
    object array is read only if it holds nothing but strings (``_StringArrayUnpickler``). Raises
    SchemaError for a missing or unreadable file, UnsafeInputError for an object array of anything else."""
    p = Path(path)
    if not p.is_file():
        raise SchemaError(f"{str(p)!r} does not exist")
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(p, allow_pickle=False) as z, zipfile.ZipFile(p) as raw:
            for k in z.files:
                try:
                    out[k] = z[k]
                except ValueError as e:
                    if "allow_pickle" not in str(e):
                        raise
                    out[k] = _read_object_member(raw, f"{k}.npy", repr(str(p)))
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        # numpy reads a file that is no zip archive as a pickle and suggests allow_pickle: never ours to say
        why = "not a zip archive of .npy files" if "pickle" in str(e) else " ".join(str(e).split())
        raise SchemaError(f"{str(p)!r} is not a readable .npz file: {why}") from None
    return out
