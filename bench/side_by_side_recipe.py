#!/usr/bin/python3
"""Recipe-level training throughput: `ghm train` against PyTorch 1.13 running the same recipe, one run.

    /usr/bin/python3 bench/side_by_side_recipe.py [--iters 8] [--skip 2] [--scale 640x512] [--batch 2]
        [--threads 2] [--images 24] [--frameworks ghmgen,pytorch] [--no-build]

What runs (issue 12 item 8):
  data     `ghm dataset synth --train-images IMAGES --min-side 512 --max-side 640` (seed 0) into
           artifacts/recipe/synth, its four category names renamed to COCO classes (person, bicycle,
           car, motorcycle: the labels of an 80-class model follow COCO names, mmdetection's rule) in
           instances_train_coco.json. Both frameworks read the same PNGs in json order, batches of
           BATCH, no shuffle, no flip, resized to fit --scale (mmcv imrescale), normalised, padded to 32.
  ghmgen   `ghm train --model retinanet-ghm-r50-fpn --scale S --batch B --max-iters SKIP+ITERS
           --log-interval 1 --flip-prob 0 --no-shuffle --threads T --device cpu` (apps/GhmGen.Cli):
           the whole Trainer loop (background data loading, targets, GHM-C/GHM-R, backward, gradient
           clipping at 35, SGD with momentum and weight decay, warm-up lr, the checkpoint at the end).
           Per-iteration times: the "time" field of each line of WORK/log.json.
  pytorch  this script --worker pytorch: tools/reference/train_reference.py's recipe at float32 with
           oneDNN and torch.set_num_threads(T): its CocoDataset filters, pipeline, anchor targets,
           GHM-C / GHM-R (mmdetection's per-bin loops) on tools/reference/model.py with the seeded
           weights, norm_eval and frozen_stages=1, loss.backward(), clip_grad_norm_(35), torch SGD.
           Data loading runs in the timed loop on the main thread (mmdetection would use DataLoader
           workers), so its time is reported separately and the table also gives the iteration
           time without it.
  Both start from their own initialisation (ghm: mmdetection's init; PyTorch: the seeded weights);
  the work per iteration does not depend on the weight values.

Each framework runs alone, one after the other (ghmgen first), as a child process; its peak RSS is
the child's ru_maxrss (os.wait4) and its CPU time the child's user + system time. The first SKIP
iterations (warm-up: first-use allocations, JIT, oneDNN primitive creation) are left out of the
medians. The load average is recorded before and after each run (the machine is shared).
Prints a table and one JSON line, also written to artifacts/recipe/recipe-SCALE-bB.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REFERENCE = os.path.join(ROOT, "tools", "reference")
GHM = os.path.join(ROOT, "apps", "GhmGen.Cli", "bin", "Release", "net10.0", "ghm")
MODEL = "retinanet-ghm-r50-fpn"
COCO_NAMES = {"circle": "person", "square": "bicycle", "triangle": "car", "star": "motorcycle"}


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_child(cmd: list, log_path: str) -> dict:
    """Runs cmd, stdout+stderr to log_path; returns wall seconds, CPU seconds and peak RSS (MB) of the child."""
    load0 = load_average()
    t0 = time.time()
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(log_path) as f:
            sys.stderr.write(f.read()[-4000:])
        raise SystemExit(f"{cmd[0]} exited {code}; log {log_path}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024.0,
            "load_before": load0, "load_after": load_average()}


def make_dataset(out: str, images: int) -> tuple:
    ann = os.path.join(out, "annotations", "instances_train_coco.json")
    if not os.path.exists(ann):
        if os.path.exists(out):
            shutil.rmtree(out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.check_call([GHM, "dataset", "synth", "--out", out, "--train-images", str(images), "--val-images", "1",
                               "--min-side", "512", "--max-side", "640", "--seed", "0"])
        with open(os.path.join(out, "annotations", "instances_train.json")) as f:
            coco = json.load(f)
        for c in coco["categories"]:
            c["name"] = COCO_NAMES[c["name"]]
        with open(ann, "w") as f:
            json.dump(coco, f)
    return ann, os.path.join(out, "train")


# ------------------------------------------------------------------ the PyTorch worker

def pytorch_worker(args) -> int:
    sys.path.insert(0, REFERENCE)
    import torch
    import ghm_losses
    import train_reference as tr

    tr.SCALE = parse_scale(args.scale)
    torch.set_num_threads(args.threads)
    infos = tr.load_dataset(args.ann, args.images_dir)
    net, _ = tr.build_net(torch.float32)
    head = net.bbox_head
    ghmc = tr.GHMC(head.loss_cls.edges, head.loss_cls.acc_sum)
    ghmr = tr.GHMR(head.loss_bbox.edges, head.loss_bbox.acc_sum)
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=tr.LR, momentum=tr.MOMENTUM, weight_decay=tr.WEIGHT_DECAY)
    warmup = 500
    records = []
    per_epoch = len(infos) // args.batch
    for it in range(args.total):
        t0 = time.time()
        first = (it % per_epoch) * args.batch
        samples = [tr.pipeline(info) for info in infos[first:first + args.batch]]
        x_np = tr.collate(samples)
        sizes = ghm_losses.level_sizes(x_np.shape[2], x_np.shape[3])
        targets = tr.batch_targets(sizes, samples)
        t1 = time.time()
        lr = tr.LR * (1 - (1 - it / warmup) * (1 - tr.WARMUP_RATIO))   # mmcv linear warm-up over 500 iterations
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        cls_scores, bbox_preds = net(torch.from_numpy(x_np))
        loss_cls, loss_bbox = 0, 0
        for lvl, (cs, bp) in enumerate(zip(cls_scores, bbox_preds)):
            lc, _ = ghmc(cs.permute(0, 2, 3, 1).reshape(-1, tr.NUM_CLASSES), targets["labels"][lvl].reshape(-1),
                         targets["label_weights"][lvl].reshape(-1))
            lb, _ = ghmr(bp.permute(0, 2, 3, 1).reshape(-1, 4), targets["bbox_targets"][lvl].reshape(-1, 4),
                         targets["bbox_weights"][lvl].reshape(-1, 4))
            loss_cls, loss_bbox = loss_cls + lc, loss_bbox + lb
        loss = loss_cls + loss_bbox
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.requires_grad and p.grad is not None], tr.MAX_NORM)
        opt.step()
        loss_value = float(loss)
        t2 = time.time()
        records.append({"iter": it + 1, "time": t2 - t0, "data_time": t1 - t0, "loss": loss_value,
                        "grad_norm": float(grad_norm), "shape": list(x_np.shape)})
        print(json.dumps(records[-1]), flush=True)
    with open(args.out_json, "w") as f:
        json.dump(records, f)
    return 0


# ------------------------------------------------------------------ driver

def parse_scale(text: str) -> tuple:
    w, h = text.lower().split("x")
    return int(w), int(h)


def median(values):
    return statistics.median(values) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=8, help="timed iterations per framework (after --skip)")
    ap.add_argument("--skip", type=int, default=2, help="warm-up iterations left out of the medians")
    ap.add_argument("--scale", default="640x512")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=24, help="training images of the synthetic dataset")
    ap.add_argument("--frameworks", default="ghmgen,pytorch")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--worker", choices=["pytorch"])
    ap.add_argument("--ann")
    ap.add_argument("--images-dir")
    ap.add_argument("--total", type=int)
    ap.add_argument("--out-json")
    args = ap.parse_args()
    if args.worker:
        return pytorch_worker(args)

    art = os.path.join(ROOT, "artifacts", "recipe")
    os.makedirs(art, exist_ok=True)
    if not args.no_build:
        subprocess.check_call(["dotnet", "build", os.path.join(ROOT, "apps", "GhmGen.Cli"), "-c", "Release", "--nologo", "-v", "q"])
    ann, images_dir = make_dataset(os.path.join(art, "synth"), args.images)
    total = args.skip + args.iters
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results = {}
    for fw in args.frameworks.split(","):
        if fw == "ghmgen":
            work = os.path.join(art, "work")
            if os.path.exists(work):
                shutil.rmtree(work)
            cmd = [GHM, "train", "--model", MODEL, "--train-ann", ann, "--train-images", images_dir, "--work-dir", work,
                   "--scale", args.scale, "--batch", str(args.batch), "--max-iters", str(total), "--log-interval", "1",
                   "--flip-prob", "0", "--no-shuffle", "--threads", str(args.threads), "--device", "cpu"]
            usage = run_child(cmd, os.path.join(art, "ghmgen.log"))
            with open(os.path.join(work, "log.json")) as f:
                lines = [json.loads(line) for line in f if line.strip()]
            iters = [r for r in lines if r.get("mode") == "train"]
            times = [r["time"] for r in iters]
            data = [r.get("data_time", 0.0) for r in iters]
        else:
            out_json = os.path.join(art, "pytorch.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "pytorch", "--ann", ann, "--images-dir", images_dir,
                   "--scale", args.scale, "--batch", str(args.batch), "--threads", str(args.threads), "--total", str(total),
                   "--out-json", out_json]
            usage = run_child(cmd, os.path.join(art, "pytorch.log"))
            with open(out_json) as f:
                iters = json.load(f)
            times = [r["time"] for r in iters]
            data = [r["data_time"] for r in iters]
        if len(times) != total:
            raise SystemExit(f"{fw}: {len(times)} iterations logged, expected {total}")
        timed, timed_data = times[args.skip:], data[args.skip:]
        results[fw] = {"framework": fw, "median_s": median(timed), "median_data_s": median(timed_data),
                       "median_compute_s": median([t - d for t, d in zip(timed, timed_data)]),
                       "images_per_s": args.batch / median(timed), "times_s": times, "data_times_s": data,
                       "losses": [r.get("loss") for r in iters], **usage}

    ref = results.get("pytorch")
    print(f"{MODEL} `ghm train` recipe vs PyTorch 1.13, batch {args.batch}, --scale {args.scale}, {args.threads} threads, "
          f"{args.iters} timed iterations after {args.skip}; {started}")
    print(f"{'framework':<10}{'median s/iter':>14}{'data s':>9}{'w/o data s':>12}{'images/s':>10}{'peak RSS MB':>13}"
          f"{'CPU s':>8}{'wall s':>8}{'load':>12}{'time/PyTorch':>14}{'RSS/PyTorch':>13}")
    for fw, r in results.items():
        rt = f"{r['median_s'] / ref['median_s']:.3f}" if ref else "-"
        rm = f"{r['peak_rss_mb'] / ref['peak_rss_mb']:.3f}" if ref else "-"
        print(f"{fw:<10}{r['median_s']:>14.3f}{r['median_data_s']:>9.3f}{r['median_compute_s']:>12.3f}{r['images_per_s']:>10.3f}"
              f"{r['peak_rss_mb']:>13.1f}{r['cpu_s']:>8.1f}{r['wall_s']:>8.1f}{r['load_before']:>6.2f}-{r['load_after']:<5.2f}{rt:>14}{rm:>13}")
    for fw, r in results.items():
        print(f"  {fw} per-iteration s: " + " ".join(f"{t:.2f}" for t in r["times_s"]))
    summary = {"model": MODEL, "scale": args.scale, "batch": args.batch, "threads": args.threads, "iters": args.iters,
               "skip": args.skip, "started": started, "results": list(results.values())}
    line = json.dumps(summary)
    print(line)
    with open(os.path.join(art, f"recipe-{args.scale}-b{args.batch}.json"), "w") as f:
        f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
