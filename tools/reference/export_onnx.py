"""Exports a seeded RetinaNet-GHM network to ONNX (opset 13) for the side-by-side bench.

    /usr/bin/python3 tools/reference/export_onnx.py retinanet-ghm-r50-fpn artifacts/onnx/r50-800x1216.onnx \
        [--size 800x1216] [--dynamic]

Weights are the seeded ones (seeded_weights.py, identical to C# SeededWeights.Fill), so the
ONNX model, PyTorch and GhmGen compute the same function.  Input "input" [1,3,H,W] float32;
outputs cls_p3..cls_p7 [1,720,h,w] then reg_p3..reg_p7 [1,36,h,w].  --dynamic makes H and W
symbolic.  Never commit the .onnx files (artifacts/ is git-ignored).
The exported graph is checked by re-running it with onnxruntime when that Python package is
importable, otherwise only torch's own exporter checks apply.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as reference_model  # noqa: E402
import seeded_weights as seeded  # noqa: E402

OUTPUT_NAMES = [f"{kind}_p{level}" for kind in ("cls", "reg") for level in range(3, 8)]


class FlatOutputs(torch.nn.Module):
    """Returns the ten maps as one flat tuple (ONNX outputs cannot be nested lists)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        cls, reg = self.net(x)
        return tuple(cls) + tuple(reg)


def parse_size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be HxW, e.g. 800x1216, not '{text}'")
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"--size {text}: both sides must be at least 32")
    return h, w


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=list(reference_model.VARIANTS))
    parser.add_argument("output", help="path of the .onnx file to write")
    parser.add_argument("--size", type=parse_size, default=(800, 1216), help="HxW of the traced input")
    parser.add_argument("--dynamic", action="store_true", help="make H and W symbolic")
    parser.add_argument("--batch", type=int, default=1, help="N of the traced input (the seeded input over all N images)")
    args = parser.parse_args()

    net = reference_model.build(args.model)
    seeded.load_seeded(net)
    wrapped = FlatOutputs(net).eval()
    h, w = args.size
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    x = torch.from_numpy(seeded.seeded_input((args.batch, 3, h, w)))
    dynamic_axes = None
    if args.dynamic:
        dynamic_axes = {"input": {2: "height", 3: "width"}}
        dynamic_axes.update({name: {2: f"{name}_h", 3: f"{name}_w"} for name in OUTPUT_NAMES})
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with torch.no_grad():
        expected = wrapped(x)
        torch.onnx.export(wrapped, (x,), args.output, opset_version=13, input_names=["input"],
                          output_names=OUTPUT_NAMES, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB), "
          f"{args.model}, input [{args.batch},3,{h},{w}], opset 13{', dynamic H/W' if args.dynamic else ''}")
    try:
        import onnxruntime  # type: ignore
    except ImportError:
        print("onnxruntime (Python) not installed: graph not re-run here")
        return 0
    session = onnxruntime.InferenceSession(args.output, providers=["CPUExecutionProvider"])
    got = session.run(OUTPUT_NAMES, {"input": x.numpy()})
    worst = max(float((torch.from_numpy(g) - e).abs().max() / e.abs().max()) for g, e in zip(got, expected))
    print(f"onnxruntime vs PyTorch: worst max-abs-diff / max-abs = {worst:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
