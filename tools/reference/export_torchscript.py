"""Exports a seeded RetinaNet-GHM network as TorchScript (torch.jit.trace) for the TorchSharp peer.

    /usr/bin/python3 tools/reference/export_torchscript.py retinanet-ghm-r50-fpn artifacts/torchscript/r50-infer-800x1216.pt \
        [--size 800x1216] [--mode infer|train] [--batch 1] [--freeze]

The network is model.py's with the seeded weights (seeded_weights.py = C# SeededWeights.Fill),
wrapped to return the ten head maps as one flat tuple, cls_p3..cls_p7 [N,720,h,w] then
reg_p3..reg_p7 [N,36,h,w], and traced on the seeded input of shape [batch,3,H,W]
(seeded_weights.seeded_input = C# SeededWeights.FillInput). A traced graph is specialised to
that shape: export once per size.

--mode infer (default): eval mode, traced under torch.no_grad(); all parameters saved with
  requires_grad=False. --freeze additionally applies torch.jit.freeze (BN folded into the convs,
  as side_by_side.py's pytorch-frozen); the default is the plain trace.
--mode train: the training set-up of configs/ghm (mmdetection's ResNet frozen_stages=1,
  norm_eval=True): BN layers in eval mode (running statistics, no update), so the traced graph
  has batch_norm(training=False); backbone.conv1, backbone.bn1 and backbone.layer1.* have
  requires_grad=False, every other parameter (BN affine of layer2-4 included) requires_grad=True.
  Traced with autograd on, so a loader (TorchSharp's torch.jit.load) can run backward through
  the module and step an optimiser over its parameters.

The file carries extra/ghmgen.json (model, mode, batch, size, frozen, the trained parameter
names and count), which the TorchSharp worker checks against its own arguments. After saving,
the file is loaded back with torch.jit.load and its outputs are compared with the eager
module's (exit status 1 if worse than 1e-5 of max |value|). Write under artifacts/
(git-ignored); never commit .pt files (R-50 is ~150 MB).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as reference_model  # noqa: E402
import seeded_weights as seeded  # noqa: E402

OUTPUT_NAMES = [f"{kind}_p{level}" for kind in ("cls", "reg") for level in range(3, 8)]
# mmdetection ResNet(frozen_stages=1): the stem and the first stage never train.
FROZEN_PREFIXES = ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.")
META_NAME = "ghmgen.json"


class FlatOutputs(torch.nn.Module):
    """Returns the ten maps as one flat tuple of tensors."""

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


def is_trained(name: str) -> bool:
    """Parameter names as in the state dict (model.py = mmdetection's keys)."""
    return not name.startswith(FROZEN_PREFIXES)


def build_seeded(name: str, mode: str) -> torch.nn.Module:
    net = reference_model.build(name)  # eval mode: BN on running statistics
    seeded.load_seeded(net)
    for key, p in net.named_parameters():
        p.requires_grad_(mode == "train" and is_trained(key))
    return FlatOutputs(net).eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=list(reference_model.VARIANTS))
    parser.add_argument("output", help="path of the .pt file to write")
    parser.add_argument("--size", type=parse_size, default=(800, 1216), help="HxW of the traced input")
    parser.add_argument("--mode", choices=["infer", "train"], default="infer")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--freeze", action="store_true", help="infer only: torch.jit.freeze the trace")
    args = parser.parse_args()
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.freeze and args.mode != "infer":
        parser.error("--freeze is for --mode infer only")

    t0 = time.perf_counter()
    h, w = args.size
    wrapped = build_seeded(args.model, args.mode)
    x = torch.from_numpy(seeded.seeded_input((args.batch, 3, h, w)))
    trained = [k for k, p in wrapped.net.named_parameters() if p.requires_grad]
    if args.mode == "infer":
        with torch.no_grad():
            expected = wrapped(x)
            traced = torch.jit.trace(wrapped, (x,), check_trace=False)
            if args.freeze:
                traced = torch.jit.freeze(traced)
    else:
        with torch.no_grad():
            expected = wrapped(x)
        traced = torch.jit.trace(wrapped, (x,), check_trace=False)  # autograd on: a graph to run backward through

    meta = {
        "model": args.model, "mode": args.mode, "batch": args.batch, "size": f"{h}x{w}",
        "frozen": bool(args.freeze), "outputs": OUTPUT_NAMES, "torch": torch.__version__,
        "trained_parameters": len(trained),
        "trained_elements": sum(p.numel() for p in wrapped.net.parameters() if p.requires_grad),
        "frozen_prefixes": list(FROZEN_PREFIXES) if args.mode == "train" else [],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    torch.jit.save(traced, args.output, _extra_files={META_NAME: json.dumps(meta)})

    # Load the file back and check it computes what the eager module computes.
    loaded = torch.jit.load(args.output)
    with torch.no_grad():
        got = loaded(x)
    worst = max(float((g - e).abs().max() / e.abs().max()) for g, e in zip(got, expected))
    reloaded_trained = sum(1 for p in loaded.parameters() if p.requires_grad)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s: "
          f"{args.model}, mode {args.mode}{' (frozen)' if args.freeze else ''}, input [{args.batch},3,{h},{w}], "
          f"{len(trained)} trained parameter tensors ({meta['trained_elements']:,} values), "
          f"{reloaded_trained} with requires_grad after reload; reloaded vs eager worst {worst:.2e} of max |value|")
    if reloaded_trained != (len(trained) if not args.freeze else 0):
        print("export_torchscript: requires_grad did not survive save/load", file=sys.stderr)
        return 1
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
