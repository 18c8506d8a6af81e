"""Makes the committed fixtures that check the C# seeded weights and the C# forward pass.

    /usr/bin/python3 tools/reference/make_fixtures.py

Writes
  tests/GhmGen.Runtime.Tests/Layers/Fixtures/seeded_weights.json
      first/last 16 values (float32 bit patterns) of sample keys of every seeded role, and of
      the seeded input, for SeededWeightsTests.
  tests/GhmGen.Models.Tests/Fixtures/Forward/<model>-<H>x<W>.bin / .json
      the ten head outputs (cls P3..P7 then reg P3..P7, float32 little-endian, row-major NCHW)
      of the seeded network on the seeded 1x3xHxW input, computed in float64 and rounded once to
      float32; the JSON gives shapes, offsets, max |value|, std, and PyTorch's own float32 error
      (float32 forward vs float64 forward) per output.  For R-50 at 96x128 the JSON also holds
      intermediate C2..C5 / P3..P7 statistics and sampled values for debugging.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as reference_model  # noqa: E402
import seeded_weights as seeded  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SEEDED_JSON = os.path.join(ROOT, "tests/GhmGen.Runtime.Tests/Layers/Fixtures/seeded_weights.json")
FORWARD_DIR = os.path.join(ROOT, "tests/GhmGen.Models.Tests/Fixtures/Forward")

R50 = "retinanet-ghm-r50-fpn"
# (model, H, W): 96x128 for every network; R-50 also at 64x160 (P7 1x2) and at 72x100, which is
# not a multiple of 32, so the FPN's nearest upsampling goes to non-doubled sizes (3x4 -> 5x7).
FORWARD_CASES = [(R50, 96, 128), (R50, 64, 160), (R50, 72, 100),
                 ("retinanet-ghm-r101-fpn", 96, 128),
                 ("retinanet-ghm-x101-32x4d-fpn", 96, 128),
                 ("retinanet-ghm-x101-64x4d-fpn", 96, 128)]

SEEDED_SAMPLE_MODEL = "retinanet-ghm-x101-64x4d-fpn"
SEEDED_SAMPLE_KEYS = [
    "backbone.conv1.weight",
    "backbone.bn1.weight", "backbone.bn1.bias", "backbone.bn1.running_mean",
    "backbone.bn1.running_var", "backbone.bn1.num_batches_tracked",
    "backbone.layer1.0.conv1.weight",
    "backbone.layer3.22.conv2.weight",
    "backbone.layer3.22.bn2.running_var",
    "backbone.layer4.0.downsample.0.weight",
    "backbone.layer4.0.downsample.1.weight", "backbone.layer4.0.downsample.1.bias",
    "backbone.layer4.0.downsample.1.running_mean", "backbone.layer4.0.downsample.1.num_batches_tracked",
    "backbone.layer4.2.conv3.weight", "backbone.layer4.2.bn3.bias",
    "neck.lateral_convs.2.conv.weight", "neck.lateral_convs.2.conv.bias",
    "neck.fpn_convs.3.conv.weight", "neck.fpn_convs.4.conv.bias",
    "bbox_head.cls_convs.0.conv.weight", "bbox_head.reg_convs.3.conv.bias",
    "bbox_head.retina_cls.weight", "bbox_head.retina_cls.bias",
    "bbox_head.retina_reg.weight", "bbox_head.retina_reg.bias",
    "bbox_head.loss_cls.edges", "bbox_head.loss_cls.acc_sum",
    "bbox_head.loss_bbox.edges", "bbox_head.loss_bbox.acc_sum",
]
SEEDED_INPUT_SHAPE = (1, 3, 96, 128)
SAMPLE_EDGE = 16


def bits(values: np.ndarray) -> list:
    if values.dtype == np.int64:
        return [int(v) for v in values]
    return [int(v) for v in values.astype(np.float32).view(np.uint32)]


def sample_entry(key: str, shape, values: np.ndarray, role: str) -> dict:
    flat = values.reshape(-1)
    n = flat.size
    head = flat[:SAMPLE_EDGE]
    tail_start = max(n - SAMPLE_EDGE, 0)
    return {
        "key": key, "shape": list(shape), "role": role,
        "element_type": "int64" if flat.dtype == np.int64 else "float32",
        "count": int(n),
        "first": bits(head),
        "last_start": int(tail_start), "last": bits(flat[tail_start:]),
        "first_values": [float(v) for v in head],
    }


def make_seeded_fixture() -> None:
    model = reference_model.build(SEEDED_SAMPLE_MODEL)
    sd = model.state_dict()
    entries = []
    for key in SEEDED_SAMPLE_KEYS:
        shape = tuple(sd[key].shape)
        entries.append(sample_entry(key, shape, seeded.seeded_value(key, shape), seeded.role(key, shape)))
    x = seeded.seeded_input(SEEDED_INPUT_SHAPE)
    doc = {
        "about": "Seeded state values made by tools/reference/seeded_weights.py; float32 values as "
                 "uint32 bit patterns (int64 values as integers). 'first' = elements 0..15, "
                 "'last' = elements last_start..count-1 (row-major).",
        "model": SEEDED_SAMPLE_MODEL,
        "fnv1a64": {k: f"{seeded.fnv1a64(k):016x}" for k in ("input", "backbone.conv1.weight")},
        "tensors": entries,
        "input": sample_entry(seeded.INPUT_KEY, SEEDED_INPUT_SHAPE, x, "input"),
    }
    os.makedirs(os.path.dirname(SEEDED_JSON), exist_ok=True)
    # One tensor per line: small, and diffs stay readable.
    compact = {"separators": (",", ":")}
    lines = ["{"]
    for field in ("about", "model", "fnv1a64", "input"):
        lines.append(f' {json.dumps(field)}:{json.dumps(doc[field], **compact)},')
    lines.append(' "tensors":[')
    lines.append(",\n".join("  " + json.dumps(e, **compact) for e in entries))
    lines.append(" ]")
    lines.append("}")
    with open(SEEDED_JSON, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", os.path.relpath(SEEDED_JSON, ROOT), os.path.getsize(SEEDED_JSON), "bytes")


def sampled(t: torch.Tensor, count: int = 16) -> dict:
    flat = t.reshape(-1)
    idx = np.linspace(0, flat.numel() - 1, count).round().astype(np.int64)
    return {"indices": [int(i) for i in idx], "values": [float(flat[int(i)]) for i in idx]}


def stats(t: torch.Tensor) -> dict:
    return {"shape": list(t.shape), "max_abs": float(t.abs().max()), "mean": float(t.mean()),
            "std": float(t.std())}


def run_case(name: str, h: int, w: int, with_intermediates: bool) -> None:
    model = reference_model.build(name)
    seeded.load_seeded(model)
    x32 = torch.from_numpy(seeded.seeded_input((1, 3, h, w)))
    t0 = time.time()
    with torch.no_grad():
        c32, p32, cls32, reg32 = model.forward_with_intermediates(x32)
        model64 = model.double()
        c64, p64, cls64, reg64 = model64.forward_with_intermediates(x32.double())
    seconds = time.time() - t0
    outputs, blobs, offset = [], [], 0
    for kind, maps64, maps32 in (("cls", cls64, cls32), ("reg", reg64, reg32)):
        final_bias = model64.bbox_head.retina_cls.bias if kind == "cls" else model64.bbox_head.retina_reg.bias
        for level, (a, b) in enumerate(zip(maps64, maps32)):
            conv_part = float((a - final_bias.view(1, -1, 1, 1)).abs().max())
            ref = a.float().numpy().astype("<f4")
            diff = float((a - b.double()).abs().max())
            max_abs = float(a.abs().max())
            outputs.append({
                "name": f"{kind}_p{level + 3}", "shape": list(ref.shape),
                "offset_floats": offset, "count": int(ref.size),
                "max_abs": max_abs, "mean": float(a.mean()), "std": float(a.std()),
                "max_abs_minus_final_bias": conv_part,
                "torch_fp32_vs_fp64_max_abs_diff": diff,
                "torch_fp32_vs_fp64_rel_to_max_abs": diff / max_abs,
            })
            blobs.append(ref.reshape(-1))
            offset += ref.size
    base = f"{name}-{h}x{w}"
    doc = {
        "model": name, "input_shape": [1, 3, h, w],
        "input": "seeded: SeededWeights.FillInput, U(-2,2) over key 'input' (row-major NCHW)",
        "weights": "seeded: SeededWeights.Fill for every state key",
        "values": f"{base}.bin: float32 little-endian, outputs concatenated in the order below, "
                  "each row-major NCHW; computed by PyTorch in float64, rounded once to float32",
        "torch_version": torch.__version__,
        "outputs": outputs,
    }
    if with_intermediates:
        doc["intermediates"] = {
            **{f"c{i + 2}": {**stats(t), **sampled(t)} for i, t in enumerate(c64)},
            **{f"p{i + 3}": {**stats(t), **sampled(t)} for i, t in enumerate(p64)},
        }
    os.makedirs(FORWARD_DIR, exist_ok=True)
    np.concatenate(blobs).astype("<f4").tofile(os.path.join(FORWARD_DIR, base + ".bin"))
    with open(os.path.join(FORWARD_DIR, base + ".json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    worst = max(o["torch_fp32_vs_fp64_rel_to_max_abs"] for o in outputs)
    print(f"wrote {base}.bin ({offset * 4} bytes) + .json; forward fp32+fp64 {seconds:.1f}s; "
          f"worst fp32-vs-fp64 rel {worst:.2e}")


def main() -> int:
    torch.set_num_threads(int(os.environ.get("REFERENCE_THREADS", "1")))
    make_seeded_fixture()
    for i, (name, h, w) in enumerate(FORWARD_CASES):
        run_case(name, h, w, with_intermediates=(i == 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
