"""Times one PyTorch training step of a seeded RetinaNet-GHM network on the CPU (the peer of a
GhmGen training step), and exports the same step's network as TorchScript for a TorchSharp peer.

    /usr/bin/python3 tools/reference/bench_train_torch.py [--model retinanet-ghm-r50-fpn]
        [--size 512x640] [--batch 2] [--threads 2] [--runs 3] [--mode both|eager|script|none]
        [--script FILE.pt] [--export]

One step = zero_grad (set_to_none) -> forward -> L = sum over the ten outputs of sum(G * output)
-> backward -> SGD step (lr 0.005, momentum 0.9, weight decay 1e-4, as mmdetection's
DefaultOptimizerConstructor builds it: every parameter is handed to SGD, the frozen ones have no
.grad and are skipped). No GHM loss: dL/d output = G, a seeded constant, so the step costs the
network's forward + backward + update only. Set-up as in training (docs/MODEL.md §2):
requires_grad=False on backbone.conv1, backbone.bn1, backbone.layer1.* (frozen_stages=1); the whole
model in eval mode, so every BN uses its running statistics (norm_eval=True). Seeded weights
(seeded_weights.py); input [batch, 3, H, W] = SeededWeights.FillInput (key "input", U(-2, 2));
G_name = FillUniform("output_grad." + name, -1, 1) over each [batch, C, h, w] output (the keys of
backward_grads.py).

Modes, each in its own process (peak RSS per mode), 1 warm-up step + --runs timed steps:
  eager  : the nn.Module ("pytorch-eager")
  script : the TorchScript file (--script; written by --export), loaded with torch.jit.load ("pytorch-script");
           the same file a TorchSharp peer (torch.jit.load in TorchSharp) would time.
(The export, when asked for with --mode both, runs in a process of its own, before them.)
One JSON line per mode: {"framework", "model", "size", "batch", "threads", "runs", "median_ms",
"min_ms", "median_cpu_ms", "peak_rss_mb", "torch"}.

The export: torch.jit.trace (no freeze: parameters stay parameters and keep requires_grad) of a
module whose forward returns the ten outputs as a tuple (cls_p3..cls_p7, reg_p3..reg_p7); its
parameter names are the state-dict keys (backbone..., neck..., bbox_head...). The trace records
batch_norm with training=False, so BN stays on running statistics even after .train(). It is
traced at --size/--batch; other sizes give wrong FPN upsampling sizes (traced as constants). With
--export this script checks the file: loaded back, one step's parameter gradients equal the eager
ones (max |diff| / max |g| printed) and the frozen parameters still have requires_grad=False.
For a TorchSharp-cpu 0.107.0 (libtorch 2.10) peer: torch.jit.load(file), set requires_grad=false
on the frozen prefixes again, eval(), call(x) gives the ten outputs as object[], then
optim.SGD(parameters where requires_grad, 0.005, momentum: 0.9, weight_decay: 1e-4). The file is
written by torch 1.13; that libtorch 2.10 loads it is NOT verified: TorchSharp 0.107.0's
libLibTorchSharp.so needs GLIBCXX_3.4.32 (GCC 13's libstdc++) and the Debian 12 dev machine has
3.4.30, so it did not start there.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as reference_model  # noqa: E402
import seeded_weights as seeded  # noqa: E402

FROZEN_PREFIXES = ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.")
OUTPUT_NAMES = [f"cls_p{l}" for l in range(3, 8)] + [f"reg_p{l}" for l in range(3, 8)]
LR, MOMENTUM, WEIGHT_DECAY = 0.005, 0.9, 1e-4


class FlatDetector(torch.nn.Module):
    """The detector with its ten outputs as one tuple; parameter names = the state-dict keys."""

    def __init__(self, net: reference_model.RetinaNetGhm):
        super().__init__()
        self.backbone = net.backbone
        self.neck = net.neck
        self.bbox_head = net.bbox_head

    def forward(self, x):
        cls, reg = self.bbox_head(self.neck(self.backbone(x)))
        return tuple(cls) + tuple(reg)


def parse_size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be HxW, e.g. 512x640, not '{text}'")
    return h, w


def build(name: str) -> FlatDetector:
    net = reference_model.build(name)
    seeded.load_seeded(net)
    flat = FlatDetector(net).eval()
    freeze(flat)
    return flat


def freeze(module: torch.nn.Module) -> None:
    for key, p in module.named_parameters():
        if key.startswith(FROZEN_PREFIXES):
            p.requires_grad_(False)


def inputs(module, batch: int, h: int, w: int):
    x = torch.from_numpy(seeded.seeded_input((batch, 3, h, w)))
    with torch.no_grad():
        shapes = [tuple(o.shape) for o in module(x)]
    grads = [torch.from_numpy(seeded.uniform("output_grad." + n, int(np.prod(s)), -1.0, 1.0).reshape(s))
             for n, s in zip(OUTPUT_NAMES, shapes)]
    return x, grads


def make_step(module, x, grads):
    # All parameters go to SGD, as in mmdetection; torch skips those whose .grad is None.
    optimizer = torch.optim.SGD(module.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step():
        optimizer.zero_grad(set_to_none=True)
        outs = module(x)
        loss = sum((g * o).sum() for g, o in zip(grads, outs))
        loss.backward()
        optimizer.step()
        return float(loss)

    return step


def export(name: str, batch: int, h: int, w: int, path: str) -> None:
    module = build(name)
    x, grads = inputs(module, batch, h, w)
    traced = torch.jit.trace(module, (x,), check_trace=False)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.jit.save(traced, path)
    loaded = torch.jit.load(path)
    frozen_ok = all(not p.requires_grad for k, p in loaded.named_parameters() if k.startswith(FROZEN_PREFIXES))
    if not frozen_ok:      # some versions drop the flag: set it again (a TorchSharp peer must too)
        freeze(loaded)
    # One forward + backward on each, parameter gradients compared.
    for m in (module, loaded):
        outs = m(x)
        sum((g * o).sum() for g, o in zip(grads, outs)).backward()
    eager = dict(module.named_parameters())
    worst = 0.0
    for k, p in loaded.named_parameters():
        q = eager[k]
        assert (p.grad is None) == (q.grad is None), k
        if p.grad is not None:
            worst = max(worst, float((p.grad - q.grad).abs().max() / q.grad.abs().max()))
    print(json.dumps({"export": path, "bytes": os.path.getsize(path), "size": f"{h}x{w}", "batch": batch,
                      "frozen_requires_grad_kept": frozen_ok,
                      "grad_max_rel_diff_script_vs_eager": worst}), flush=True)


def bench_one(mode: str, name: str, batch: int, h: int, w: int, threads: int, runs: int, path: str) -> dict:
    torch.set_num_threads(threads)
    if mode == "script":
        module = torch.jit.load(path)
        freeze(module)
        module.eval()
    else:
        module = build(name)
    x, grads = inputs(module, batch, h, w)
    step = make_step(module, x, grads)
    step()  # warm-up (for script: also the JIT's profiling runs)
    times, cpu_times = [], []
    for _ in range(runs):
        c0 = time.process_time()
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu_times.append((time.process_time() - c0) * 1e3)
    return {
        "framework": f"pytorch-{mode}", "model": name, "size": f"{h}x{w}", "batch": batch,
        "threads": threads, "runs": runs, "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1), "median_cpu_ms": round(statistics.median(cpu_times), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="retinanet-ghm-r50-fpn", choices=list(reference_model.VARIANTS))
    parser.add_argument("--size", type=parse_size, default=(512, 640))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", default="both", choices=["both", "eager", "script", "none"])
    parser.add_argument("--script", default=None,
                        help="TorchScript file (default artifacts/torchscript/<model>-train-<batch>x<H>x<W>.pt)")
    parser.add_argument("--export", action="store_true", help="write (and check) the --script file first")
    args = parser.parse_args()
    if args.threads < 1 or args.runs < 1 or args.batch < 1:
        parser.error("--threads, --runs and --batch must be at least 1")
    h, w = args.size
    path = args.script or os.path.join("artifacts", "torchscript", f"{args.model}-train-{args.batch}x{h}x{w}.pt")
    common = ["--model", args.model, "--size", f"{h}x{w}", "--batch", str(args.batch),
              "--threads", str(args.threads), "--runs", str(args.runs), "--script", path]
    if args.export and args.mode == "both":
        # In its own process: Linux carries the peak RSS across exec, so an export in this process
        # would show up in the bench processes' peak_rss_mb.
        result = subprocess.run([sys.executable, os.path.abspath(__file__), *common, "--mode", "none", "--export"])
        if result.returncode != 0:
            return result.returncode
    elif args.export:
        torch.set_num_threads(args.threads)
        export(args.model, args.batch, h, w, path)
    if args.mode in ("eager", "script"):
        print(json.dumps(bench_one(args.mode, args.model, args.batch, h, w, args.threads, args.runs, path)), flush=True)
        return 0
    if args.mode == "none":
        return 0
    for mode in ("eager", "script"):
        if mode == "script" and not os.path.exists(path):
            print(f"no TorchScript file {path}: run with --export first", file=sys.stderr)
            return 1
        cmd = [sys.executable, os.path.abspath(__file__), *common, "--mode", mode]
        result = subprocess.run(cmd)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
