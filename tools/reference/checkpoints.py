#!/usr/bin/python3
"""Reference fixtures for GhmGen's checkpoint reader and writer (docs/MODEL.md §3, §4).

Run by hand with Debian's PyTorch (CI never runs Python):

    /usr/bin/python3 tools/reference/checkpoints.py make [OUT_DIR]
        writes small .pth files in BOTH formats (zip, and legacy via
        _use_new_zipfile_serialization=False) plus <name>.expected.json describing every
        tensor (dtype, shape, values in row-major order) and the meta dict.
        OUT_DIR defaults to tests/GhmGen.Runtime.Tests/Fixtures/Checkpoints.

    /usr/bin/python3 tools/reference/checkpoints.py verify FILE.pth EXPECTED.json
        torch.load()s a file written by GhmGen and compares it with the JSON description
        written beside it by the C# test (same schema as `make`); also checks every zip entry's
        CRC, that entries are stored and 64-byte aligned. Exit 0 when they agree. The file comes from
        TorchCheckpointWriteTests.Writes_a_file_for_torch_to_verify:

        dotnet test tests/GhmGen.Runtime.Tests -c Release --filter "FullyQualifiedName~Checkpoints"
        D=tests/GhmGen.Runtime.Tests/bin/Release/net10.0/checkpoint-verify
        /usr/bin/python3 tools/reference/checkpoints.py verify $D/written_by_ghmgen.pth $D/written_by_ghmgen.expected.json
"""
import collections
import json
import math
import os
import struct
import sys

import torch

DTYPE_NAMES = {
    torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.float64: "float64", torch.int64: "int64", torch.int32: "int32",
    torch.uint8: "uint8", torch.bool: "bool",
}


def json_value(v):
    """Meta values as JSON: tuples become {"tuple": [...]} so the tree shape is checkable."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return {"float": repr(v)}
    if isinstance(v, tuple):
        return {"tuple": [json_value(x) for x in v]}
    if isinstance(v, list):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {"dict": [[json_value(k), json_value(x)] for k, x in v.items()]}
    raise TypeError(type(v))


def describe_tensor(key, t):
    flat = t.detach().contiguous().reshape(-1)
    if t.dtype in (torch.int64, torch.int32, torch.uint8, torch.bool):
        values = [int(x) for x in flat.to(torch.int64).tolist()]
    else:
        # float32 is what GhmGen converts to; repr of the float32 value round-trips exactly.
        values = [repr(float(x)) for x in flat.to(torch.float32).tolist()]
    return {"key": key, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "values": values}


def describe(top, state_dict_key):
    sd = top[state_dict_key] if state_dict_key else top
    return {
        "top": "meta+state_dict" if state_dict_key else "state_dict",
        "meta": json_value(top["meta"]) if state_dict_key else None,
        "tensors": [describe_tensor(k, v) for k, v in sd.items()],
    }


def mixed_state_dict():
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(4, 5, generator=g)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(2, 3, generator=g)
    sd["f16"] = torch.randn(3, 2, generator=g).half()
    sd["bf16"] = torch.randn(5, generator=g).bfloat16()
    sd["f64"] = torch.randn(2, 2, generator=g).double()
    sd["i64"] = torch.tensor([-(2 ** 40), -1, 0, 1, 2 ** 62], dtype=torch.int64)
    sd["i32"] = torch.tensor([[-2 ** 31, 7], [123456, 2 ** 31 - 1]], dtype=torch.int32)
    sd["u8"] = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True], dtype=torch.bool)
    sd["scalar"] = torch.tensor(2.5)
    sd["scalar_i64"] = torch.tensor(17, dtype=torch.int64)
    sd["empty"] = torch.zeros(0, 3)
    # Views: all three share base's storage (one storage record, three tensors).
    sd["base"] = base
    sd["transposed"] = base.t()
    sd["sliced"] = base[1:3, 2:5]
    sd["strided"] = base[::2, ::2]
    return sd


def mixed_meta():
    return {
        "text": "héllo – ünïcode",
        "int": 42, "neg": -7, "big": 2 ** 40, "huge": 2 ** 70, "zero": 0,
        "float": 0.1, "nan_free": -1.5e-3,
        "list": [1, "two", 3.0], "tuple": (1, (2, 3)), "empty_tuple": (),
        "nested": {"a": {"b": [None, True, False]}},
        "none": None, "t": True, "f": False,
    }


class Conv(torch.nn.Module):
    def __init__(self, cin, cout, bias):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class GhmBuffers(torch.nn.Module):
    def __init__(self, bins):
        super().__init__()
        edges = torch.arange(bins + 1).float() / bins
        edges[-1] += 1e-6
        self.register_buffer("edges", edges)
        self.register_buffer("acc_sum", torch.zeros(bins))


class Backbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(4)


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.retina_cls = torch.nn.Conv2d(4, 2, 3, padding=1)
        self.loss_cls = GhmBuffers(30)
        self.loss_bbox = GhmBuffers(10)


class TinyDetector(torch.nn.Module):
    """Keys shaped like mmdetection's RetinaNet-GHM, sizes tiny."""

    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.neck = torch.nn.Module()
        self.neck.lateral_convs = torch.nn.ModuleList([Conv(4, 4, True)])
        self.bbox_head = Head()


def mmdet_like():
    torch.manual_seed(7)
    model = TinyDetector()
    with torch.no_grad():
        model.backbone.bn1.running_mean.uniform_(-1, 1)
        model.backbone.bn1.running_var.uniform_(0.5, 2)
        model.backbone.bn1.num_batches_tracked.fill_(1234)
        model.bbox_head.loss_cls.acc_sum.uniform_(0, 100)
        model.bbox_head.loss_bbox.acc_sum.uniform_(0, 100)
    meta = {
        "mmdet_version": "2.25.0",
        "CLASSES": ("person", "bicycle", "car"),
        "config": "model = dict(\n    type='RetinaNet',\n    bbox_head=dict(loss_cls=dict(type='GHMC', bins=30)))\n",
        "epoch": 12, "iter": 87948,
        "hook_msgs": {"last_ckpt": "work_dirs/epoch_12.pth"},
    }
    return {"meta": meta, "state_dict": model.state_dict()}


def save_both(out_dir, name, obj, state_dict_key):
    for fmt, zip_flag in (("zip", True), ("legacy", False)):
        path = os.path.join(out_dir, f"{name}_{fmt}.pth")
        torch.save(obj, path, _use_new_zipfile_serialization=zip_flag)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    desc = describe(obj, state_dict_key)
    with open(os.path.join(out_dir, f"{name}.expected.json"), "w", encoding="utf-8") as f:
        json.dump(desc, f, ensure_ascii=False, indent=1)


def make(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    save_both(out_dir, "mixed", {"meta": mixed_meta(), "state_dict": mixed_state_dict()}, "state_dict")
    save_both(out_dir, "mmdet_like", mmdet_like(), "state_dict")
    save_both(out_dir, "bare", mmdet_like()["state_dict"], None)
    # A file whose pickle names a global GhmGen must refuse (a classic pickle exploit shape).
    evil = os.path.join(out_dir, "evil_global_zip.pth")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": collections.OrderedDict(), "meta": Evil()}, evil)
    print(f"wrote {evil}")


def values_close(expected, actual, dtype):
    if dtype in ("int64", "int32", "uint8", "bool"):
        return expected == actual
    e = float(expected)
    return (math.isnan(e) and math.isnan(actual)) or e == actual


def verify(path, expected_path):
    with open(expected_path, encoding="utf-8") as f:
        expected = json.load(f)
    # weights_only=False: this is our own file; we want to see exactly what torch builds.
    top = torch.load(path, map_location="cpu")
    problems = []
    import zipfile
    with zipfile.ZipFile(path) as z:
        bad_crc = z.testzip()
        if bad_crc is not None:
            problems.append(f"zip entry {bad_crc} fails its CRC check")
        with open(path, "rb") as raw:
            for info in z.infolist():
                raw.seek(info.header_offset + 26)
                name_len, extra_len = struct.unpack("<HH", raw.read(4))
                data_offset = info.header_offset + 30 + name_len + extra_len
                if info.compress_type != zipfile.ZIP_STORED or data_offset % 64 != 0:
                    problems.append(f"{info.filename}: method {info.compress_type}, data at {data_offset}")
    # torch's own restricted unpickler (1.13) accepts only tensors, storages and plain containers;
    # it lacks BINFLOAT, so a meta with floats fails there for torch's own files too: report only.
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        print("weights_only=True load: ok")
    except Exception as e:  # noqa: BLE001 - informational
        print(f"weights_only=True load: refused ({str(e).splitlines()[-1][-80:]})")
    if expected["top"] == "meta+state_dict":
        if set(top.keys()) != {"meta", "state_dict"}:
            problems.append(f"top-level keys {sorted(top.keys())}")
        sd = top["state_dict"]
        if json_value(top["meta"]) != expected["meta"]:
            problems.append(f"meta differs: {json_value(top['meta'])!r} vs {expected['meta']!r}")
    else:
        sd = top
    if not isinstance(sd, collections.OrderedDict):
        problems.append(f"state_dict is {type(sd).__name__}, not OrderedDict")
    keys = list(sd.keys())
    want_keys = [t["key"] for t in expected["tensors"]]
    if keys != want_keys:
        problems.append(f"keys differ: {keys} vs {want_keys}")
    for t in expected["tensors"]:
        if t["key"] not in sd:
            continue
        got = sd[t["key"]]
        d = describe_tensor(t["key"], got)
        if d["dtype"] != t["dtype"] or d["shape"] != t["shape"]:
            problems.append(f"{t['key']}: {d['dtype']} {d['shape']} vs {t['dtype']} {t['shape']}")
            continue
        gv = got.detach().reshape(-1).to(torch.float64 if t["dtype"] not in ("int64",) else torch.int64).tolist()
        bad = [i for i, (e, a) in enumerate(zip(t["values"], gv)) if not values_close(e, a, t["dtype"])]
        if bad:
            problems.append(f"{t['key']}: {len(bad)} values differ, first at {bad[0]}")
    for p in problems:
        print("MISMATCH", p)
    n = len(expected["tensors"])
    print(f"{path}: torch {torch.__version__} loaded {len(keys)} tensors; "
          f"{'OK' if not problems else 'FAILED'} ({n} expected tensors, {len(problems)} problems)")
    return 0 if not problems else 1


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "make":
        here = os.path.dirname(os.path.abspath(__file__))
        default = os.path.join(here, "..", "..", "tests", "GhmGen.Runtime.Tests", "Fixtures", "Checkpoints")
        make(os.path.normpath(sys.argv[2] if len(sys.argv) > 2 else default))
    elif len(sys.argv) == 4 and sys.argv[1] == "verify":
        sys.exit(verify(sys.argv[2], sys.argv[3]))
    else:
        print(__doc__)
        sys.exit(2)
