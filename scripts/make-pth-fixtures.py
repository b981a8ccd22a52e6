"""Write two tiny PyTorch state dicts, in the zip format (PyTorch >= 1.6) and the legacy format,
without PyTorch: a stand-in `torch` module gives pickle the names PyTorch's own files use
(`torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`, `collections.OrderedDict`), and the
containers are laid out as `torch.save` lays them out. The Rust reader (zoo/src/pth.rs) must
read both: `cargo test -p sfumato-zoo --test pth`.

    python3 scripts/make-pth-fixtures.py zoo/tests/data/pth

Tensors: `w` f32 [2, 3] = 0..6; `t` a transposed view [3, 2] of `w`'s storage (strides 1, 3);
`b` f32 [3] at offset 2 of a storage of 5 (2..5 = 10, 11, 12); `n` i64 [] = 7.
Standard library only (no numpy, no torch).
"""
import collections
import io
import pickle
import struct
import sys
import types
import zipfile

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")


def _rebuild_tensor_v2(*args):  # the name pickle records; never called here
    raise NotImplementedError


class FloatStorage:
    pass


class LongStorage:
    pass


_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2
FloatStorage.__module__ = LongStorage.__module__ = "torch"
torch.FloatStorage, torch.LongStorage, torch._utils = FloatStorage, LongStorage, utils
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


class Storage:
    def __init__(self, key, cls, values, fmt):
        self.key, self.cls, self.values, self.fmt = key, cls, values, fmt

    def raw(self):
        return b"".join(struct.pack("<" + self.fmt, v) for v in self.values)


class T:
    """A tensor: its storage, offset, size and stride, pickled as PyTorch pickles one."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args)


w = Storage("0", FloatStorage, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "f")
b = Storage("1", FloatStorage, [0.0, 0.0, 10.0, 11.0, 12.0], "f")
n = Storage("2", LongStorage, [7], "q")
state = collections.OrderedDict(
    [
        ("w", T(w, 0, [2, 3], [3, 1])),
        ("t", T(w, 0, [3, 2], [1, 3])),
        ("b", T(b, 2, [3], [1])),
        ("n", T(n, 0, [], [])),
    ]
)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", len(obj.values))
        return None


def dumps(obj):
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def main(out):
    with zipfile.ZipFile(f"{out}/tiny-zip.pth", "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", dumps(state))
        z.writestr("archive/version", "3\n")
        for s in (w, b, n):
            z.writestr(f"archive/data/{s.key}", s.raw())
    with open(f"{out}/tiny-legacy.pth", "wb") as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
        f.write(dumps(state))
        f.write(pickle.dumps(["0", "1", "2"], protocol=2))
        for s in (w, b, n):
            f.write(struct.pack("<q", len(s.values)))
            f.write(s.raw())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "zoo/tests/data/pth")
