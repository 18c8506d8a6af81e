"""Times the PyTorch reference forward pass of a seeded RetinaNet-GHM network on the CPU.

    /usr/bin/python3 tools/reference/bench_torch.py [--model retinanet-ghm-r50-fpn] [--size 800x1216]
        [--threads 2] [--runs 3] [--mode both|eager|frozen]

eager  : the nn.Module under torch.no_grad()
frozen : torch.jit.trace + torch.jit.freeze (folds BN into convs, constant weights)
Each mode runs 1 warm-up + N timed runs in its own process (so peak RSS is per mode) and prints
one JSON line {"framework", "model", "size", "threads", "runs", "median_ms", "min_ms",
"median_cpu_ms", "peak_rss_mb", "torch"}.  median_cpu_ms is process CPU time (all threads) per
run: on a machine shared with other jobs, median_cpu_ms / threads estimates the idle wall time.
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

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as reference_model  # noqa: E402
import seeded_weights as seeded  # noqa: E402


class FlatOutputs(torch.nn.Module):
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
    return h, w


def bench_one(mode: str, name: str, h: int, w: int, threads: int, runs: int) -> dict:
    torch.set_num_threads(threads)
    net = reference_model.build(name)
    seeded.load_seeded(net)
    x = torch.from_numpy(seeded.seeded_input((1, 3, h, w)))
    fn = FlatOutputs(net).eval()
    with torch.no_grad():
        if mode == "frozen":
            fn = torch.jit.freeze(torch.jit.trace(fn, (x,)))
        fn(x)  # warm-up (for frozen: also the profiling run of the JIT)
        times, cpu_times = [], []
        for _ in range(runs):
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t0) * 1e3)
            cpu_times.append((time.process_time() - c0) * 1e3)
    return {
        "framework": f"pytorch-{mode}", "model": name, "size": f"{h}x{w}", "threads": threads,
        "runs": runs, "median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
        "median_cpu_ms": round(statistics.median(cpu_times), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="retinanet-ghm-r50-fpn", choices=list(reference_model.VARIANTS))
    parser.add_argument("--size", type=parse_size, default=(800, 1216))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", default="both", choices=["both", "eager", "frozen"])
    args = parser.parse_args()
    if args.threads < 1 or args.runs < 1:
        parser.error("--threads and --runs must be at least 1")
    h, w = args.size
    if args.mode != "both":
        print(json.dumps(bench_one(args.mode, args.model, h, w, args.threads, args.runs)), flush=True)
        return 0
    for mode in ("eager", "frozen"):
        cmd = [sys.executable, os.path.abspath(__file__), "--model", args.model, "--size", f"{h}x{w}",
               "--threads", str(args.threads), "--runs", str(args.runs), "--mode", mode]
        result = subprocess.run(cmd)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
