#!/usr/bin/python3
"""Side-by-side CPU benchmark: GhmGen vs PyTorch (eager, frozen) vs ONNX Runtime vs TorchSharp, run alternately.

    /usr/bin/python3 bench/side_by_side.py [--model retinanet-ghm-r50-fpn] [--size 800x1216] [--batch 1]
        [--threads 2] [--rounds 5] [--frameworks ghmgen,pytorch-eager,pytorch-frozen,onnxruntime,torchsharp]
        [--onnx PATH] [--torchscript PATH] [--no-build]

How it works (one run of this script):
  1. Exports the seeded network to ONNX (tools/reference/export_onnx.py, opset 13) into
     artifacts/onnx/MODEL-HxW.onnx (MODEL-bB-HxW.onnx for --batch B > 1) and as TorchScript (tools/reference/export_torchscript.py, a plain
     torch.jit.trace) into artifacts/torchscript/MODEL-infer-HxW.pt if those files are missing, and
     builds bench/GhmGen.Bench and bench/GhmGen.Bench.TorchSharp (Release; the latter only when
     torchsharp is among --frameworks).
  2. Starts one long-lived worker process per framework, one after another (each waits until the
     previous one is ready, so set-up costs do not overlap):
       ghmgen         bench/GhmGen.Bench side-by-side-worker --framework ghmgen   (CpuBackend(threads))
       onnxruntime    bench/GhmGen.Bench side-by-side-worker --framework onnxruntime (Microsoft.ML.OnnxRuntime
                      1.31.1, CPU EP, IntraOpNumThreads=threads, sequential, ORT_ENABLE_ALL)
       pytorch-eager  this script --worker pytorch-eager  (tools/reference/model.py under torch.no_grad())
       pytorch-frozen this script --worker pytorch-frozen (torch.jit.freeze(torch.jit.trace(...)))
       torchsharp     bench/GhmGen.Bench.TorchSharp side-by-side-worker --framework torchsharp (TorchSharp-cpu
                      0.107.0 = libtorch 2.10.0, torch.jit.load of the TorchScript file, torch.set_num_threads,
                      under torch.no_grad(); its set-up ends with 2 untimed calls for libtorch's profiling
                      graph executor, see WorkerProtocol.DefaultJitWarmups)
     Every worker holds the same seeded weights and the same seeded Bx3xHxW input (SeededWeights /
     seeded_weights.py, bit-identical; B = --batch, 1 by default; torchsharp only at batch 1).
  3. Sends each worker one warm-up "run", then --rounds rounds; in each round every worker does one
     timed forward, strictly one at a time (the others are blocked reading stdin). The order within
     a round is a seeded shuffle (--seed), so no framework always runs first or always follows the
     same peer (whose threads may still be spinning down; --gap-ms pauses before each forward so
     that they have stopped). With --burst N each worker runs N forwards back to back in its turn and
     only the last N - 1 are timed: the first absorbs the switch (a peer's spinning threads, or the
     slower first pass after an idle --gap-ms), so the rest measure a steady stream of forwards, as in
     detection over a folder.
     Each worker times its own forward (wall clock and process CPU time) and answers one line.
  4. Reads each worker's peak RSS (VmHWM of /proc/PID/status; it includes set-up, e.g. generating
     the seeded weights) and its current RSS (VmRSS, the steady state) right after the rounds, before
     anything else is asked of it.
  5. Correctness guard, once: each worker writes the ten head outputs of its last forward; every peer
     must equal GhmGen's within 1e-3 x max|GhmGen output| per output (ONNX Runtime is the guard the
     task asks for; PyTorch and TorchSharp are checked the same way). A failure makes the exit status 1.
  6. Prints a table (median / min / max wall ms, median CPU ms, peak RSS MB, RSS after the rounds,
     GhmGen median / peer median: below 1 means GhmGen is faster) and one JSON summary line, also written to artifacts/side_by_side/MODEL-HxW.json.
Load average (1 min) is sampled before every round and reported; on a shared machine it tells how
much the wall times can be trusted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "tools", "reference")
BENCH_PROJECT = os.path.join(ROOT, "bench", "GhmGen.Bench")
BENCH_EXE = os.path.join(BENCH_PROJECT, "bin", "Release", "net10.0", "GhmGen.Bench")
TORCHSHARP_PROJECT = os.path.join(ROOT, "bench", "GhmGen.Bench.TorchSharp")
TORCHSHARP_EXE = os.path.join(TORCHSHARP_PROJECT, "bin", "Release", "net10.0", "GhmGen.Bench.TorchSharp")
TORCHSHARP_VERSION = "0.107.0"  # Directory.Packages.props; libtorch's version comes from the worker's ready line
HEAD_OUTPUTS = [f"{kind}_p{level}" for kind in ("cls", "reg") for level in range(3, 8)]
ALL_FRAMEWORKS = ["ghmgen", "pytorch-eager", "pytorch-frozen", "onnxruntime", "torchsharp"]
GUARD_TOLERANCE = 1e-3


def parse_size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be HxW, e.g. 800x1216, not '{text}'")
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"--size {text}: both sides must be at least 32")
    return h, w


# ----------------------------------------------------------------------------------------------
# PyTorch worker (runs in its own process; same line protocol as the C# side-by-side-worker)
# ----------------------------------------------------------------------------------------------

def reply(text: str) -> None:
    sys.stdout.write(f"SBS {text}\n")
    sys.stdout.flush()


def torch_worker(mode: str, name: str, h: int, w: int, threads: int, batch: int = 1) -> int:
    t0 = time.perf_counter()
    import numpy as np
    import torch
    sys.path.insert(0, REFERENCE)
    import model as reference_model
    import seeded_weights as seeded

    class FlatOutputs(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            cls, reg = self.net(x)
            return tuple(cls) + tuple(reg)

    torch.set_num_threads(threads)
    net = reference_model.build(name)
    seeded.load_seeded(net)
    x = torch.from_numpy(seeded.seeded_input((batch, 3, h, w)))
    fn = FlatOutputs(net).eval()
    if mode == "pytorch-frozen":
        with torch.no_grad():
            fn = torch.jit.freeze(torch.jit.trace(fn, (x,)))
    elif mode != "pytorch-eager":
        raise SystemExit(f"--worker {mode}: not pytorch-eager or pytorch-frozen")
    reply(f"ready setup_ms={(time.perf_counter() - t0) * 1e3:.1f}")
    last = None
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line == "run":
            last = None  # free the previous outputs first, as the other workers do
            c0 = time.process_time()
            s0 = time.perf_counter()
            with torch.no_grad():
                last = fn(x)
            wall = (time.perf_counter() - s0) * 1e3
            reply(f"ms={wall:.2f} cpu_ms={(time.process_time() - c0) * 1e3:.1f}")
        elif line.startswith("dump "):
            flat = np.concatenate([t.numpy().astype(np.float32).ravel() for t in last])
            flat.astype("<f4").tofile(line[5:])
            reply(f"ok floats={flat.size}")
        elif line == "quit":
            break
        else:
            raise SystemExit(f"torch worker: unknown command '{line}'")
    return 0


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

class Worker:
    """One framework's worker process and the line protocol to it."""

    def __init__(self, framework: str, cmd: list[str], log_dir: str):
        self.framework = framework
        self.cmd = cmd
        self.stderr = open(os.path.join(log_dir, f"{framework}.stderr.log"), "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, bufsize=1, cwd=ROOT)
        self.ready = self.expect("ready")
        self.setup_ms = float(self.ready["setup_ms"])

    def expect(self, what: str) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.framework} worker exited (code {self.proc.poll()}) while waiting for '{what}'; "
                                   f"see {self.stderr.name}; command: {' '.join(self.cmd)}")
            if line.startswith("SBS "):
                fields = line[4:].split()
                if what == "ready" and fields[0] != "ready":
                    raise RuntimeError(f"{self.framework} worker: expected 'ready', got {line!r}")
                return dict(f.split("=", 1) for f in fields if "=" in f)

    def send(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.expect(command)

    def run(self) -> tuple[float, float]:
        answer = self.send("run")
        return float(answer["ms"]), float(answer["cpu_ms"])

    def memory_mb(self, field: str) -> float:
        """VmHWM (peak RSS) or VmRSS (current RSS) of the worker, in MiB."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} in /proc/{self.proc.pid}/status")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.stderr.close()


def worker_command(framework: str, args, onnx_path: str, torchscript_path: str) -> list[str]:
    h, w = args.size
    common = ["--model", args.model, "--size", f"{h}x{w}", "--threads", str(args.threads)]
    if args.batch > 1:
        common += ["--batch", str(args.batch)]
    if framework in ("ghmgen", "onnxruntime"):
        cmd = [BENCH_EXE, "side-by-side-worker", "--framework", framework] + common
        return cmd + (["--onnx", onnx_path] if framework == "onnxruntime" else [])
    if framework == "torchsharp":
        return [TORCHSHARP_EXE, "side-by-side-worker", "--framework", framework, "--torchscript", torchscript_path] + common
    return [sys.executable, os.path.abspath(__file__), "--worker", framework] + common


def dotnet_build(project: str) -> bool:
    print(f"# dotnet build {os.path.relpath(project, ROOT)} -c Release", flush=True)
    build = subprocess.run(["dotnet", "build", project, "-c", "Release", "--nologo", "-v", "q"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if build.returncode != 0:
        print(build.stdout, file=sys.stderr)
        print(f"dotnet build {project} failed (exit {build.returncode})", file=sys.stderr)
    return build.returncode == 0


def compare(reference: "np.ndarray", other: "np.ndarray", shapes: list[tuple[str, int]]) -> tuple[float, str]:
    """Worst over the ten outputs of max|other - reference| / max|reference|, and which output."""
    import numpy as np
    worst, where, offset = 0.0, "", 0
    for name, count in shapes:
        a, b = reference[offset:offset + count], other[offset:offset + count]
        rel = float(np.abs(b.astype(np.float64) - a).max() / max(float(np.abs(a).max()), 1e-30))
        if rel >= worst:
            worst, where = rel, name
        offset += count
    return worst, where


def head_counts(h: int, w: int, batch: int = 1) -> list[tuple[str, int]]:
    # docs/MODEL.md §2: P3 is stride 8 of a ResNet (conv stride 2 + max-pool stride 2 + three stride-2 stages),
    # each level halves with ceil; P6/P7 are stride-2 3x3 convs with padding 1 (also ceil).
    sizes, ph, pw = [], h, w
    for _ in range(2):
        ph, pw = (ph + 1) // 2, (pw + 1) // 2
    ph, pw = (ph + 1) // 2, (pw + 1) // 2  # C3 (stride 8)
    for level in range(3, 8):
        sizes.append(ph * pw)
        ph, pw = (ph + 1) // 2, (pw + 1) // 2
    return [(f"cls_p{l}", batch * 720 * s) for l, s in zip(range(3, 8), sizes)] + \
           [(f"reg_p{l}", batch * 36 * s) for l, s in zip(range(3, 8), sizes)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="retinanet-ghm-r50-fpn")
    parser.add_argument("--size", type=parse_size, default=(800, 1216))
    parser.add_argument("--batch", type=int, default=1, help="images per forward (ghmgen, onnxruntime, pytorch-*)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frameworks", default=",".join(ALL_FRAMEWORKS),
                        help="comma-separated subset of " + ",".join(ALL_FRAMEWORKS) + " (ghmgen is required)")
    parser.add_argument("--onnx", help="ONNX file (default artifacts/onnx/MODEL-HxW.onnx, exported if missing)")
    parser.add_argument("--torchscript", help="TorchScript file for torchsharp (default "
                        "artifacts/torchscript/MODEL-infer-HxW.pt, exported if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-round framework order")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="pause before each timed forward, so that the previous worker's spinning threads "
                             "(ONNX Runtime's and OpenMP's spin after a run) have stopped; 0: none")
    parser.add_argument("--burst", type=int, default=1,
                        help="forwards per framework per round, back to back; with N > 1 the first of each "
                             "burst is untimed (default 1: one timed forward)")
    parser.add_argument("--no-build", action="store_true", help="do not run dotnet build first")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 1 or args.batch < 1 or args.burst < 1:
        parser.error("--threads, --rounds, --batch and --burst must be at least 1")
    h, w = args.size
    if args.worker:
        return torch_worker(args.worker, args.model, h, w, args.threads, args.batch)

    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = [f for f in frameworks if f not in ALL_FRAMEWORKS]
    if unknown or "ghmgen" not in frameworks:
        parser.error(f"--frameworks: unknown {unknown}" if unknown else "--frameworks must include ghmgen")
    if args.batch > 1 and "torchsharp" in frameworks:
        parser.error("--batch > 1: the torchsharp worker runs batch 1 only")
    tag = f"{args.model}-{h}x{w}" if args.batch == 1 else f"{args.model}-b{args.batch}-{h}x{w}"
    out_dir = os.path.join(ROOT, "artifacts", "side_by_side")
    os.makedirs(out_dir, exist_ok=True)
    onnx_path = os.path.abspath(args.onnx or os.path.join(ROOT, "artifacts", "onnx", f"{tag}.onnx"))
    torchscript_path = os.path.abspath(args.torchscript or os.path.join(
        ROOT, "artifacts", "torchscript", f"{args.model}-infer-{h}x{w}.pt"))

    if "onnxruntime" in frameworks and not os.path.exists(onnx_path):
        print(f"# exporting {onnx_path} (once; ~90 s for R-50)", flush=True)
        subprocess.run([sys.executable, os.path.join(REFERENCE, "export_onnx.py"), args.model, onnx_path,
                        "--size", f"{h}x{w}", "--batch", str(args.batch)], check=True, cwd=ROOT)
    if "torchsharp" in frameworks and not os.path.exists(torchscript_path):
        print(f"# exporting {torchscript_path} (once)", flush=True)
        subprocess.run([sys.executable, os.path.join(REFERENCE, "export_torchscript.py"), args.model, torchscript_path,
                        "--size", f"{h}x{w}", "--mode", "infer"], check=True, cwd=ROOT)
    if not args.no_build:
        if not dotnet_build(BENCH_PROJECT):
            return 2
        if "torchsharp" in frameworks and not dotnet_build(TORCHSHARP_PROJECT):
            return 2

    started = datetime.datetime.now(datetime.timezone.utc)
    workers: dict[str, Worker] = {}
    try:
        for f in frameworks:
            print(f"# starting {f}", flush=True)
            workers[f] = Worker(f, worker_command(f, args, onnx_path, torchscript_path), out_dir)
            print(f"#   ready after {workers[f].setup_ms / 1e3:.1f} s; warm-up ...", flush=True)
            warm_ms, _ = workers[f].run()
            workers[f].warmup_ms = warm_ms
            print(f"#   warm-up {warm_ms:.0f} ms", flush=True)

        times = {f: [] for f in frameworks}
        cpu = {f: [] for f in frameworks}
        loads = []
        shuffler = random.Random(args.seed)
        orders = []
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            order = list(frameworks)
            shuffler.shuffle(order)
            orders.append(order)
            line = []
            for f in order:
                if args.gap_ms > 0:
                    time.sleep(args.gap_ms / 1e3)
                for b in range(args.burst):
                    ms, cpu_ms = workers[f].run()
                    if args.burst > 1 and b == 0:
                        continue
                    times[f].append(ms)
                    cpu[f].append(cpu_ms)
                    line.append(f"{f} {ms:.0f}")
            print(f"# round {r + 1}/{args.rounds} (load {loads[-1]:.2f}): " + ", ".join(line), flush=True)
        loads.append(os.getloadavg()[0])
        peak_rss = {f: workers[f].memory_mb("VmHWM") for f in frameworks}
        rss_after = {f: workers[f].memory_mb("VmRSS") for f in frameworks}

        # Correctness guard on the last forward of every worker.
        import numpy as np
        dumps = {}
        for f in frameworks:
            path = os.path.join(out_dir, f"{f}-outputs.f32")
            workers[f].send(f"dump {path}")
            dumps[f] = np.fromfile(path, dtype="<f4")
            os.remove(path)
    finally:
        for worker in workers.values():
            worker.close()

    counts = head_counts(h, w, args.batch)
    expected_floats = sum(c for _, c in counts)
    guard = {}
    ok = True
    for f in frameworks:
        if f == "ghmgen":
            continue
        if dumps[f].size != dumps["ghmgen"].size or dumps[f].size != expected_floats:
            guard[f] = {"worst_rel": None, "output": f"size mismatch {dumps[f].size} vs {dumps['ghmgen'].size} "
                                                   f"(expected {expected_floats})", "pass": False}
            ok = False
            continue
        worst, where = compare(dumps["ghmgen"], dumps[f], counts)
        passed = worst <= GUARD_TOLERANCE
        ok = ok and passed
        guard[f] = {"worst_rel": float(f"{worst:.3g}"), "output": where, "pass": passed}

    ghm_median = statistics.median(times["ghmgen"])
    rows = []
    for f in frameworks:
        med = statistics.median(times[f])
        rows.append({
            "framework": f, "median_ms": round(med, 1), "min_ms": round(min(times[f]), 1),
            "max_ms": round(max(times[f]), 1), "median_cpu_ms": round(statistics.median(cpu[f]), 1),
            "warmup_ms": round(workers[f].warmup_ms, 1), "setup_s": round(workers[f].setup_ms / 1e3, 1),
            "peak_rss_mb": round(peak_rss[f], 1), "rss_after_rounds_mb": round(rss_after[f], 1),
            "ghmgen_over_peer": round(ghm_median / med, 3),
            "times_ms": [round(t, 1) for t in times[f]],
        })

    print()
    burst_text = f", bursts of {args.burst}, the first untimed" if args.burst > 1 else ""
    print(f"{args.model} {h}x{w}{f', batch {args.batch}' if args.batch > 1 else ''}, {args.threads} threads, {args.rounds} rounds round-robin (shuffled order{burst_text}) after 1 warm-up each; "
          f"{started:%Y-%m-%d %H:%M} UTC; load average (1 min) per round {min(loads):.2f}..{max(loads):.2f}")
    print(f"{'framework':<16}{'median ms':>11}{'min ms':>10}{'max ms':>10}{'med CPU ms':>12}{'peak RSS MB':>13}"
          f"{'RSS after MB':>14}{'GhmGen/peer':>13}")
    for row in rows:
        print(f"{row['framework']:<16}{row['median_ms']:>11.1f}{row['min_ms']:>10.1f}{row['max_ms']:>10.1f}"
              f"{row['median_cpu_ms']:>12.1f}{row['peak_rss_mb']:>13.1f}{row['rss_after_rounds_mb']:>14.1f}"
              f"{row['ghmgen_over_peer']:>13.3f}")
    print("correctness guard (last forward, max|peer - ghmgen| / max|ghmgen| per head output, worst of ten, "
          f"tolerance {GUARD_TOLERANCE:g}):")
    for f, g in guard.items():
        print(f"  {f:<16}{'PASS' if g['pass'] else 'FAIL'}  worst {g['worst_rel']} at {g['output']}")

    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    summary = {
        "model": args.model, "size": f"{h}x{w}", "batch": args.batch, "threads": args.threads, "gap_ms": args.gap_ms, "burst": args.burst, "rounds": args.rounds,
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "cpu": cpu_model(), "cores": os.cpu_count(),
        "load_avg_1min": [round(v, 2) for v in loads], "round_orders": orders, "torch": torch_version, "onnxruntime": "1.31.1 (C#)",
        "torchsharp": (f"{TORCHSHARP_VERSION} (libtorch {workers['torchsharp'].ready.get('libtorch')})"
                       if "torchsharp" in workers else None),
        "python": platform.python_version(), "results": rows, "guard": guard, "guard_pass": ok,
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    summary_path = os.path.join(out_dir, f"{tag}.json")
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    print(f"# summary written to {os.path.relpath(summary_path, ROOT)}")
    return 0 if ok else 1


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
