#!/usr/bin/python3
"""Makes the post-processing and NMS fixtures with PyTorch 1.13 + torchvision (Debian's python3-torch):

    /usr/bin/python3 tools/reference/postprocess.py

docs/MODEL.md §7 written plainly in PyTorch, following mmdetection >= 2.18 (filter_scores_and_topk:
pairs with score > score_thr, then the top nms_pre pairs) and torchvision.ops.batched_nms.
Head outputs are random (seeded) float32. Seeds whose final detections contain tied scores are skipped,
because torchvision orders exact ties arbitrarily (its sorts are not stable).
Writes tests/GhmGen.Runtime.Tests/Fixtures/Detection/.
"""
import json
import math
import os

import numpy as np
import torch
import torchvision

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'GhmGen.Runtime.Tests', 'Fixtures', 'Detection')
STRIDES = [8, 16, 32, 64, 128]
NUM_CLASSES = 80
SCORE_THR, NMS_PRE, IOU_THR, MAX_PER_IMG = 0.05, 1000, 0.5, 100


def conv_out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def feature_sizes(ph, pw):
    h, w = conv_out(ph, 7, 2, 3), conv_out(pw, 7, 2, 3)
    h, w = conv_out(h, 3, 2, 1), conv_out(w, 3, 2, 1)
    sizes = []
    for _ in range(5):
        h, w = conv_out(h, 3, 2, 1), conv_out(w, 3, 2, 1)
        sizes.append((h, w))
    return sizes


def base_anchors(base_size):
    # mmdet AnchorGenerator.gen_single_level_base_anchors (center offset 0)
    ratios = torch.Tensor([0.5, 1.0, 2.0])
    scales = torch.Tensor(np.array([2 ** (i / 3) for i in range(3)]) * 4)
    w = h = base_size
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w * w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h * h_ratios[:, None] * scales[None, :]).view(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


def grid_anchors(stride, fh, fw):
    base = base_anchors(stride)
    shift_x = torch.arange(0, fw) * stride
    shift_y = torch.arange(0, fh) * stride
    xx = shift_x.repeat(len(shift_y))
    yy = shift_y.view(-1, 1).repeat(1, len(shift_x)).view(-1)
    shifts = torch.stack([xx, yy, xx, yy], dim=-1).type_as(base)
    return (base[None, :, :] + shifts[:, None, :]).view(-1, 4)


def delta2bbox(rois, deltas, max_shape):
    max_ratio = abs(math.log(16 / 1000))
    px = (rois[:, 0] + rois[:, 2]) * 0.5
    py = (rois[:, 1] + rois[:, 3]) * 0.5
    pw = rois[:, 2] - rois[:, 0]
    ph = rois[:, 3] - rois[:, 1]
    dx, dy = deltas[:, 0], deltas[:, 1]
    dw = deltas[:, 2].clamp(min=-max_ratio, max=max_ratio)
    dh = deltas[:, 3].clamp(min=-max_ratio, max=max_ratio)
    gw = pw * dw.exp()
    gh = ph * dh.exp()
    gx = px + pw * dx
    gy = py + ph * dy
    x1 = (gx - gw * 0.5).clamp(min=0, max=max_shape[1])
    y1 = (gy - gh * 0.5).clamp(min=0, max=max_shape[0])
    x2 = (gx + gw * 0.5).clamp(min=0, max=max_shape[1])
    y2 = (gy + gh * 0.5).clamp(min=0, max=max_shape[0])
    return torch.stack([x1, y1, x2, y2], dim=-1)


def postprocess(cls_levels, reg_levels, sizes, resized_hw, scale_xy):
    all_boxes, all_scores, all_labels, boundary_ties = [], [], [], 0
    for l, (cls, reg, (fh, fw)) in enumerate(zip(cls_levels, reg_levels, sizes)):
        scores = cls.permute(1, 2, 0).reshape(-1, NUM_CLASSES).sigmoid()
        deltas = reg.permute(1, 2, 0).reshape(-1, 4)
        anchors = grid_anchors(STRIDES[l], fh, fw)
        valid = scores > SCORE_THR
        s = scores[valid]
        valid_idxs = torch.nonzero(valid)
        k = min(NMS_PRE, valid_idxs.size(0))
        s, order = s.sort(descending=True, stable=True)   # stable: ties by (anchor, class) like GhmGen
        if k < s.numel() and s[k - 1] == s[k]:
            boundary_ties += 1
        s = s[:k]
        anchor_idx, labels = valid_idxs[order[:k]].unbind(dim=1)
        boxes = delta2bbox(anchors[anchor_idx], deltas[anchor_idx], resized_hw)
        all_boxes.append(boxes)
        all_scores.append(s)
        all_labels.append(labels)
    boxes = torch.cat(all_boxes)
    scores = torch.cat(all_scores)
    labels = torch.cat(all_labels)
    boxes = boxes / boxes.new_tensor([scale_xy[0], scale_xy[1], scale_xy[0], scale_xy[1]])
    nonempty = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
    boxes, scores, labels = boxes[nonempty], scores[nonempty], labels[nonempty]
    keep = torchvision.ops.batched_nms(boxes, scores, labels, IOU_THR)[:MAX_PER_IMG]
    return boxes[keep], scores[keep], labels[keep], int((~nonempty).sum()), len(scores), boundary_ties


def to_file(path, tensors):
    np.concatenate([t.numpy().reshape(-1) for t in tensors]).astype(np.float32).tofile(path)


def main():
    os.makedirs(OUT, exist_ok=True)
    # (name, padded h, w, original h, w, scale): resized = int(original * scale + 0.5) inside the padded size.
    images = [('imageA', 64, 96, 100, 150, 0.6), ('imageB', 96, 64, 60, 40, 1.5), ('imageC', 96, 160, 60, 100, 1.5)]
    manifest = []
    for index, (name, ph, pw, oh, ow, s) in enumerate(images):
        rh, rw = int(oh * s + 0.5), int(ow * s + 0.5)
        scale_x, scale_y = np.float32(rw / ow), np.float32(rh / oh)
        sizes = feature_sizes(ph, pw)
        for seed in range(1000 * index, 1000 * index + 50):
            torch.manual_seed(seed)
            cls_levels, reg_levels = [], []
            for fh, fw in sizes:
                # logits ~ N(-4, 1.5): about a quarter of the pairs pass 0.05, so top-1000 bites on P3/P4
                cls_levels.append(torch.randn(9 * NUM_CLASSES, fh, fw) * 1.5 - 4.0)
                reg = torch.randn(36, fh, fw) * 0.5
                reg[torch.rand(36, fh, fw) < 0.02] *= 20   # some dw/dh beyond the clamp
                reg_levels.append(reg)
            boxes, scores, labels, dropped, candidates, boundary_ties = postprocess(
                cls_levels, reg_levels, sizes, (rh, rw), (float(scale_x), float(scale_y)))
            ties = int(len(scores) - len(torch.unique(scores)))
            if ties == 0 and boundary_ties == 0:
                break
        assert ties == 0 and boundary_ties == 0
        to_file(os.path.join(OUT, f'{name}_cls.f32'), cls_levels)
        to_file(os.path.join(OUT, f'{name}_reg.f32'), reg_levels)
        manifest.append({
            'name': name, 'seed': seed, 'padded_height': ph, 'padded_width': pw, 'resized_height': rh, 'resized_width': rw,
            'scale_x': float(scale_x), 'scale_y': float(scale_y), 'feature_sizes': sizes,
            'candidates_after_topk': candidates + dropped, 'dropped_empty': dropped,
            'detections': [[*map(float, b), float(sc), int(lb)] for b, sc, lb in zip(boxes, scores, labels)]})
        print(f'{name} (seed {seed}): padded {ph}x{pw}, resized {rh}x{rw}, {candidates + dropped} candidates, {dropped} empty dropped, '
              f'{len(scores)} detections, tied output scores {ties}, top-k boundary ties {boundary_ties}')

    # NMS alone against torchvision on random boxes: 3000 boxes, 6 classes (dense overlaps), distinct scores.
    g = torch.Generator().manual_seed(7)
    n = 3000
    xy = torch.rand(n, 2, generator=g) * 150
    wh = torch.rand(n, 2, generator=g) * 50 + 5
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.randperm(n, generator=g).float() / n + 0.001
    classes = torch.randint(0, 6, (n,), generator=g)
    keep = torchvision.ops.batched_nms(boxes, scores, classes, IOU_THR)
    boxes.numpy().astype(np.float32).tofile(os.path.join(OUT, 'nms_boxes.f32'))
    scores.numpy().astype(np.float32).tofile(os.path.join(OUT, 'nms_scores.f32'))
    classes.numpy().astype(np.int32).tofile(os.path.join(OUT, 'nms_classes.i32'))
    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        json.dump({'images': manifest, 'nms': {'count': n, 'iou_threshold': IOU_THR, 'keep': keep.tolist()}}, f)
    print(f'nms: {n} boxes, kept {len(keep)}; torch {torch.__version__}, torchvision {torchvision.__version__}')


if __name__ == '__main__':
    main()
