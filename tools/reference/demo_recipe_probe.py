#!/usr/bin/python3
"""Probe training recipes for `ghm demo` in PyTorch: train the demo detector, evaluate COCO AP.

    /usr/bin/python3 tools/reference/demo_recipe_probe.py --data DIR [options]

DIR is a dataset written by `ghm dataset synth --out DIR` (or the `data` folder `ghm demo`
writes): DIR/annotations/instances_{train,val}.json, DIR/train/*.png, DIR/val/*.png.

What runs, with our Trainer's (mmdetection v2) semantics, written out here (mmdetection is not
installed; the pieces come from train_reference.py, ghm_losses.py and postprocess.py):

  data      labels in the json `categories` order; images with no annotation dropped; GroupSampler
            order (aspect groups w/h > 1, each shuffled and padded to a multiple of the batch,
            batches shuffled), a fresh torch-seeded permutation per epoch.
  pipeline  keep-ratio resize to fit --scale (cv2 INTER_LINEAR), horizontal flip with p 0.5,
            normalise (ImageNet mean/std, RGB), pad to 32, collate zero-padded to the batch max.
  targets   mmdet AnchorGenerator (octave base scale --anchor-scale, 3 scales, ratios 0.5/1/2,
            strides 8..128), valid flags from each image's pad shape, MaxIoUAssigner (0.5 / 0.4,
            low-quality matches), bbox2delta (means 0, stds 1).
  loss      GHM-C (30 bins, momentum 0.75) + GHM-R (mu 0.02, 10 bins, momentum 0.7, weight 10),
            per level, acc_sum persistent (train_reference.GHMC/GHMR).
  model     demo_model's half-width ResNet-18 (--width), FPN (--channels), RetinaHead
            (--channels, --convs), 4 classes; initialised as DemoRecipe.Initialize: backbone
            Kaiming fan_out, BN 1/0 with zero_init_residual (bn2 of each block 0), neck Xavier
            uniform, head N(0, 0.01) but cls_convs/reg_convs Kaiming N(0, 2/fan_in) (--head-init),
            retina_cls bias -log(99). --bn eval: every BN on its running statistics (norm_eval);
            --bn train: BN normalises with batch statistics and updates running ones.
  optimiser SGD momentum 0.9, wd 1e-4 on every parameter, clip_grad_norm_ 35, linear warm-up from
            ratio 0.001 over --warmup iterations, then --schedule step (x0.1 at --steps epochs) or
            cosine (per iteration to 0 at the end).
  test      resize as in training, no flip, score > 0.05, top 1000 per level, delta2bbox (clamped
            to the resized image), rescale, batched NMS 0.5, 100 per image; COCO results json;
            scored by `ghm eval --json` (our pycocotools equivalent).

Extras for diagnosis: --loss focal (sigmoid focal 2/0.25 + L1, both over num_pos, the RetinaNet
baseline), --head-norm bn (BN after the FPN convs and per-level BN in the head towers: not in the C#
model), --eval-train N (train and score on the first N train images: an overfitting check),
--train-eval N (also score the first N train images). Augmented copies are precomputed (resize and
normalise once per image; the flip mirrors the normalised tensor, which equals flip-then-normalise).

Prints one JSON line per evaluation (`RESULT {...}`) with iterations, train seconds, load, AP.
Run with 1 torch thread (the default); about 7-12 GHM iterations/s at 192x160, batch 2 on one core.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_model  # noqa: E402
import ghm_losses  # noqa: E402
import imaging  # noqa: E402
import model as reference_model  # noqa: E402
import train_reference  # noqa: E402
from postprocess import delta2bbox  # noqa: E402
from train_reference import GHMC, GHMR  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
STRIDES = [8, 16, 32, 64, 128]
A = 9


# ------------------------------------------------------------------ data

def load_split(data_dir: str, split: str):
    ann = os.path.join(data_dir, "annotations", f"instances_{split}.json")
    with open(ann) as f:
        coco = json.load(f)
    cat_ids = [c["id"] for c in coco["categories"]]
    cat2label = {c: i for i, c in enumerate(cat_ids)}
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    infos = []
    for img in coco["images"]:
        gt, labels = [], []
        for a in by_image.get(img["id"], []):
            x, y, w, h = a["bbox"]
            if a.get("ignore", False) or a.get("iscrowd", 0) or a["area"] <= 0 or w < 1 or h < 1:
                continue
            gt.append([x, y, x + w, y + h])
            labels.append(cat2label[a["category_id"]])
        infos.append({"id": img["id"], "path": os.path.join(data_dir, split, img["file_name"]),
                      "width": img["width"], "height": img["height"],
                      "gt": np.array(gt, np.float32).reshape(-1, 4), "labels": np.array(labels, np.int64)})
    return ann, cat_ids, infos


def prepare(info, scale):
    """Resized + normalised (unpadded) float32 HWC image, boxes scaled and clipped, scale factors."""
    bgr = cv2.imread(info["path"], cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    nw, nh = imaging.keep_ratio_size(w, h, scale)
    resized = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    sf = np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
    boxes = info["gt"] * sf
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, nw)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, nh)
    norm = imaging.imnormalize(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), MEAN, STD)
    return {"img": np.ascontiguousarray(norm.transpose(2, 0, 1)), "boxes": boxes, "labels": info["labels"],
            "shape": (nh, nw), "sf": sf, "id": info["id"], "ori": (h, w)}


def pad32(n):
    return -(-n // 32) * 32


def collate(imgs):
    hmax = max(pad32(i.shape[1]) for i in imgs)
    wmax = max(pad32(i.shape[2]) for i in imgs)
    x = np.zeros((len(imgs), 3, hmax, wmax), np.float32)
    for n, i in enumerate(imgs):
        x[n, :, :i.shape[1], :i.shape[2]] = i
    return torch.from_numpy(x)


def group_batches(infos, batch, gen):
    """mmdet GroupSampler: per aspect group shuffle + pad to a batch multiple; batches shuffled."""
    groups = [[i for i, v in enumerate(infos) if not v["width"] / v["height"] > 1],
              [i for i, v in enumerate(infos) if v["width"] / v["height"] > 1]]
    batches = []
    for g in groups:
        if not g:
            continue
        idx = [g[k] for k in torch.randperm(len(g), generator=gen).tolist()]
        extra = (-len(idx)) % batch
        idx += [idx[k] for k in torch.randint(len(idx), (extra,), generator=gen).tolist()]
        batches += [idx[k:k + batch] for k in range(0, len(idx), batch)]
    return [batches[k] for k in torch.randperm(len(batches), generator=gen).tolist()]


# ------------------------------------------------------------------ anchors and targets

def base_anchors(stride, octave_base):
    scales = torch.tensor([2 ** (i / 3) for i in range(3)]) * octave_base
    ratios = torch.tensor([0.5, 1.0, 2.0])
    hr = torch.sqrt(ratios)
    wr = 1 / hr
    ws = (stride * wr[:, None] * scales[None, :]).view(-1)
    hs = (stride * hr[:, None] * scales[None, :]).view(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


def grid_anchors(stride, fh, fw, octave_base):
    base = base_anchors(stride, octave_base)
    sx = torch.arange(0, fw) * stride
    sy = torch.arange(0, fh) * stride
    xx = sx.repeat(len(sy))
    yy = sy.view(-1, 1).repeat(1, len(sx)).view(-1)
    shifts = torch.stack([xx, yy, xx, yy], dim=-1).float()
    return (base[None] + shifts[:, None]).view(-1, 4)


_anchor_cache = {}


def anchors_for(sizes, octave_base):
    key = (tuple(sizes), octave_base)
    if key not in _anchor_cache:
        per = [grid_anchors(s, h, w, octave_base) for s, (h, w) in zip(STRIDES, sizes)]
        _anchor_cache[key] = (torch.cat(per), [p.size(0) for p in per], per)
    return _anchor_cache[key]


def valid_flags(sizes, pad_shape):
    flags = []
    for stride, (fh, fw) in zip(STRIDES, sizes):
        vh = min(int(math.ceil(pad_shape[0] / stride)), fh)
        vw = min(int(math.ceil(pad_shape[1] / stride)), fw)
        vy = torch.zeros(fh, dtype=torch.bool)
        vx = torch.zeros(fw, dtype=torch.bool)
        vy[:vh] = True
        vx[:vw] = True
        cell = (vy[:, None] & vx[None, :]).reshape(-1)
        flags.append(cell[:, None].expand(cell.numel(), A).reshape(-1))
    return torch.cat(flags)


def image_targets(anchors, flags, gt, gl, num_classes):
    """train_reference.image_targets (mmdetection's targets over the valid anchors) without its counts."""
    return train_reference.image_targets(anchors, flags, gt, gl, num_classes)[:4]


# ------------------------------------------------------------------ model

class ConvBN(torch.nn.Module):
    """mmcv ConvModule with norm_cfg BN: conv (no bias) -> BN -> optional ReLU."""

    def __init__(self, conv_module):
        super().__init__()
        c = conv_module.conv
        self.conv = torch.nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, bias=False)
        self.bn = torch.nn.BatchNorm2d(c.out_channels)
        self.relu = conv_module.relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Detector(torch.nn.Module):
    """head_norm none: demo_model's layout; bn: BN after every FPN conv and, per pyramid level
    (own statistics and affine per level, convs shared), after every head tower conv."""

    def __init__(self, width, channels, convs, classes, head_norm="none"):
        super().__init__()
        self.backbone = demo_model.ResNet18(width)
        self.neck = reference_model.FPN(in_channels=(2 * width, 4 * width, 8 * width), out_channels=channels)
        self.bbox_head = reference_model.RetinaHead(channels, channels, convs, num_classes=classes)
        self.head_norm = head_norm
        if head_norm == "bn":
            for lst in (self.neck.lateral_convs, self.neck.fpn_convs):
                for i in range(len(lst)):
                    lst[i] = ConvBN(lst[i])
            for lst in (self.bbox_head.cls_convs, self.bbox_head.reg_convs):
                for m in lst:
                    m.conv.bias = None
            self.cls_bns = torch.nn.ModuleList([torch.nn.ModuleList([torch.nn.BatchNorm2d(channels) for _ in range(convs)])
                                                for _ in range(5)])
            self.reg_bns = torch.nn.ModuleList([torch.nn.ModuleList([torch.nn.BatchNorm2d(channels) for _ in range(convs)])
                                                for _ in range(5)])

    def forward(self, x):
        feats = self.neck(self.backbone(x))
        if self.head_norm != "bn":
            return self.bbox_head(feats)
        h = self.bbox_head
        cls_scores, bbox_preds = [], []
        for l, f in enumerate(feats):
            c, r = f, f
            for i, m in enumerate(h.cls_convs):
                c = F.relu(self.cls_bns[l][i](m.conv(c)))
            for i, m in enumerate(h.reg_convs):
                r = F.relu(self.reg_bns[l][i](m.conv(r)))
            cls_scores.append(h.retina_cls(c))
            bbox_preds.append(h.retina_reg(r))
        return cls_scores, bbox_preds


def initialise(net, head_init):
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            if name.startswith("backbone."):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif name.startswith("neck."):
                torch.nn.init.xavier_uniform_(m.weight)
            else:
                tower = ".cls_convs." in name or ".reg_convs." in name
                if tower and head_init == "kaiming":
                    fan_in = m.weight[0].numel()
                    torch.nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_in))
                else:
                    torch.nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                torch.nn.init.constant_(m.bias, -math.log(99) if name.endswith("retina_cls") else 0.0)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)
    for name, m in net.backbone.named_modules():
        if isinstance(m, demo_model.BasicBlock):
            torch.nn.init.zeros_(m.bn2.weight)      # zero_init_residual


def set_train(net, bn_mode):
    net.train()
    if bn_mode == "eval":
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


# ------------------------------------------------------------------ test

@torch.no_grad()
def detect(net, val, num_classes, octave_base, cat_ids):
    net.eval()
    results = []
    for s in val:
        x = collate([s["img"]])
        cls, reg = net(x)
        sizes = [tuple(c.shape[2:]) for c in cls]
        _, _, per = anchors_for(sizes, octave_base)
        boxes_l, scores_l, labels_l = [], [], []
        for c, r, anchors in zip(cls, reg, per):
            scores = c[0].permute(1, 2, 0).reshape(-1, num_classes).sigmoid()
            deltas = r[0].permute(1, 2, 0).reshape(-1, 4)
            valid = scores > 0.05
            sc = scores[valid]
            idx = torch.nonzero(valid)
            k = min(1000, idx.size(0))
            sc, order = sc.sort(descending=True, stable=True)
            sc = sc[:k]
            ai, lb = idx[order[:k]].unbind(dim=1)
            boxes_l.append(delta2bbox(anchors[ai], deltas[ai], s["shape"]))
            scores_l.append(sc)
            labels_l.append(lb)
        boxes = torch.cat(boxes_l) / torch.from_numpy(s["sf"])
        scores, labels = torch.cat(scores_l), torch.cat(labels_l)
        keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = torchvision.ops.batched_nms(boxes, scores, labels, 0.5)[:100]
        for b, sc, lb in zip(boxes[keep].tolist(), scores[keep].tolist(), labels[keep].tolist()):
            results.append({"image_id": s["id"], "category_id": cat_ids[lb],
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": sc})
    return results


def evaluate(results, ann, path):
    with open(path, "w") as f:
        json.dump(results, f)
    cmd = ["dotnet", "run", "--project", os.path.join(ROOT, "apps", "GhmGen.Cli"), "-c", "Release", "--no-build", "--",
           "eval", "--ann", ann, "--results", path, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr + out.stdout)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ main

def lr_at(it, epoch, total_iters, args):
    if args.schedule == "cosine":
        regular = args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * it / total_iters))
    else:
        regular = args.lr * 0.1 ** sum(1 for s in args.steps if epoch >= s)
    if it < args.warmup:
        return regular * (1 - (1 - it / args.warmup) * (1 - args.warmup_ratio))
    return regular


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="/tmp/demo_probe")
    p.add_argument("--bn", choices=["train", "eval"], default="eval")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations (0: all epochs)")
    p.add_argument("--scale", default="192x160")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--warmup-ratio", type=float, default=0.001)
    p.add_argument("--schedule", choices=["step", "cosine"], default="step")
    p.add_argument("--steps", default="", help="comma-separated epochs (0-based) of x0.1; default: epochs-2,epochs-1")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--convs", type=int, default=2)
    p.add_argument("--anchor-scale", type=float, default=2.0)
    p.add_argument("--head-init", choices=["kaiming", "mmdet"], default="kaiming")
    p.add_argument("--train-images", type=int, default=0, help="use the first N train images (0: all)")
    p.add_argument("--flip", type=float, default=0.5)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--clip", type=float, default=35.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-at", default="", help="comma-separated epochs (1-based) after which to evaluate too")
    p.add_argument("--loss", choices=["ghm", "focal"], default="ghm", help="focal: sigmoid focal (2, 0.25) + L1, both / num_pos")
    p.add_argument("--eval-train", type=int, default=0, help="evaluate on the first N train images instead of val (overfit check)")
    p.add_argument("--train-eval", type=int, default=0, help="also evaluate on the first N train images (no flip)")
    p.add_argument("--head-norm", choices=["none", "bn"], default="none",
                   help="bn: BN after the FPN convs and per-level BN after the head tower convs (follows --bn)")
    p.add_argument("--optim", choices=["sgd", "adamw"], default="sgd", help="adamw: torch.optim.AdamW (betas 0.9/0.999, eps 1e-8), --wd its decoupled weight decay")
    p.add_argument("--load", default="", help="state dict (.pt, torch.save) whose keys with the --load-prefix prefixes replace the initial weights")
    p.add_argument("--load-prefix", default="backbone.", help="comma-separated key prefixes --load copies (default: the backbone)")
    p.add_argument("--save", default="", help="torch.save the trained state dict here at the end")
    p.add_argument("--tag", default="run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    scale = tuple(int(v) for v in args.scale.split("x"))
    if args.steps:
        args.steps = [int(v) for v in args.steps.split(",")]
    else:
        args.steps = [args.epochs - 2, args.epochs - 1] if args.epochs >= 3 else []
    eval_at = {int(v) for v in args.eval_at.split(",") if v} | {args.epochs}
    os.makedirs(args.out, exist_ok=True)

    _, cat_ids, train_infos = load_split(args.data, "train")
    val_ann, _, val_infos = load_split(args.data, "val")
    train_infos = [i for i in train_infos if len(i["gt"])]
    if args.train_images:
        train_infos = train_infos[:args.train_images]
    classes = len(cat_ids)
    train = [prepare(i, scale) for i in train_infos]
    for s in train:   # flipped copies (mmdet RandomFlip horizontal: x1' = w - x2)
        s["img_f"] = np.ascontiguousarray(s["img"][:, :, ::-1])
        b = s["boxes"].copy()
        w = s["shape"][1]
        b[:, 0], b[:, 2] = w - s["boxes"][:, 2], w - s["boxes"][:, 0]
        s["boxes_f"] = b
    val = [prepare(i, scale) for i in val_infos]
    if args.eval_train or args.train_eval:
        with open(os.path.join(args.data, "annotations", "instances_train.json")) as f:
            coco = json.load(f)
        n_tr = args.eval_train or args.train_eval
        keep = {i["id"] for i in train_infos[:n_tr]}
        coco["images"] = [i for i in coco["images"] if i["id"] in keep]
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
        tr_ann = os.path.join(args.out, f"{args.tag}_train_gt.json")
        with open(tr_ann, "w") as f:
            json.dump(coco, f)
        tr_val = [prepare(i, scale) for i in train_infos[:n_tr]]
        if args.eval_train:
            val_ann, val = tr_ann, tr_val

    net = Detector(args.width, args.channels, args.convs, classes, args.head_norm)
    initialise(net, args.head_init)
    if args.load:
        prefixes = tuple(args.load_prefix.split(","))
        loaded = {k: v for k, v in torch.load(args.load).items() if k.startswith(prefixes)}
        missing = net.load_state_dict(loaded, strict=False)
        print(f"{args.tag}: loaded {len(loaded)} tensors from {args.load} ({len(missing.missing_keys)} keys keep their initial values)", flush=True)
    head = net.bbox_head
    ghmc = GHMC(head.loss_cls.edges, head.loss_cls.acc_sum)
    ghmr = GHMR(head.loss_bbox.edges, head.loss_bbox.acc_sum)
    params = [p_ for p_ in net.parameters()]
    if args.optim == "adamw":
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)
    else:
        opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.wd)
    gen = torch.Generator().manual_seed(args.seed)
    per_epoch = len(group_batches(train_infos, args.batch, torch.Generator().manual_seed(0)))
    total = per_epoch * args.epochs
    if args.max_iters:
        total = min(total, args.max_iters)
    print(f"{args.tag}: {len(train)} train images, {per_epoch} it/epoch, {total} iterations, params "
          f"{sum(p_.numel() for p_ in params):,}", flush=True)
    it, t_train, t0 = 0, 0.0, time.time()
    for epoch in range(args.epochs):
        set_train(net, args.bn)
        te = time.time()
        loss_sum = [0.0, 0.0]
        gn_sum = 0.0
        n_in_epoch = 0
        for batch in group_batches(train_infos, args.batch, gen):
            if it >= total:
                break
            flips = (torch.rand(len(batch), generator=gen) < args.flip).tolist()
            imgs = [train[k]["img_f"] if f else train[k]["img"] for k, f in zip(batch, flips)]
            x = collate(imgs)
            lr = lr_at(it, epoch, total, args)
            for g in opt.param_groups:
                g["lr"] = lr
            cls_scores, bbox_preds = net(x)
            sizes = [tuple(c.shape[2:]) for c in cls_scores]
            anchors, counts, _ = anchors_for(sizes, args.anchor_scale)
            tg = []
            for k, f in zip(batch, flips):
                s = train[k]
                flags = valid_flags(sizes, (pad32(s["shape"][0]), pad32(s["shape"][1])))
                tg.append(image_targets(anchors, flags, torch.from_numpy(s["boxes_f"] if f else s["boxes"]),
                                        torch.from_numpy(s["labels"]), classes))
            lvl = [list(torch.split(torch.stack([t[j] for t in tg]), counts, dim=1)) for j in range(4)]
            loss_cls, loss_box = 0, 0
            num_pos = max(float(sum((t[0] < classes).sum() for t in tg)), 1.0)
            for l, (cs, bp) in enumerate(zip(cls_scores, bbox_preds)):
                if args.loss == "focal":
                    pred = cs.permute(0, 2, 3, 1).reshape(-1, classes)
                    lab, lw = lvl[0][l].reshape(-1), lvl[1][l].reshape(-1)
                    onehot = F.one_hot(lab, classes + 1)[:, :classes].float()
                    loss_cls = loss_cls + ghm_losses.focal_loss(pred, onehot, lw, num_pos)
                    bw = lvl[3][l].reshape(-1, 4)
                    loss_box = loss_box + ((bp.permute(0, 2, 3, 1).reshape(-1, 4) - lvl[2][l].reshape(-1, 4)).abs() * bw).sum() / num_pos
                    continue
                lc, _ = ghmc(cs.permute(0, 2, 3, 1).reshape(-1, classes), lvl[0][l].reshape(-1), lvl[1][l].reshape(-1))
                lb, _ = ghmr(bp.permute(0, 2, 3, 1).reshape(-1, 4), lvl[2][l].reshape(-1, 4), lvl[3][l].reshape(-1, 4))
                loss_cls = loss_cls + lc
                loss_box = loss_box + lb
            loss = loss_cls + loss_box
            if not torch.isfinite(loss):
                print(f"{args.tag}: non-finite loss at iteration {it}", flush=True)
                return 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = float(torch.nn.utils.clip_grad_norm_([p_ for p_ in params if p_.grad is not None], args.clip))
            gn_sum += gn
            opt.step()
            loss_sum[0] += float(loss_cls)
            loss_sum[1] += float(loss_box)
            n_in_epoch += 1
            it += 1
        t_train += time.time() - te
        print(f"{args.tag}: epoch {epoch + 1} it {it} lr {lr:.4g} loss_cls {loss_sum[0] / max(n_in_epoch, 1):.4f} "
              f"loss_bbox {loss_sum[1] / max(n_in_epoch, 1):.4f} grad_norm {gn_sum / max(n_in_epoch, 1):.1f} train {t_train:.0f}s ({it / t_train:.1f} it/s)", flush=True)
        if epoch + 1 in eval_at or it >= total:
            tv = time.time()
            res = detect(net, val, classes, args.anchor_scale, cat_ids)
            ev = evaluate(res, val_ann, os.path.join(args.out, f"{args.tag}_e{epoch + 1}.json"))
            rec = {"tag": args.tag, "epoch": epoch + 1, "iterations": it, "train_s": round(t_train, 1),
                   "it_per_s": round(it / t_train, 2), "test_s": round(time.time() - tv, 1),
                   "load": os.getloadavg()[0], "detections": len(res),
                   **{k: ev[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl") if k in ev},
                   "args": {k: v for k, v in vars(args).items() if k not in ("data", "out")}}
            if "AP" not in ev:
                rec["eval"] = ev
            if args.train_eval:
                et = evaluate(detect(net, tr_val, classes, args.anchor_scale, cat_ids), tr_ann,
                              os.path.join(args.out, f"{args.tag}_train_e{epoch + 1}.json"))
                rec["train_AP"], rec["train_AP50"] = et["AP"], et["AP50"]
            print("RESULT " + json.dumps(rec), flush=True)
        if it >= total:
            break
    if args.save:
        torch.save(net.state_dict(), args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
