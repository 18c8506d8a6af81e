#!/usr/bin/python3
"""Makes the demo's pretrained backbone, apps/GhmGen.Cli/Resources/ghm-demo-r18-backbone.pth.gz.

mmdetection's detectors start from an ImageNet-pretrained backbone; `ghm demo` starts its
ghm-demo-r18-fpn from this one instead: the half-width ResNet-18 of a whole demo detector trained
here on 4,000 synthetic images that the demo never uses (seed 1000; the demo's default seed is 0),
so that the FPN and head, which the demo initialises as mmdetection does, can learn in minutes.
Only the backbone is kept, in torchvision's key layout (conv1.weight, layer1.0.conv1.weight, ...),
which is what `ghm train --pretrained` reads, in float16 to halve the file, and gzip-compressed
(level 9, no timestamp) to keep the tracked file under 5 MiB; `ghm demo` writes it out
uncompressed as WORK/pretrained/ghm-demo-r18-backbone.pth.

    ghm dataset synth --out /tmp/ghm-pretrain --seed 1000 --train-images 4000 --val-images 100
    /usr/bin/python3 tools/reference/pretrain_demo_backbone.py --data /tmp/ghm-pretrain \
        [--out apps/GhmGen.Cli/Resources/ghm-demo-r18-backbone.pth.gz]

The training is demo_recipe_probe.py's (GHM-C/GHM-R, mmdetection's targets, batch 2 at 192x160,
batch statistics in every batch norm) with torch.optim.AdamW (lr 1e-3, weight decay 0.05) for 16
epochs, lr x0.1 after epochs 12 and 14: 32,000 iterations, about 40 minutes on one core. It runs on
one torch thread with fixed seeds, so the same torch build gives the same file; the SHA-256 it
prints for the uncompressed file is recorded in docs/DEMO.md.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import io
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RECIPE = ["--bn", "train", "--optim", "adamw", "--lr", "1e-3", "--wd", "0.05", "--epochs", "16",
          "--steps", "12,14", "--seed", "0", "--threads", "1"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a dataset written by `ghm dataset synth --seed 1000 --train-images 4000`")
    p.add_argument("--out", default=os.path.join(ROOT, "apps", "GhmGen.Cli", "Resources", "ghm-demo-r18-backbone.pth.gz"))
    p.add_argument("--work", default="/tmp/ghm-pretrain-work", help="where the probe writes its logs and the full detector")
    p.add_argument("--detector", default="", help="skip training: extract from this full detector state dict (.pt)")
    args = p.parse_args()

    detector = args.detector
    if not detector:
        os.makedirs(args.work, exist_ok=True)
        detector = os.path.join(args.work, "detector.pt")
        command = [sys.executable, os.path.join(HERE, "demo_recipe_probe.py"), "--data", args.data, "--out", args.work,
                   *RECIPE, "--save", detector, "--tag", "pretrain"]
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)

    state = torch.load(detector)
    backbone = collections.OrderedDict()
    for key, value in state.items():
        if not key.startswith("backbone."):
            continue
        name = key[len("backbone."):]
        backbone[name] = value.half() if value.is_floating_point() else value
    if not backbone:
        print(f"{detector} has no backbone.* tensors", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    buffer = io.BytesIO()
    torch.save(backbone, buffer)
    data = buffer.getvalue()
    temporary = args.out + ".tmp"
    with open(temporary, "wb") as f:
        f.write(gzip.compress(data, compresslevel=9, mtime=0))
    os.replace(temporary, args.out)
    print(f"{args.out}: {len(backbone)} tensors, {sum(v.numel() for v in backbone.values()):,} values, "
          f"{len(data):,} bytes uncompressed (sha256 {hashlib.sha256(data).hexdigest()}), {os.path.getsize(args.out):,} compressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
