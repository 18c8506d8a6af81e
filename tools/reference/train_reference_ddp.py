#!/usr/bin/python3
"""Two iterations of mmdetection's GHM training loop under PyTorch's distributed semantics with
2 ranks x 1 image, for GhmGen's `mpirun -n 2 ghm train` test.

    /usr/bin/python3 tools/reference/train_reference_ddp.py [OUT_DIR]

OUT_DIR defaults to tests/GhmGen.Distributed.Tests/Fixtures. Writes train_ddp_reference.json
there (< 1 MB). Everything except the points below is train_reference.py's run (imported, not
copied): the same four-image dataset (tests/GhmGen.Models.Tests/Fixtures/Training, written by
train_reference.py), pipeline, targets, seeded R-50, GHM-C/GHM-R, clip and SGD.

What 2 ranks change (mmdetection v2 with MMDistributedDataParallel, broadcast_buffers=False):
  data      DistributedSampler(shuffle=False) over the json order: rank r takes indices[r::2], so
            iteration i gives rank 0 image 2i and rank 1 image 2i+1, each as a batch of one
            (padded to its own pad_shape only; here the pairs have the same size anyway).
  loss      each rank runs GHM-C/GHM-R over its own image: its own valid count (tot), its own
            bins, and its own persistent acc_sum (GHM's acc_sum is a plain tensor attribute, not
            a registered buffer, and DDP does not broadcast buffers in mmdetection; each rank's
            acc_sum starts from the same zeros). Rank 0's acc_sum is the one in the network state
            (the checkpoint); rank 1's is a separate copy.
  gradient  each rank backpropagates its own loss; DDP divides every gradient by the world size
            and all-reduces (sums) them: here rank 1's gradient is accumulated onto rank 0's and
            the sum halved (exactly the same for 2 ranks: halving is exact). Then clip_grad_norm_
            on the averaged gradient (the same on both ranks) and one SGD step.
  log       _parse_losses all-reduces every logged loss and divides by the world size: the
            logged loss_cls / loss_bbox / loss are the mean of the two ranks'.

Runs: float64 (the reference) and train_reference.FLOAT32_RUNS (three float32 runs with other
summation orders); the JSON has, per iteration, lr, the logged losses, grad_norm and both ranks'
acc_sum for every run, and per trained parameter the update W2 - W0 and the momentum buffer
summarised as train_reference.py does (norm, max |x|, seeded probe, 48 samples) with the float32
runs' spread. About 40 s on one thread.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ghm_losses  # noqa: E402
import seeded_weights as seeded  # noqa: E402
import train_reference as tr  # noqa: E402

DEFAULT_OUT = os.path.join(tr.ROOT, "tests", "GhmGen.Distributed.Tests", "Fixtures")
DATASET = os.path.join(tr.ROOT, "tests", "GhmGen.Models.Tests", "Fixtures", "Training")
RANKS = 2
BATCH_PER_RANK = 1


def rank_batches(infos):
    """Per iteration, per rank: (x, samples, targets) of that rank's shard."""
    out = []
    for it in range(tr.ITERATIONS):
        ranks = []
        for r in range(RANKS):
            picked = [infos[it * RANKS * BATCH_PER_RANK + r + RANKS * k] for k in range(BATCH_PER_RANK)]
            samples = [tr.pipeline(i) for i in picked]
            x = tr.collate(samples)
            sizes = ghm_losses.level_sizes(x.shape[2], x.shape[3])
            ranks.append((x, samples, tr.batch_targets(sizes, samples)))
        out.append(ranks)
    return out


def rank_loss(net, ghmc, ghmr, x, targets, dtype):
    cls_scores, bbox_preds = net(torch.from_numpy(x).to(dtype))
    level_cls, level_box = [], []
    for lvl, (cs, bp) in enumerate(zip(cls_scores, bbox_preds)):
        labels = targets["labels"][lvl].reshape(-1)
        lw = targets["label_weights"][lvl].reshape(-1)
        bt = targets["bbox_targets"][lvl].reshape(-1, 4).to(dtype)
        bw = targets["bbox_weights"][lvl].reshape(-1, 4).to(dtype)
        lc, _ = ghmc(cs.permute(0, 2, 3, 1).reshape(-1, tr.NUM_CLASSES), labels, lw)
        lb, _ = ghmr(bp.permute(0, 2, 3, 1).reshape(-1, 4), bt, bw)
        level_cls.append(lc)
        level_box.append(lb)
    return sum(level_cls), sum(level_box)


def train(batches, dtype, onednn: bool, threads: int) -> dict:
    t0 = time.time()
    torch.set_num_threads(threads)
    net, _ = tr.build_net(dtype)
    state0 = {k: v.detach().clone() for k, v in net.state_dict().items()}
    head = net.bbox_head
    acc = [(head.loss_cls.acc_sum, head.loss_bbox.acc_sum)]                      # rank 0: the net's buffers
    acc += [(head.loss_cls.acc_sum.clone(), head.loss_bbox.acc_sum.clone()) for _ in range(RANKS - 1)]
    losses = [(tr.GHMC(head.loss_cls.edges, c), tr.GHMR(head.loss_bbox.edges, b)) for c, b in acc]
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=tr.LR, momentum=tr.MOMENTUM, weight_decay=tr.WEIGHT_DECAY)
    iterations = []
    with torch.backends.mkldnn.flags(enabled=onednn):
        for it, ranks in enumerate(batches):
            lr = tr.warmup_lr(it)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            logged = []
            for r, (x, _, targets) in enumerate(ranks):
                ghmc, ghmr = losses[r]
                loss_cls, loss_bbox = rank_loss(net, ghmc, ghmr, x, targets, dtype)
                (loss_cls + loss_bbox).backward()       # accumulates: the sum of the ranks' gradients
                logged.append((float(loss_cls), float(loss_bbox)))
            with_grad = [p for p in params if p.requires_grad and p.grad is not None]
            for p in with_grad:
                p.grad.div_(RANKS)                       # DDP's mean
            grad_norm = torch.nn.utils.clip_grad_norm_(with_grad, tr.MAX_NORM, norm_type=2)
            opt.step()
            cls = sum(c for c, _ in logged) / RANKS
            box = sum(b for _, b in logged) / RANKS
            iterations.append({"lr": lr, "loss_cls": cls, "loss_bbox": box, "loss": cls + box, "grad_norm": float(grad_norm),
                               "rank_losses": [[c, b] for c, b in logged],
                               "acc_sum": [{"loss_cls": c.double().tolist(), "loss_bbox": b.double().tolist()} for c, b in acc]})
    state2 = net.state_dict()
    trained = [k for k, p in net.named_parameters() if p.requires_grad]
    name_of = {id(p): k for k, p in net.named_parameters()}
    update = {k: (state2[k].double() - state0[k].double()).reshape(-1).numpy().copy() for k in trained}
    momentum = {name_of[id(p)]: opt.state[p]["momentum_buffer"].double().reshape(-1).numpy().copy()
                for p in params if p.requires_grad}
    return {"iterations": iterations, "update": update, "momentum": momentum, "trained": trained, "seconds": time.time() - t0}


def main(argv: list) -> int:
    out_dir = argv[0] if argv else DEFAULT_OUT
    os.makedirs(out_dir, exist_ok=True)
    infos = tr.load_dataset(os.path.join(DATASET, "annotations.json"), os.path.join(DATASET, "images"))
    assert len(infos) == RANKS * BATCH_PER_RANK * tr.ITERATIONS, len(infos)
    batches = rank_batches(infos)

    r64 = train(batches, torch.float64, onednn=True, threads=1)
    runs = {name: train(batches, torch.float32, onednn=onednn, threads=threads) for name, onednn, threads in tr.FLOAT32_RUNS}
    r32 = runs["f32"]

    per_iteration = []
    for it in range(tr.ITERATIONS):
        rec = {"lr": r64["iterations"][it]["lr"],
               "images": [[s["file_name"] for s in samples] for _, samples, _ in batches[it]],
               "num_pos": [t["num_pos"] for _, _, t in batches[it]],
               "input_sha256": [tr.sha256_f32(x) for x, _, _ in batches[it]]}
        for name in ("loss_cls", "loss_bbox", "loss", "grad_norm"):
            rec[name] = {"f64": r64["iterations"][it][name], **{n: r["iterations"][it][name] for n, r in runs.items()}}
        rec["rank_losses"] = {"f64": r64["iterations"][it]["rank_losses"]}
        rec["acc_sum"] = {"f64": r64["iterations"][it]["acc_sum"], **{n: r["iterations"][it]["acc_sum"] for n, r in runs.items()}}
        per_iteration.append(rec)

    params = []
    for key in r64["trained"]:
        numel = r64["update"][key].size
        idx = tr.sample_indices(key, numel)
        probe = seeded.uniform(tr.PROBE_KEY_PREFIX + key, numel, -1.0, 1.0).astype(np.float64)
        entry = {"key": key, "numel": int(numel), "seeded_indices": idx[2 * tr.EDGE_SAMPLES:]}
        for what in ("update", "momentum"):
            diffs = {n: tr.difference(r[what][key], r64[what][key], probe) for n, r in runs.items()}
            entry[what] = {"f64": tr.summary(r64[what][key], probe, idx), "f32": tr.summary(r32[what][key], probe, idx),
                           "spread": {field: max(d[field] for d in diffs.values()) for field in diffs["f32"]}}
        params.append(entry)

    doc = {
        "about": "Two iterations of mmdetection's GHM training loop with 2 ranks x 1 image (DistributedSampler, per-rank "
                 "loss normalisation and GHM acc_sum, averaged gradients), R-50 with the seeded weights, on "
                 "tests/GhmGen.Models.Tests/Fixtures/Training; made by tools/reference/train_reference_ddp.py.",
        "model": tr.MODEL, "torch_version": torch.__version__,
        "settings": {"ranks": RANKS, "batch_per_rank": BATCH_PER_RANK, "iterations": tr.ITERATIONS, "scale": list(tr.SCALE),
                     "shuffle": False, "flip_prob": 0.0, "lr": tr.LR, "warmup_iters": tr.WARMUP_ITERS,
                     "warmup_ratio": tr.WARMUP_RATIO, "momentum": tr.MOMENTUM, "weight_decay": tr.WEIGHT_DECAY,
                     "grad_clip": tr.MAX_NORM},
        "float32_runs": [n for n, _, _ in tr.FLOAT32_RUNS],
        "iterations": per_iteration,
        "params": params,
    }
    path = os.path.join(out_dir, "train_ddp_reference.json")
    compact = {"separators": (",", ":")}
    lines = ["{"] + [f" {json.dumps(k)}:{json.dumps(v, **compact)}," for k, v in doc.items() if k != "params"]
    lines += [' "params":[', ",\n".join("  " + json.dumps(q, **compact) for q in params), " ]", "}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    for it, rec in enumerate(per_iteration, 1):
        print(f"iteration {it}: images {rec['images']} positives {rec['num_pos']} lr {rec['lr']!r}")
        for name in ("loss_cls", "loss_bbox", "grad_norm"):
            print(f"  {name}: f64 {rec[name]['f64']:.9g}  " + "  ".join(f"{n} {rec[name][n]:.9g}" for n, _, _ in tr.FLOAT32_RUNS))
    print("seconds", json.dumps({"f64": round(r64["seconds"], 1), **{n: round(r["seconds"], 1) for n, r in runs.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
