#!/usr/bin/python3
"""Side-by-side CPU training-step benchmark: GhmGen vs PyTorch eager vs TorchSharp.

    /usr/bin/python3 bench/side_by_side_train.py [--model retinanet-ghm-r50-fpn] [--size 512x640] [--batch 2]
        [--threads 2] [--rounds 5] [--frameworks ghmgen,pytorch-eager,torchsharp] [--torchscript PATH] [--no-build]

One step (what every worker times, one per "run"):
  zero the gradients (set to None), forward the seeded Bx3xHxW input (seeded_weights.seeded_input =
  C# SeededWeights.FillInput), loss = sum over the ten head maps of sum(G * map), backward, one SGD
  step (lr 0.01, momentum 0.9, weight decay 1e-4: configs/ghm's optimiser, without its gradient
  clipping). Set-up as configs/ghm trains: BN layers in eval mode (running statistics; their affine
  parameters in layer2-4 still train), backbone stem (conv1, bn1) and layer1 frozen (ResNet
  frozen_stages=1); every other parameter trains (162 tensors for R-50).
  G for map NAME [B, 720|36, h, w] with n elements: seeded_weights.uniform("bench.train.G." + NAME, n,
  -1/n, 1/n) (= C# SeededWeights.FillUniform), so each map adds a mean-sized term and SGD stays
  stable over many steps.

Workers (one long-lived process each, the line protocol of bench/side_by_side.py):
  pytorch-eager  this script --worker pytorch-eager: tools/reference/model.py (export_torchscript.build_seeded
                 in train mode, i.e. the same freezing rule), torch.optim.SGD, torch.set_num_threads.
                 (tools/reference/bench_train_torch.py, written elsewhere for the PyTorch eager side, was not
                 on main when this was written; this minimal worker stands in for it.)
  torchsharp     bench/GhmGen.Bench.TorchSharp train-worker: the module traced by
                 tools/reference/export_torchscript.py --mode train --batch B (exported into
                 artifacts/torchscript/MODEL-train-bB-HxW.pt if missing), torch.jit.load, backward through the
                 ScriptModule, TorchSharp's torch.optim.SGD over its trained parameters; set-up ends with 2
                 untimed forward + backward calls (no step) for libtorch's profiling graph executor.
  ghmgen         bench/GhmGen.Bench train-worker (ghmgen_train_worker_command below): the generated training session
                 on CpuBackend(threads), G uploaded as the output gradients, backward, GhmGen's torch-exact SGD over
                 the trained parameters, UpdateWeights; it also reports the step's phases (printed as a breakdown).

Round-robin as in side_by_side.py: one warm-up step per worker, then --rounds rounds in a seeded
shuffled order, strictly one worker at a time; each worker times its own step (wall and process
CPU time). Peak RSS (VmHWM) and RSS (VmRSS) are read from /proc right after the rounds. Since every
worker starts from the same weights, the guard compares the first step against the reference (ghmgen when
present, else pytorch-eager): its loss within 1e-4 of sum |G * map|, and the ten maps of its forward (dumped
right after the warm-up step) within 1e-3 of max |value| per map. The last step's maps (after the same number
of SGD steps) and the loss of every step are compared too, for information only: training amplifies the
frameworks' different rounding (GhmGen's Winograd among it) step by step, so after a few steps they differ by
far more than the first step's rounding.
Prints a table, one JSON line per framework {"framework", "median_ms", "peak_rss_mb", ...} and a summary
JSON line, also written to artifacts/side_by_side/train-MODEL-bB-HxW.json.
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

import side_by_side as sbs  # bench/side_by_side.py: Worker, compare, head_counts, cpu_model, parse_size

ROOT = sbs.ROOT
REFERENCE = sbs.REFERENCE
ALL_FRAMEWORKS = ["ghmgen", "pytorch-eager", "torchsharp"]
DEFAULT_FRAMEWORKS = ["ghmgen", "pytorch-eager", "torchsharp"]
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4
LOSS_TOLERANCE = 1e-4     # first-step loss difference / sum |G * map|
OUTPUT_TOLERANCE = 1e-3   # last forward, max |peer - reference| / max |reference| per map
# TorchSharp's libtorch graph executor: untimed profiling + optimising calls in its set-up (WorkerProtocol.cs).
TORCHSHARP_JIT_WARMUPS = 2


def ghmgen_train_worker_command(args) -> list[str] | None:
    """The GhmGen training worker: bench/GhmGen.Bench train-worker (bench/GhmGen.Bench/Training/TrainWorker.cs).

    It speaks the protocol of bench/side_by_side.py's workers and does the step described in this module's
    docstring on the network with SeededWeights.Fill (stem/layer1 frozen, BN folded = eval mode), CpuBackend(threads),
    the generated ITrainingSession, G uploaded as the output gradients, GhmGen.Training.SgdOptimizer (torch's SGD),
    UpdateWeights:
      ready          -> "SBS ready setup_ms=T trained_parameters=P ..."
      run            -> one timed step, "SBS ms=WALL cpu_ms=CPU loss=L loss_abs=A" (L = sum(G * map) of this
                        step's forward, before its update; A = sum |G * map|), plus the step's phases
                        forward_ms outputs_ms upload_ms backward_ms sgd_ms update_ms (see GHMGEN_PHASES)
      dump PATH      -> the ten maps of the last step's forward (after the warm-up: the first), float32 LE, cls_p3..cls_p7 then
                        reg_p3..reg_p7, each [B, C, h, w] row-major; "SBS ok floats=N"
      quit
    """
    h, w = args.size
    return [sbs.BENCH_EXE, "train-worker", "--framework", "ghmgen", "--model", args.model,
            "--size", f"{h}x{w}", "--batch", str(args.batch), "--threads", str(args.threads)]


# The ghmgen worker's per-step Stopwatch phases (answer field, label), printed as a breakdown after the table.
GHMGEN_PHASES = [("forward_ms", "forward"), ("outputs_ms", "download maps + loss"), ("upload_ms", "upload G"),
                 ("backward_ms", "backward (+ gradients to host)"), ("sgd_ms", "SGD step"),
                 ("update_ms", "UpdateWeights (refold + repack)")]


# ----------------------------------------------------------------------------------------------
# PyTorch eager training worker (own process)
# ----------------------------------------------------------------------------------------------

def seeded_loss_weights(batch: int, h: int, w: int):
    """G per head map (see the module docstring), as torch tensors in HEAD_OUTPUTS order."""
    import torch
    import seeded_weights as seeded
    weights = []
    for name, count in sbs.head_counts(h, w):
        channels = 720 if name.startswith("cls") else 36
        n = batch * count
        g = seeded.uniform(f"bench.train.G.{name}", n, -1.0 / n, 1.0 / n)
        weights.append(torch.from_numpy(g.reshape(batch, channels, -1)))
    return weights


def torch_train_worker(mode: str, name: str, batch: int, h: int, w: int, threads: int) -> int:
    if mode != "pytorch-eager":
        raise SystemExit(f"--worker {mode}: not pytorch-eager")
    t0 = time.perf_counter()
    import numpy as np
    import torch
    sys.path.insert(0, REFERENCE)
    import export_torchscript
    import seeded_weights as seeded

    torch.set_num_threads(threads)
    fn = export_torchscript.build_seeded(name, "train")  # eval-mode BN, stem/layer1 requires_grad=False
    trained = [p for p in fn.parameters() if p.requires_grad]
    x = torch.from_numpy(seeded.seeded_input((batch, 3, h, w)))
    weights = seeded_loss_weights(batch, h, w)
    optimizer = torch.optim.SGD(trained, lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    sbs.reply(f"ready setup_ms={(time.perf_counter() - t0) * 1e3:.1f} trained_parameters={len(trained)}")
    last = None
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line == "run":
            last = None
            c0 = time.process_time()
            s0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            outputs = fn(x)
            loss = (outputs[0] * weights[0].view_as(outputs[0])).sum()
            for o, g in zip(outputs[1:], weights[1:]):
                loss = loss + (o * g.view_as(o)).sum()
            loss.backward()
            optimizer.step()
            loss_value = float(loss)
            last = [o.detach() for o in outputs]
            wall = (time.perf_counter() - s0) * 1e3
            cpu = (time.process_time() - c0) * 1e3
            del outputs, loss
            with torch.no_grad():
                loss_abs = sum(float((o * g.view_as(o)).abs().sum()) for o, g in zip(last, weights))
            sbs.reply(f"ms={wall:.2f} cpu_ms={cpu:.1f} loss={loss_value!r} loss_abs={loss_abs!r}")
        elif line.startswith("dump "):
            flat = np.concatenate([t.numpy().astype(np.float32).ravel() for t in last])
            flat.astype("<f4").tofile(line[5:])
            sbs.reply(f"ok floats={flat.size}")
        elif line == "quit":
            break
        else:
            raise SystemExit(f"torch train worker: unknown command '{line}'")
    return 0


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

def worker_command(framework: str, args, torchscript_path: str) -> list[str]:
    h, w = args.size
    common = ["--model", args.model, "--size", f"{h}x{w}", "--batch", str(args.batch), "--threads", str(args.threads)]
    if framework == "torchsharp":
        return [sbs.TORCHSHARP_EXE, "train-worker", "--framework", "torchsharp", "--torchscript", torchscript_path,
                "--jit-warmups", str(TORCHSHARP_JIT_WARMUPS)] + common
    if framework == "ghmgen":
        cmd = ghmgen_train_worker_command(args)
        if cmd is None:
            raise SystemExit("side_by_side_train.py: there is no GhmGen training worker yet; fill in "
                             "ghmgen_train_worker_command() in bench/side_by_side_train.py, or leave ghmgen out of --frameworks")
        return cmd
    return [sys.executable, os.path.abspath(__file__), "--worker", framework] + common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="retinanet-ghm-r50-fpn")
    parser.add_argument("--size", type=sbs.parse_size, default=(512, 640))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frameworks", default=",".join(DEFAULT_FRAMEWORKS),
                        help="comma-separated subset of " + ",".join(ALL_FRAMEWORKS)
                             + " (default: all three)")
    parser.add_argument("--torchscript", help="TorchScript file for torchsharp (default "
                        "artifacts/torchscript/MODEL-train-bB-HxW.pt, exported if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-round framework order")
    parser.add_argument("--no-build", action="store_true", help="do not run dotnet build first")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 1 or args.batch < 1:
        parser.error("--threads, --rounds and --batch must be at least 1")
    h, w = args.size
    if args.worker:
        return torch_train_worker(args.worker, args.model, args.batch, h, w, args.threads)

    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = [f for f in frameworks if f not in ALL_FRAMEWORKS]
    if unknown or not frameworks:
        parser.error(f"--frameworks: unknown {unknown}" if unknown else "--frameworks is empty")
    reference = "ghmgen" if "ghmgen" in frameworks else frameworks[0]
    out_dir = os.path.join(ROOT, "artifacts", "side_by_side")
    os.makedirs(out_dir, exist_ok=True)
    torchscript_path = os.path.abspath(args.torchscript or os.path.join(
        ROOT, "artifacts", "torchscript", f"{args.model}-train-b{args.batch}-{h}x{w}.pt"))

    if "torchsharp" in frameworks and not os.path.exists(torchscript_path):
        print(f"# exporting {torchscript_path} (once)", flush=True)
        subprocess.run([sys.executable, os.path.join(REFERENCE, "export_torchscript.py"), args.model, torchscript_path,
                        "--size", f"{h}x{w}", "--mode", "train", "--batch", str(args.batch)], check=True, cwd=ROOT)
    if not args.no_build:
        if "torchsharp" in frameworks and not sbs.dotnet_build(sbs.TORCHSHARP_PROJECT):
            return 2
        if "ghmgen" in frameworks and not sbs.dotnet_build(sbs.BENCH_PROJECT):
            return 2

    started = datetime.datetime.now(datetime.timezone.utc)
    workers: dict[str, sbs.Worker] = {}
    steps = {f: [] for f in frameworks}  # per step: (ms, cpu_ms, loss, loss_abs, ghmgen phases)
    import numpy as np
    first_dumps, dumps = {}, {}

    def dump(worker, name):
        path = os.path.join(out_dir, name)
        worker.send(f"dump {path}")
        values = np.fromfile(path, dtype="<f4")
        os.remove(path)
        return values
    try:
        for f in frameworks:
            print(f"# starting {f}", flush=True)
            workers[f] = sbs.Worker(f, worker_command(f, args, torchscript_path), out_dir)
            print(f"#   ready after {workers[f].setup_ms / 1e3:.1f} s; warm-up step ...", flush=True)
            steps[f].append(step(workers[f]))
            print(f"#   warm-up {steps[f][0][0]:.0f} ms, loss {steps[f][0][2]:.9g}", flush=True)
            first_dumps[f] = dump(workers[f], f"train-{f}-first-outputs.f32")

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
                steps[f].append(step(workers[f]))
                line.append(f"{f} {steps[f][-1][0]:.0f}")
            print(f"# round {r + 1}/{args.rounds} (load {loads[-1]:.2f}): " + ", ".join(line), flush=True)
        loads.append(os.getloadavg()[0])
        peak_rss = {f: workers[f].memory_mb("VmHWM") for f in frameworks}
        rss_after = {f: workers[f].memory_mb("VmRSS") for f in frameworks}

        for f in frameworks:
            dumps[f] = dump(workers[f], f"train-{f}-outputs.f32")
    finally:
        for worker in workers.values():
            worker.close()

    # Guard: the first step's loss and forward maps (identical weights: they differ only by rounding). The last
    # forward's maps (after the same number of SGD steps) are informational: training amplifies rounding
    # differences step by step (GhmGen's Winograd rounds differently from libtorch's direct convolutions).
    counts = [(name, args.batch * c) for name, c in sbs.head_counts(h, w)]
    expected_floats = sum(c for _, c in counts)
    ref_loss, ref_abs = steps[reference][0][2], steps[reference][0][3]

    def compare(a, b):
        if a.size != expected_floats or b.size != expected_floats:
            return None, f"size mismatch {b.size} vs {a.size} (expected {expected_floats})"
        return sbs.compare(a, b, counts)

    guard, ok = {}, True
    for f in frameworks:
        if f == reference:
            continue
        loss_rel = abs(steps[f][0][2] - ref_loss) / max(ref_abs, 1e-30)
        out_worst, out_where = compare(first_dumps[reference], first_dumps[f])
        last_worst, last_where = compare(dumps[reference], dumps[f])
        passed = loss_rel <= LOSS_TOLERANCE and out_worst is not None and out_worst <= OUTPUT_TOLERANCE
        ok = ok and passed
        guard[f] = {"first_loss_rel": float(f"{loss_rel:.3g}"),
                    "first_outputs_worst_rel": None if out_worst is None else float(f"{out_worst:.3g}"), "output": out_where,
                    "last_outputs_worst_rel": None if last_worst is None else float(f"{last_worst:.3g}"), "last_output": last_where,
                    "pass": passed}

    # Informational, not part of the pass/fail: how far the peers are from each other, and the loss difference
    # step by step (training amplifies rounding differences, so these grow with the number of steps).
    peers = [f for f in frameworks if f != reference]
    peer_pairs = {}
    for i, a in enumerate(peers):
        for b in peers[i + 1:]:
            if dumps[a].size == expected_floats and dumps[b].size == expected_floats:
                worst, where = sbs.compare(dumps[a], dumps[b], counts)
                peer_pairs[f"{b} vs {a}"] = {"last_outputs_worst_rel": float(f"{worst:.3g}"), "output": where}
    loss_rel_per_step = {f: [float(f"{abs(sf[2] - sr[2]) / max(sr[3], 1e-30):.3g}") for sf, sr in zip(steps[f], steps[reference])]
                         for f in peers}

    rows = []
    ref_median = statistics.median(s[0] for s in steps[reference][1:])
    for f in frameworks:
        timed = steps[f][1:]
        med = statistics.median(s[0] for s in timed)
        rows.append({
            "framework": f, "median_ms": round(med, 1), "min_ms": round(min(s[0] for s in timed), 1),
            "max_ms": round(max(s[0] for s in timed), 1), "median_cpu_ms": round(statistics.median(s[1] for s in timed), 1),
            "warmup_ms": round(steps[f][0][0], 1), "setup_s": round(workers[f].setup_ms / 1e3, 1),
            "peak_rss_mb": round(peak_rss[f], 1), "rss_after_rounds_mb": round(rss_after[f], 1),
            f"{reference}_over_peer": round(ref_median / med, 3),
            f"{reference}_over_peer_peak_rss": round(peak_rss[reference] / peak_rss[f], 3),
            "phases_median_ms": ({key: round(statistics.median(s[4][key] for s in timed), 1) for key, _ in GHMGEN_PHASES}
                                 if timed and all(key in timed[0][4] for key, _ in GHMGEN_PHASES) else None),
            "times_ms": [round(s[0], 1) for s in timed], "losses": [s[2] for s in steps[f]],
        })

    print()
    print(f"{args.model} training step, batch {args.batch}, {h}x{w}, {args.threads} threads, {args.rounds} rounds round-robin "
          f"(shuffled order) after 1 warm-up step each; {started:%Y-%m-%d %H:%M} UTC; load average (1 min) per round "
          f"{min(loads):.2f}..{max(loads):.2f}")
    ratio, rss_ratio = f"{reference}/peer", f"{reference}/peer RSS"
    print(f"{'framework':<16}{'median ms':>11}{'min ms':>10}{'max ms':>10}{'med CPU ms':>12}{'peak RSS MB':>13}"
          f"{'RSS after MB':>14}{ratio:>14}{rss_ratio:>18}")
    for row in rows:
        print(f"{row['framework']:<16}{row['median_ms']:>11.1f}{row['min_ms']:>10.1f}{row['max_ms']:>10.1f}"
              f"{row['median_cpu_ms']:>12.1f}{row['peak_rss_mb']:>13.1f}{row['rss_after_rounds_mb']:>14.1f}"
              f"{row[f'{reference}_over_peer']:>14.3f}{row[f'{reference}_over_peer_peak_rss']:>18.3f}")
    for row in rows:
        if row["phases_median_ms"] is None:
            continue
        total = sum(row["phases_median_ms"].values())
        print(f"{row['framework']} step breakdown (median per phase over the rounds; Stopwatch inside the worker):")
        for key, label in GHMGEN_PHASES:
            v = row["phases_median_ms"][key]
            print(f"  {label:<34}{v:>10.1f} ms {100 * v / max(total, 1e-9):>6.1f}%")
    print(f"correctness guard against {reference} (first step, same weights: loss |diff| / sum|G*map|, tolerance "
          f"{LOSS_TOLERANCE:g}; forward maps max|diff| / max|{reference}| per map, worst of ten, tolerance {OUTPUT_TOLERANCE:g}):")
    for f, g in guard.items():
        print(f"  {f:<16}{'PASS' if g['pass'] else 'FAIL'}  first loss {g['first_loss_rel']}, "
              f"first outputs {g['first_outputs_worst_rel']} at {g['output']}; (informational) last outputs "
              f"{g['last_outputs_worst_rel']} at {g['last_output']}")
    for pair, g in peer_pairs.items():
        print(f"  (peers, informational) {pair}: last outputs {g['last_outputs_worst_rel']} at {g['output']}")
    for f, rel in loss_rel_per_step.items():
        print(f"  (informational) {f} loss vs {reference} per step (warm-up first), |diff| / sum|G*map|: "
              + " ".join(f"{v:.2g}" for v in rel))
    for row in rows:
        print(json.dumps({"framework": row["framework"], "median_ms": row["median_ms"], "peak_rss_mb": row["peak_rss_mb"],
                          "median_cpu_ms": row["median_cpu_ms"], "model": args.model, "size": f"{h}x{w}",
                          "batch": args.batch, "threads": args.threads, "rounds": args.rounds}))

    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    summary = {
        "model": args.model, "size": f"{h}x{w}", "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
        "step": {"optimizer": "SGD", "lr": LEARNING_RATE, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
                 "frozen": "backbone.conv1, backbone.bn1, backbone.layer1", "bn": "eval",
                 "loss": "sum(G * map), G = uniform('bench.train.G.' + map, n, -1/n, 1/n)"},
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "cpu": sbs.cpu_model(), "cores": os.cpu_count(),
        "load_avg_1min": [round(v, 2) for v in loads], "round_orders": orders, "torch": torch_version,
        "torchsharp": (f"{sbs.TORCHSHARP_VERSION} (libtorch {workers['torchsharp'].ready.get('libtorch')})"
                       if "torchsharp" in workers else None),
        "python": platform.python_version(), "reference": reference, "results": rows, "guard": guard, "guard_pass": ok,
        "peer_pairs": peer_pairs, "loss_rel_per_step": loss_rel_per_step,
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    summary_path = os.path.join(out_dir, f"train-{args.model}-b{args.batch}-{h}x{w}.json")
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    print(f"# summary written to {os.path.relpath(summary_path, ROOT)}")
    return 0 if ok else 1


def step(worker: "sbs.Worker") -> tuple[float, float, float, float, dict]:
    """(ms, cpu_ms, loss, loss_abs, phases): phases are the GHMGEN_PHASES fields the worker reported (ghmgen only)."""
    answer = worker.send("run")
    phases = {key: float(answer[key]) for key, _ in GHMGEN_PHASES if key in answer}
    return float(answer["ms"]), float(answer["cpu_ms"]), float(answer["loss"]), float(answer["loss_abs"]), phases


if __name__ == "__main__":
    sys.exit(main())
