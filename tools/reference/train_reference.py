#!/usr/bin/python3
"""Two iterations of mmdetection's GHM training loop in PyTorch, for GhmGen's Trainer test.

    /usr/bin/python3 tools/reference/train_reference.py [OUT_DIR]

OUT_DIR defaults to tests/GhmGen.Models.Tests/Fixtures/Training. Writes there:

  images/img*.png        four small PNGs (two 64x48, two 48x80), deterministic content;
  annotations.json       a COCO-format file for them (category order, crowd, tiny, ignored,
                         outside and unknown-category annotations, two images the filters drop);
  train_reference.json   what PyTorch's run gives (below), < 1 MB.

What runs (docs/TRAINING.md; mmdetection v2.25 / mmcv 1.7 semantics, written out here because
mmdetection itself is not installed):

  data      CocoDataset: label = index, in the json `categories` order, of the categories whose
            names are COCO class names; _filter_imgs (no annotation of a known category, min side
            < 32) and _parse_ann_info (ignore, no intersection, area <= 0 / w < 1 / h < 1, unknown
            category, iscrowd -> bboxes_ignore); json image order, no shuffle, batches of 2.
  pipeline  cv2.imread (BGR uint8) -> mmcv.imrescale to fit SCALE (rescale_size, int(x*s + 0.5),
            cv2.resize INTER_LINEAR on uint8) -> boxes * float32 scale factors, clipped -> no flip
            -> mmcv.imnormalize (BGR->RGB, cv2.subtract mean, cv2.multiply 1/std, float32) ->
            impad_to_multiple(32, 0) -> collate: zero-pad to the batch's max H and W.
  targets   anchors of the batch tensor's feature sizes (mmdet AnchorGenerator, via
            ghm_losses.py), valid flags per image from its own pad_shape, MaxIoUAssigner on the
            valid anchors only (ghm_losses.max_iou_assign), unmap (invalid: background, weight 0),
            images_to_levels.
  loss      GHM-C (30 bins, momentum 0.75) and GHM-R (mu 0.02, 10 bins, momentum 0.7, weight 10)
            once per level P3..P7 over both images, mmdetection's per-bin loop, acc_sum persistent
            across levels and iterations; loss = sum(loss_cls) + sum(loss_bbox) (_parse_losses).
  model     model.py's R-50 with the seeded weights (seeded_weights.py) and the GHM buffers, whole
            model in eval mode (norm_eval: BN on running statistics, never updated),
            requires_grad=False on backbone.conv1, backbone.bn1, backbone.layer1.* (frozen_stages=1).
  optimiser loss.backward(); clip_grad_norm_(params with requires_grad and a grad, 35) (its
            return value is grad_norm); SGD(model.parameters(), lr, momentum 0.9, wd 1e-4) over
            all parameters (the frozen ones have no grad and are skipped by torch); lr from
            mmcv's linear warm-up: lr_it = LR * (1 - (1 - it / WARMUP) * (1 - RATIO)).
            Gradient norms are ~730 and ~420, so clip_grad_norm_ scales both steps.

Runs: float64 (model.double(), the GHM buffers and SGD in float64; the same float32 input tensor
and float32 targets) is the reference; three float32 runs (FLOAT32_RUNS: oneDNN convolutions at 1
and at 2 threads, and without oneDNN, i.e. im2col + GEMM) are three correct float32
implementations with different summation orders, and their largest distance from float64 per
quantity ("spread") is what the C# test's tolerances are multiples of. Settings: lr 0.01 with
warm-up over 2 iterations from mmdetection's ratio 0.001, i.e. lr 1e-5 then 0.005005. The small
first step keeps iteration 2's forward pass close to float64's. Tried first: 3 warm-up iterations
from ratio 0.1 (lr 0.001, then 0.004); there the float32 runs' iteration-2 grad norms were 10-12x
further from float64 than at iteration 1 (up to 4.9e-4 relative), GhmGen's run had a momentum
element of a small tensor 30% off, differently in every run, and the spread of PyTorch's runs did
not bound GhmGen's (docs/TRAINING.md §7: float32 GHM training is chaotic; see the README).

Recorded per iteration: lr, loss_cls, loss_bbox, loss, grad_norm (and per-level losses, and how
many GHM elements changed bin between each float32 run and float64); per batch the positives and
negatives per image; after
iteration 1 and 2 the GHM acc_sum values; after iteration 2, for every trained parameter, a
summary of (a) the update W2 - W0 (float64 difference of the stored values) and (b) the SGD
momentum buffer: norm, max |x|, probe = sum x_i R_i with R = SeededWeights.FillUniform("probe." +
key, -1, 1), and 48 samples at backward_grads.py's flat indices (0..7, numel-8..numel-1, 32 from
Uniform01("sample." + key, j)); for each float32 run its whole-tensor difference from float64
(max |diff|, L2 diff, |probe diff|, 1 - cosine) and their maximum ("spread"); and for retina_cls
weight and bias, per output channel a*80+c, the row norm (weight) or value (bias) of update and
buffer with its spread (the rows that a wrong label mapping moves). Plus the frozen keys, the
pipeline's per-image geometry, boxes, labels and a SHA-256 of every normalised image tensor and
batch tensor, and that every BN statistic, GHM edge and frozen tensor is bitwise unchanged
(asserted). About 50 s on one thread.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ghm_losses  # noqa: E402
import imaging  # noqa: E402
import model as reference_model  # noqa: E402
import seeded_weights as seeded  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(ROOT, "tests", "GhmGen.Models.Tests", "Fixtures", "Training")

MODEL = "retinanet-ghm-r50-fpn"
SCALE = (128, 96)              # --scale 128x96
BATCH = 2
ITERATIONS = 2
LR = 0.01
WARMUP_ITERS = 2              # lr 1e-5 then 0.005005 (docs/TRAINING.md §4's example)
WARMUP_RATIO = 0.001          # mmdetection's
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
MAX_NORM = 35.0
PAD_DIVISOR = 32
MIN_SIZE = 32
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
NUM_CLASSES = 80
A = 9
FROZEN_PREFIXES = ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.")
PROBE_KEY_PREFIX = "probe."
SAMPLE_KEY_PREFIX = "sample."
EDGE_SAMPLES, SEEDED_SAMPLES = 8, 32
# The float32 runs whose distance from float64 sets the fixture's spread: (name, oneDNN, threads).
# oneDNN's convolutions at 1 and 2 threads sum in different orders; without oneDNN PyTorch uses
# im2col + GEMM (the same result at 1 and 2 threads, so once).
FLOAT32_RUNS = [("f32", True, 1), ("f32_2_threads", True, 2), ("f32_no_onednn", False, 1)]

# The 80 COCO class names (mmdetection CocoDataset.CLASSES), in label order.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush")

# ------------------------------------------------------------------ the dataset (deterministic)

# Categories listed out of id order, with one name that is not a COCO class: labels are
# dog 0, person 1, car 2 (json order of the known names), not the sorted-id order.
CATEGORIES = [
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 91, "name": "unicorn", "supercategory": "myth"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]
# (id, file, width, height); 13 has only an unknown-category box and 15 is too small: both dropped.
IMAGES = [
    (11, "img0.png", 64, 48),
    (12, "img1.png", 48, 80),
    (13, "dropped_unknown.png", 48, 80),
    (14, "img2.png", 48, 80),
    (15, "dropped_small.png", 30, 60),
    (16, "img3.png", 64, 48),
]
# (image id, category id, [x, y, w, h], extra fields)
ANNOTATIONS = [
    (11, 1, [4.0, 6.0, 20.0, 30.0], {}),
    (11, 3, [30.5, 20.25, 28.0, 18.5], {}),
    (11, 18, [50.0, 2.0, 20.0, 12.0], {}),                 # reaches past the right edge: clipped
    (11, 1, [10.0, 40.0, 0.5, 3.0], {}),                   # w < 1: dropped
    (11, 3, [0.0, 30.0, 30.0, 18.0], {"iscrowd": 1}),      # crowd: neither gt nor ignore region
    (12, 18, [5.0, 10.0, 30.0, 40.0], {}),
    (12, 1, [20.0, 50.0, 3.5, 4.0], {}),                   # tiny: low-quality matches only
    (12, 3, [8.0, 60.0, 36.0, 18.0], {}),
    (12, 91, [10.0, 10.0, 10.0, 10.0], {}),                # unknown category: dropped
    (13, 91, [5.0, 5.0, 20.0, 20.0], {}),
    (14, 1, [12.0, 5.0, 24.0, 60.0], {}),
    (14, 3, [0.0, 0.0, 10.0, 10.0], {"ignore": True}),     # ignore flag: dropped
    (14, 18, [2.0, 62.0, 18.0, 0.0], {}),                  # zero area: dropped
    (14, 3, [26.0, 40.0, 21.0, 39.5], {}),
    (15, 1, [2.0, 2.0, 20.0, 20.0], {}),
    (16, 3, [2.0, 2.0, 40.0, 30.0], {}),
    (16, 18, [40.0, 20.0, 22.0, 26.0], {}),
    (16, 1, [20.0, 10.0, 20.0, 20.0], {"iscrowd": 1}),
    (16, 1, [70.0, 10.0, 5.0, 5.0], {}),                   # outside the image: dropped
]


def image_pixels(name: str, width: int, height: int, boxes) -> np.ndarray:
    """RGB uint8 [h, w, 3]: smooth gradients, seeded noise, and a filled rectangle per box."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    noise = seeded.uniform01("train_image." + name, height * width * 3).reshape(height, width, 3)
    img = np.stack([200 * xx / (width - 1), 200 * yy / (height - 1),
                    100 + 80 * np.sin((xx + 2 * yy) / 4.0)], axis=-1) + 60 * (noise - 0.5)
    for k, (x, y, w, h) in enumerate(boxes):
        colour = [(230, 40, 60), (30, 200, 90), (60, 80, 240), (240, 220, 30)][k % 4]
        x0, y0 = int(max(x, 0)), int(max(y, 0))
        x1, y1 = int(min(x + w, width)), int(min(y + h, height))
        img[y0:y1, x0:x1] = 0.7 * np.array(colour) + 0.3 * img[y0:y1, x0:x1]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_dataset(out_dir: str) -> str:
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for image_id, file_name, width, height in IMAGES:
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        if file_name.startswith("dropped"):
            continue                                        # never read: the filters drop it
        boxes = [b for i, _, b, _ in ANNOTATIONS if i == image_id]
        rgb = image_pixels(file_name, width, height, boxes)
        cv2.imwrite(os.path.join(image_dir, file_name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    for n, (image_id, category_id, box, extra) in enumerate(ANNOTATIONS):
        ann = {"id": 100 + n, "image_id": image_id, "category_id": category_id, "bbox": box,
               "area": box[2] * box[3], "iscrowd": 0}
        ann.update(extra)
        annotations.append(ann)
    path = os.path.join(out_dir, "annotations.json")
    with open(path, "w") as f:
        json.dump({"info": {"description": "GhmGen Trainer fixture (tools/reference/train_reference.py)"},
                   "images": images, "annotations": annotations, "categories": CATEGORIES}, f, indent=1)
        f.write("\n")
    return path


# ------------------------------------------------------------------ mmdetection CocoDataset

def load_dataset(ann_path: str, image_root: str) -> list:
    with open(ann_path) as f:
        coco = json.load(f)
    cat_ids = [c["id"] for c in coco["categories"] if c["name"] in COCO_CLASSES]   # getCatIds(catNms)
    cat2label = {cid: i for i, cid in enumerate(cat_ids)}
    anns_by_image = {}
    for ann in coco["annotations"]:
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    ids_in_cat = {a["image_id"] for a in coco["annotations"] if a["category_id"] in cat2label}
    infos = []
    for img in coco["images"]:
        if img["id"] not in ids_in_cat:
            continue
        if min(img["width"], img["height"]) < MIN_SIZE:
            continue
        gt, labels, crowd = [], [], []
        for ann in anns_by_image.get(img["id"], []):
            if ann.get("ignore", False):
                continue
            x1, y1, w, h = ann["bbox"]
            inter_w = max(0, min(x1 + w, img["width"]) - max(x1, 0))
            inter_h = max(0, min(y1 + h, img["height"]) - max(y1, 0))
            if inter_w * inter_h == 0:
                continue
            if ann["area"] <= 0 or w < 1 or h < 1:
                continue
            if ann["category_id"] not in cat_ids:
                continue
            bbox = [x1, y1, x1 + w, y1 + h]
            if ann.get("iscrowd", False):
                crowd.append(bbox)
            else:
                gt.append(bbox)
                labels.append(cat2label[ann["category_id"]])
        infos.append({"id": img["id"], "file_name": img["file_name"],
                      "path": os.path.join(image_root, img["file_name"]),
                      "gt_bboxes": np.array(gt, dtype=np.float32).reshape(-1, 4),
                      "gt_labels": np.array(labels, dtype=np.int64),
                      "gt_bboxes_ignore": np.array(crowd, dtype=np.float32).reshape(-1, 4)})
    return infos


# ------------------------------------------------------------------ the training pipeline

def pipeline(info: dict) -> dict:
    bgr = cv2.imread(info["path"], cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    new_w, new_h = imaging.keep_ratio_size(w, h, SCALE)
    resized = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    scale = np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)
    boxes = info["gt_bboxes"] * scale
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, new_w)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, new_h)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    normalized = imaging.imnormalize(rgb, MEAN, STD)
    ph, pw = -(-new_h // PAD_DIVISOR) * PAD_DIVISOR, -(-new_w // PAD_DIVISOR) * PAD_DIVISOR
    padded = np.zeros((ph, pw, 3), np.float32)
    padded[:new_h, :new_w] = normalized
    chw = np.ascontiguousarray(padded.transpose(2, 0, 1))
    return {"img": chw, "ori_shape": (h, w), "img_shape": (new_h, new_w), "pad_shape": (ph, pw),
            "scale_factor": scale, "gt_bboxes": boxes, "gt_labels": info["gt_labels"], "file_name": info["file_name"]}


def collate(samples: list) -> np.ndarray:
    hmax = max(s["pad_shape"][0] for s in samples)
    wmax = max(s["pad_shape"][1] for s in samples)
    x = np.zeros((len(samples), 3, hmax, wmax), np.float32)
    for n, s in enumerate(samples):
        ph, pw = s["pad_shape"]
        x[n, :, :ph, :pw] = s["img"]
    return x


# ------------------------------------------------------------------ anchors, valid flags, targets

def valid_flags(sizes, pad_shape) -> torch.Tensor:
    flags = []
    for stride, (fh, fw) in zip(ghm_losses.STRIDES, sizes):
        vh = min(int(math.ceil(pad_shape[0] / stride)), fh)
        vw = min(int(math.ceil(pad_shape[1] / stride)), fw)
        vy = torch.zeros(fh, dtype=torch.bool)
        vx = torch.zeros(fw, dtype=torch.bool)
        vy[:vh] = True
        vx[:vw] = True
        cell = (vy[:, None] & vx[None, :]).reshape(-1)
        flags.append(cell[:, None].expand(cell.numel(), A).reshape(-1))
    return torch.cat(flags)


def image_targets(anchors, flags, gt_bboxes, gt_labels, num_classes=NUM_CLASSES):
    """AnchorHead._get_targets_single with allowed_border -1 (inside = valid), PseudoSampler, unmap."""
    n = anchors.size(0)
    valid_anchors = anchors[flags]
    assigned = ghm_losses.max_iou_assign(valid_anchors, gt_bboxes)
    m = valid_anchors.size(0)
    labels = torch.full((m,), num_classes, dtype=torch.long)
    label_weights = torch.zeros(m)
    bbox_targets = torch.zeros(m, 4)
    bbox_weights = torch.zeros(m, 4)
    pos = torch.nonzero(assigned > 0, as_tuple=False).squeeze(-1)
    neg = torch.nonzero(assigned == 0, as_tuple=False).squeeze(-1)
    if pos.numel() > 0:
        bbox_targets[pos] = ghm_losses.bbox2delta(valid_anchors[pos], gt_bboxes[assigned[pos] - 1])
        bbox_weights[pos] = 1.0
        labels[pos] = gt_labels[assigned[pos] - 1]
        label_weights[pos] = 1.0
    label_weights[neg] = 1.0

    def unmap(data, fill):
        out = data.new_full((n,) + tuple(data.shape[1:]), fill)
        out[flags] = data
        return out

    return (unmap(labels, num_classes), unmap(label_weights, 0.0), unmap(bbox_targets, 0.0),
            unmap(bbox_weights, 0.0), int(pos.numel()), int(neg.numel()))


def batch_targets(sizes, samples):
    per_level = [ghm_losses.grid_anchors(s, h, w) for s, (h, w) in zip(ghm_losses.STRIDES, sizes)]
    counts = [a.size(0) for a in per_level]
    anchors = torch.cat(per_level)
    per_image = []
    for s in samples:
        flags = valid_flags(sizes, s["pad_shape"])
        per_image.append(image_targets(anchors, flags, torch.from_numpy(s["gt_bboxes"]), torch.from_numpy(s["gt_labels"])))

    def to_levels(i):
        stacked = torch.stack([p[i] for p in per_image])
        return list(torch.split(stacked, counts, dim=1))

    return {"labels": to_levels(0), "label_weights": to_levels(1), "bbox_targets": to_levels(2),
            "bbox_weights": to_levels(3), "num_pos": [p[4] for p in per_image], "num_neg": [p[5] for p in per_image]}


# ------------------------------------------------------------------ GHM losses (mmdet v2 ghm_loss.py)

class GHMC:
    """The per-bin loop of mmdet's GHMC; acc_sum and edges are the model's buffers (their dtype)."""

    def __init__(self, edges, acc_sum, bins=30, momentum=0.75, loss_weight=1.0):
        self.edges, self.acc_sum, self.bins, self.momentum, self.loss_weight = edges, acc_sum, bins, momentum, loss_weight

    def __call__(self, pred, labels, label_weights):
        target = torch.zeros_like(pred)
        inds = torch.nonzero((labels >= 0) & (labels < pred.size(-1)), as_tuple=False).squeeze(-1)
        if inds.numel() > 0:
            target[inds, labels[inds]] = 1
        label_weight = label_weights.view(-1, 1).expand(-1, pred.size(-1)).to(pred.dtype)
        edges, mmt = self.edges, self.momentum
        weights = torch.zeros_like(pred)
        g = torch.abs(pred.sigmoid().detach() - target)
        valid = label_weight > 0
        tot = max(valid.float().sum().item(), 1.0)
        n = 0
        bin_index = torch.full(g.shape, -1, dtype=torch.int16)
        for i in range(self.bins):
            inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
            bin_index[inds] = i
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                self.acc_sum[i] = mmt * self.acc_sum[i] + (1 - mmt) * num_in_bin
                weights[inds] = tot / self.acc_sum[i]
                n += 1
        if n > 0:
            weights = weights / n
        loss = torch.nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="none")
        loss = (loss * weights).sum() / tot
        return loss * self.loss_weight, bin_index


class GHMR:
    def __init__(self, edges, acc_sum, mu=0.02, bins=10, momentum=0.7, loss_weight=10.0):
        self.edges, self.acc_sum, self.mu, self.bins, self.momentum, self.loss_weight = edges, acc_sum, mu, bins, momentum, loss_weight

    def __call__(self, pred, target, label_weight):
        mu, edges, mmt = self.mu, self.edges, self.momentum
        diff = pred - target
        loss = torch.sqrt(diff * diff + mu * mu) - mu
        g = torch.abs(diff / torch.sqrt(mu * mu + diff * diff)).detach()
        weights = torch.zeros_like(g)
        valid = label_weight > 0
        tot = max(label_weight.float().sum().item(), 1.0)
        n = 0
        bin_index = torch.full(g.shape, -1, dtype=torch.int16)
        for i in range(self.bins):
            inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
            bin_index[inds] = i
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                n += 1
                self.acc_sum[i] = mmt * self.acc_sum[i] + (1 - mmt) * num_in_bin
                weights[inds] = tot / self.acc_sum[i]
        if n > 0:
            weights /= n
        loss = (loss * weights).sum() / tot
        return loss * self.loss_weight, bin_index


# ------------------------------------------------------------------ training

def warmup_lr(cur_iter: int) -> float:
    """mmcv LrUpdaterHook, linear warm-up, by_epoch, before any step (regular lr = LR * 0.1**0)."""
    regular = LR * 0.1 ** 0
    if cur_iter >= WARMUP_ITERS:
        return regular
    k = (1 - cur_iter / WARMUP_ITERS) * (1 - WARMUP_RATIO)
    return regular * (1 - k)


def build_net(dtype):
    net = reference_model.build(MODEL)
    seeded.load_seeded(net)
    net = net.to(dtype).eval()               # norm_eval: every BN on its running statistics
    frozen = []
    for key, p in net.named_parameters():
        if key.startswith(FROZEN_PREFIXES):
            p.requires_grad_(False)
            frozen.append(key)
    return net, frozen


def train(batches, dtype, onednn: bool, threads: int) -> dict:
    t0 = time.time()
    torch.set_num_threads(threads)
    net, frozen = build_net(dtype)
    state0 = {k: v.detach().clone() for k, v in net.state_dict().items()}
    head = net.bbox_head
    ghmc = GHMC(head.loss_cls.edges, head.loss_cls.acc_sum)
    ghmr = GHMR(head.loss_bbox.edges, head.loss_bbox.acc_sum)
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    iterations, acc_sums, bins = [], [], []
    with torch.backends.mkldnn.flags(enabled=onednn):
        for it, (x_np, samples, targets) in enumerate(batches):
            lr = warmup_lr(it)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            x = torch.from_numpy(x_np).to(dtype)
            cls_scores, bbox_preds = net(x)
            level_cls, level_box, it_bins = [], [], []
            for lvl, (cs, bp) in enumerate(zip(cls_scores, bbox_preds)):
                labels = targets["labels"][lvl].reshape(-1)
                lw = targets["label_weights"][lvl].reshape(-1)
                bt = targets["bbox_targets"][lvl].reshape(-1, 4).to(dtype)
                bw = targets["bbox_weights"][lvl].reshape(-1, 4).to(dtype)
                lc, bc = ghmc(cs.permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES), labels, lw)
                lb, br = ghmr(bp.permute(0, 2, 3, 1).reshape(-1, 4), bt, bw)
                level_cls.append(lc)
                level_box.append(lb)
                it_bins.append((bc, br))
            loss_cls = sum(level_cls)          # _parse_losses: sum over the levels, in order
            loss_bbox = sum(level_box)
            loss = loss_cls + loss_bbox
            loss.backward()
            with_grad = [p for p in params if p.requires_grad and p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(with_grad, MAX_NORM, norm_type=2)
            opt.step()
            iterations.append({
                "lr": lr, "loss_cls": float(loss_cls), "loss_bbox": float(loss_bbox), "loss": float(loss),
                "grad_norm": float(grad_norm),
                "loss_cls_levels": [float(v) for v in level_cls], "loss_bbox_levels": [float(v) for v in level_box],
            })
            acc_sums.append({"loss_cls": head.loss_cls.acc_sum.double().tolist(),
                             "loss_bbox": head.loss_bbox.acc_sum.double().tolist()})
            bins.append(it_bins)
    state2 = net.state_dict()
    trained = [k for k, p in net.named_parameters() if p.requires_grad]
    frozen_unchanged = all(torch.equal(state0[k], state2[k]) for k in frozen)
    buffers = [k for k, _ in net.named_buffers()]
    stats = [k for k in buffers if ".loss_" not in k]
    stats_unchanged = all(torch.equal(state0[k], state2[k]) for k in stats)
    edges_unchanged = all(torch.equal(state0[k], state2[k]) for k in buffers if k.endswith(".edges"))
    assert frozen_unchanged and stats_unchanged and edges_unchanged
    for p in params:
        if not p.requires_grad:
            assert p not in opt.state or "momentum_buffer" not in opt.state[p]
    name_of = {id(p): k for k, p in net.named_parameters()}
    update = {k: (state2[k].double() - state0[k].double()).reshape(-1).numpy().copy() for k in trained}
    momentum = {name_of[id(p)]: opt.state[p]["momentum_buffer"].double().reshape(-1).numpy().copy()
                for p in params if p.requires_grad}
    return {"iterations": iterations, "acc_sum": acc_sums, "bins": bins, "update": update, "momentum": momentum,
            "trained": trained, "frozen": frozen, "stats_keys": stats, "seconds": time.time() - t0,
            "state_count": len(state2)}


# ------------------------------------------------------------------ summaries

def f9(x: float) -> float:
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return x
    return float(f"{x:.9g}")


def f3(x: float) -> float:
    x = float(x)
    return float(f"{x:.3g}") if x else 0.0


def sample_indices(key: str, numel: int) -> list:
    seeded_idx = [int(math.floor(v * numel)) for v in seeded.uniform01(SAMPLE_KEY_PREFIX + key, SEEDED_SAMPLES)]
    return list(range(EDGE_SAMPLES)) + list(range(numel - EDGE_SAMPLES, numel)) + seeded_idx


def summary(v: np.ndarray, probe: np.ndarray, idx: list) -> dict:
    return {"norm": f9(np.sqrt((v * v).sum())), "max_abs": f9(np.abs(v).max()), "probe": f9((v * probe).sum()),
            "samples": [f9(v[i]) for i in idx]}


def difference(a: np.ndarray, b: np.ndarray, probe: np.ndarray) -> dict:
    e = a - b
    na, nb = np.sqrt((a * a).sum()), np.sqrt((b * b).sum())
    cos = float((a * b).sum() / (na * nb)) if na > 0 and nb > 0 else 1.0
    return {"max_abs_diff": f3(np.abs(e).max()), "l2_diff": f3(np.sqrt((e * e).sum())),
            "probe_abs_diff": f3(abs((e * probe).sum())), "one_minus_cosine": f3(1.0 - cos)}


def bin_changes(bins_a, bins_b) -> list:
    """Per iteration: GHM-C and GHM-R elements whose bin differs between two runs (all levels)."""
    out = []
    for it_a, it_b in zip(bins_a, bins_b):
        c = sum(int((ca != cb).sum()) for (ca, _), (cb, _) in zip(it_a, it_b))
        r = sum(int((ra != rb).sum()) for (_, ra), (_, rb) in zip(it_a, it_b))
        out.append({"ghmc": c, "ghmr": r})
    return out


def sha256_f32(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).astype("<f4").tobytes()).hexdigest()


def shortest_f32(x: float) -> float:
    return float(repr(np.float32(x)).replace("np.float32(", "").rstrip(")"))


def main(argv: list) -> int:
    out_dir = argv[0] if argv else DEFAULT_OUT
    os.makedirs(out_dir, exist_ok=True)
    ann_path = write_dataset(out_dir)
    infos = load_dataset(ann_path, os.path.join(out_dir, "images"))
    assert len(infos) == BATCH * ITERATIONS, len(infos)

    # Batches (json order, no shuffle, no flip) and their targets: identical for all three runs.
    batches, batch_records = [], []
    for it in range(ITERATIONS):
        samples = [pipeline(info) for info in infos[it * BATCH:(it + 1) * BATCH]]
        x = collate(samples)
        sizes = ghm_losses.level_sizes(x.shape[2], x.shape[3])   # P3..P7 of the batch tensor
        targets = batch_targets(sizes, samples)
        batches.append((x, samples, targets))
        batch_records.append({
            "shape": list(x.shape), "feature_sizes": [list(s) for s in sizes],
            "input_sha256": sha256_f32(x),
            "num_pos": targets["num_pos"], "num_neg": targets["num_neg"],
            "images": [{"file_name": s["file_name"], "ori_shape": list(s["ori_shape"]), "img_shape": list(s["img_shape"]),
                        "pad_shape": list(s["pad_shape"]), "scale_factor": [shortest_f32(v) for v in s["scale_factor"][:2]],
                        "gt_bboxes": [[shortest_f32(v) for v in b] for b in s["gt_bboxes"]],
                        "gt_labels": [int(v) for v in s["gt_labels"]], "tensor_sha256": sha256_f32(s["img"])}
                       for s in samples],
        })

    r64 = train(batches, torch.float64, onednn=True, threads=1)
    runs = {name: train(batches, torch.float32, onednn=onednn, threads=threads) for name, onednn, threads in FLOAT32_RUNS}
    r32 = runs["f32"]
    for r in runs.values():
        assert r["trained"] == r64["trained"]

    per_iteration = []
    for it in range(ITERATIONS):
        rec = {"lr": r64["iterations"][it]["lr"]}
        assert all(r["iterations"][it]["lr"] == rec["lr"] for r in runs.values())
        for name in ("loss_cls", "loss_bbox", "loss", "grad_norm"):
            rec[name] = {"f64": r64["iterations"][it][name], **{n: r["iterations"][it][name] for n, r in runs.items()}}
        for name in ("loss_cls_levels", "loss_bbox_levels"):
            rec[name] = {"f64": [f9(v) for v in r64["iterations"][it][name]],
                         "f32": [f9(v) for v in r32["iterations"][it][name]]}
        rec["acc_sum"] = {"f64": r64["acc_sum"][it], **{n: r["acc_sum"][it] for n, r in runs.items()}}
        rec["bin_changes_vs_f64"] = {n: bin_changes(r["bins"], r64["bins"])[it] for n, r in runs.items()}
        per_iteration.append(rec)

    params = []
    sd_shapes = {k: list(v.shape) for k, v in reference_model.build(MODEL).state_dict().items()}
    for key in r64["trained"]:
        numel = r64["update"][key].size
        idx = sample_indices(key, numel)
        probe = seeded.uniform(PROBE_KEY_PREFIX + key, numel, -1.0, 1.0).astype(np.float64)
        entry = {"key": key, "shape": sd_shapes[key], "numel": int(numel),
                 "probe_rms": f9(np.sqrt((probe * probe).mean())), "seeded_indices": idx[2 * EDGE_SAMPLES:]}
        for what in ("update", "momentum"):
            diffs = {n: difference(r[what][key], r64[what][key], probe) for n, r in runs.items()}
            entry[what] = {
                "f64": summary(r64[what][key], probe, idx),
                "f32": summary(r32[what][key], probe, idx),
                "spread": {field: max(d[field] for d in diffs.values()) for field in diffs["f32"]},
                "vs_f64": diffs,
            }
        params.append(entry)

    # retina_cls per output channel (a * 80 + c; the class c of every row): a wrong category-to-label
    # mapping hardly moves the losses or whole-tensor summaries but moves these rows (docs/TRAINING.md §7).
    cls_rows = {}
    for key in ("bbox_head.retina_cls.weight", "bbox_head.retina_cls.bias"):
        rows = NUM_CLASSES * A
        entry = {}
        for what in ("update", "momentum"):
            def per_row(v):
                v = v.reshape(rows, -1)
                return np.sqrt((v * v).sum(axis=1)) if v.shape[1] > 1 else v[:, 0]
            ref = per_row(r64[what][key])
            noise = np.max([np.abs(per_row(r[what][key]) - ref) for r in runs.values()], axis=0)
            entry[what] = {"f64": [f9(v) for v in ref], "spread": [f3(v) for v in noise]}
        cls_rows[key] = entry

    def worst(what, field):
        return max(p[what]["spread"][field] / (p[what]["f64"]["norm"] or 1) for p in params)

    doc = {
        "about": "Two iterations of mmdetection's GHM training loop (R-50, seeded weights) on annotations.json, "
                 "made by tools/reference/train_reference.py (its docstring and tools/reference/README.md).",
        "model": MODEL, "torch_version": torch.__version__, "opencv_version": cv2.__version__,
        "settings": {"batch": BATCH, "iterations": ITERATIONS, "scale": list(SCALE), "shuffle": False, "flip_prob": 0.0,
                     "lr": LR, "warmup_iters": WARMUP_ITERS, "warmup_ratio": WARMUP_RATIO, "momentum": MOMENTUM,
                     "weight_decay": WEIGHT_DECAY, "grad_clip": MAX_NORM, "lr_steps": [8, 11]},
        "dataset": {"annotations": "annotations.json", "images": "images",
                    "categories_as_labels": [c["name"] for c in CATEGORIES if c["name"] in COCO_CLASSES],
                    "kept_images": [i["file_name"] for i in infos]},
        "batches": batch_records,
        "iterations": per_iteration,
        "frozen_keys": r64["frozen"],
        "trained_count": len(r64["trained"]),
        "unchanged_checked": "frozen parameters, every BN running_mean/running_var/num_batches_tracked and the GHM "
                             "edges are bitwise unchanged after the two iterations in all three runs (asserted)",
        "sampling": {"probe_key_prefix": PROBE_KEY_PREFIX, "probe_low": -1.0, "probe_high": 1.0,
                     "sample_key_prefix": SAMPLE_KEY_PREFIX, "edge_samples": EDGE_SAMPLES, "seeded_samples": SEEDED_SAMPLES,
                     "samples_order": "0..7, numel-8..numel-1, seeded_indices[0..31]"},
        "summary": {
            "worst_update_l2_diff_rel": f3(worst("update", "l2_diff")),
            "worst_momentum_l2_diff_rel": f3(worst("momentum", "l2_diff")),
            "worst_update_one_minus_cosine": f3(max(p["update"]["spread"]["one_minus_cosine"] for p in params)),
            "worst_momentum_one_minus_cosine": f3(max(p["momentum"]["spread"]["one_minus_cosine"] for p in params)),
        },
        "float32_runs": [{"name": n, "onednn": o, "threads": t} for n, o, t in FLOAT32_RUNS],
        "retina_cls_rows": {"about": "per output channel a*80+c: the L2 norm of the weight row (weight) or the value "
                                     "(bias) of the update and of the momentum buffer; spread = max over the float32 "
                                     "runs of |value - f64|",
                            **cls_rows},
        "params": params,
    }
    path = os.path.join(out_dir, "train_reference.json")
    compact = {"separators": (",", ":")}
    lines = ["{"]
    for field, value in doc.items():
        if field == "params":
            continue
        lines.append(f" {json.dumps(field)}:{json.dumps(value, **compact)},")
    lines.append(' "params":[')
    lines.append(",\n".join("  " + json.dumps(q, **compact) for q in params))
    lines.append(" ]")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")

    print(f"wrote {path} ({os.path.getsize(path):,} bytes); kept images {[i['file_name'] for i in infos]}")
    for b in batch_records:
        print(f"batch {b['shape']}: pad shapes {[i['pad_shape'] for i in b['images']]}, positives {b['num_pos']}, negatives {b['num_neg']}")
    for it, rec in enumerate(per_iteration, 1):
        def rel(name, run):
            return abs(rec[name][run] - rec[name]["f64"]) / abs(rec[name]["f64"])
        print(f"iteration {it}: lr {rec['lr']!r}")
        for name in ("loss_cls", "loss_bbox", "loss", "grad_norm"):
            print(f"  {name}: f64 {rec[name]['f64']:.9g}  " + "  ".join(
                f"{n} {rec[name][n]:.9g} (rel {rel(name, n):.2e})" for n, _, _ in FLOAT32_RUNS))
        print(f"  GHM bin changes vs f64: {rec['bin_changes_vs_f64']}")
    print("summary", json.dumps(doc["summary"]))
    print("seconds", json.dumps({"f64": round(r64["seconds"], 1), **{n: round(r["seconds"], 1) for n, r in runs.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
