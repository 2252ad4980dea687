"""Read a legacy-format (pre-1.6, non-zip) PyTorch ``state_dict`` file without PyTorch.

The legacy format written by ``torch.save(..., _use_new_zipfile_serialization=False)`` is a
sequence of pickles followed by raw storage bytes:

1. the magic number, 2. the protocol version (1001), 3. system info (endianness, sizes),
4. the object itself, whose tensors refer to storages through pickle *persistent ids*,
5. the list of storage keys, then for every key an int64 element count and the raw bytes.

We replace the two PyTorch callables the pickle names (``torch._utils._rebuild_tensor_v2``
and the ``torch.*Storage`` classes) by small NumPy stand-ins, so the weights load with
nothing but the standard library and NumPy. PyTorch itself is several GB and not needed.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from core.errors import UsageError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(UsageError, ValueError):
    """The file is not a legacy PyTorch checkpoint this reader understands."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage whose bytes are filled in after the object pickle has been read."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.array: np.ndarray | None = None


class _LazyTensor:
    """A view on a storage, materialised once the storage bytes are known."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialise(self) -> np.ndarray:
        base = self.storage.array
        if base is None:
            raise TorchFileError("tensor refers to a storage that the file does not contain")
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # own, contiguous copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    return _LazyTensor(storage, storage_offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise TorchFileError(f"unsupported object in checkpoint: {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel, *view = pid
        if kind != "storage" or (view and view[0] is not None):
            raise TorchFileError(f"unsupported persistent id {pid!r}")
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype)
        return self._storages[key]


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy PyTorch state dict as ``{name: numpy array}``.

    Args:
        path: a ``.pth`` file written by ``torch.save`` in the legacy (non-zip) format.

    Returns:
        An ordered mapping from parameter/buffer name to a NumPy array.

    Raises:
        TorchFileError: when the file is not in that format.
    """
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        if pickle.load(f) != MAGIC_NUMBER:
            raise TorchFileError(f"{path}: not a legacy PyTorch file (bad magic number)")
        if pickle.load(f) != PROTOCOL_VERSION:
            raise TorchFileError(f"{path}: unsupported PyTorch protocol version")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise TorchFileError(f"{path}: big-endian checkpoints are not supported")
        obj = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            storage = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * storage.dtype.itemsize
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise TorchFileError(f"{path}: truncated storage {key}")
            storage.array = np.frombuffer(data, dtype=storage.dtype)
    if not isinstance(obj, dict):
        raise TorchFileError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return collections.OrderedDict(
        (name, value.materialise() if isinstance(value, _LazyTensor) else np.asarray(value))
        for name, value in obj.items()
    )
