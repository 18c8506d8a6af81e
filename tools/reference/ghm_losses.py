#!/usr/bin/python3
"""Reference fixture for GhmGen's assigner, targets and losses (docs/MODEL.md §5 and §6).

Run by hand with Debian's PyTorch (CI never runs it):

    /usr/bin/python3 tools/reference/ghm_losses.py [output-prefix]

It re-implements, from mmdetection v2.0's code, the anchor generator (only to make the anchors
the C# side reads from the fixture), MaxIoUAssigner, bbox2delta, the target layout of
AnchorHead.get_targets, GHMC and GHMR (the per-bin loop of mmdet/models/losses/ghm_loss.py,
checked against a one-pass histogram version), sigmoid focal loss (py_sigmoid_focal_loss) and
L1 loss, all in float32 as mmdetection runs them. Gradients come from autograd.

Scene: two 256x320 images (P3..P7 = 32x40, 16x20, 8x10, 4x5, 2x3 cells, 15,354 anchors each),
ground truth with overlapping boxes, a tiny box, a box that only gets low-quality matches and a
box with exactly tied anchors. Head outputs are NOT stored: they come from a 32-bit integer hash
(lowbias32) that the C# test reproduces bit for bit, so the fixture stays small. Two training
iterations (different head outputs, same targets) run with the GHM state carried over.

Output: <prefix>.json (shapes, scalars, index of arrays) and <prefix>.bin (little-endian
float32/int32 arrays, concatenated).
"""
import json
import math
import sys

import numpy as np
import torch

NUM_CLASSES = 80
ANCHORS_PER_CELL = 9
STRIDES = [8, 16, 32, 64, 128]
IMAGE_H, IMAGE_W = 256, 320

# ---------------------------------------------------------------- deterministic head outputs

def lowbias32(n, seed):
    """uint32 hash of (index + seed * 0x9E3779B9) for index in [0, n)."""
    x = (np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B9)) & np.uint64(0xFFFFFFFF)
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def hashed_logits(n, seed):
    """Exactly representable float32 values in [-6, 2): (h >> 8) * 2^-21 - 6."""
    h = (lowbias32(n, seed) >> np.uint32(8)).astype(np.float32)
    return h * np.float32(2.0 ** -21) - np.float32(6.0)


def hashed_deltas(n, seed):
    """Exactly representable float32 values in [-1, 1): (h >> 8) * 2^-23 - 1."""
    h = (lowbias32(n, seed) >> np.uint32(8)).astype(np.float32)
    return h * np.float32(2.0 ** -23) - np.float32(1.0)


def head_seed(iteration, level, is_reg):
    return iteration * 1000 + level * 10 + (1 if is_reg else 0)

# ---------------------------------------------------------------- anchors (mmdet AnchorGenerator)

def conv_out(n):
    return (n + 2 - 3) // 2 + 1


def level_sizes(h, w):
    h, w = (h + 6 - 7) // 2 + 1, (w + 6 - 7) // 2 + 1  # conv1
    h, w = conv_out(h), conv_out(w)  # max-pool 3x3/2 pad 1 -> C2
    sizes = []
    for _ in range(3):  # C3, C4, C5
        h, w = conv_out(h), conv_out(w)
        sizes.append((h, w))
    for _ in range(2):  # P6, P7
        h, w = conv_out(h), conv_out(w)
        sizes.append((h, w))
    return sizes


def base_anchors(stride):
    scales = torch.Tensor(np.array([2 ** (i / 3) for i in range(3)]) * 4)
    ratios = torch.Tensor([0.5, 1.0, 2.0])
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (stride * w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (stride * h_ratios[:, None] * scales[None, :]).view(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


def grid_anchors(stride, fh, fw):
    base = base_anchors(stride)
    shift_x = torch.arange(0, fw) * stride
    shift_y = torch.arange(0, fh) * stride
    xx = shift_x.repeat(len(shift_y))
    yy = shift_y.view(-1, 1).repeat(1, len(shift_x)).view(-1)
    shifts = torch.stack([xx, yy, xx, yy], dim=-1).type_as(base)
    return (base[None, :, :] + shifts[:, None, :]).view(-1, 4)

# ---------------------------------------------------------------- assignment and targets

def bbox_overlaps(bboxes1, bboxes2, eps=1e-6):
    lt = torch.max(bboxes1[:, None, :2], bboxes2[:, :2])
    rb = torch.min(bboxes1[:, None, 2:], bboxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, :, 0] * wh[:, :, 1]
    area1 = (bboxes1[:, 2] - bboxes1[:, 0]) * (bboxes1[:, 3] - bboxes1[:, 1])
    area2 = (bboxes2[:, 2] - bboxes2[:, 0]) * (bboxes2[:, 3] - bboxes2[:, 1])
    union = area1[:, None] + area2 - overlap
    union = torch.max(union, union.new_tensor([eps]))
    return overlap / union


def max_iou_assign(anchors, gt_bboxes, pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0):
    """mmdet MaxIoUAssigner.assign_wrt_overlaps with gt_max_assign_all and match_low_quality."""
    num_gts, num_bboxes = gt_bboxes.size(0), anchors.size(0)
    assigned = torch.full((num_bboxes,), -1, dtype=torch.long)
    if num_gts == 0:
        assigned[:] = 0
        return assigned
    overlaps = bbox_overlaps(gt_bboxes, anchors)
    max_overlaps, argmax_overlaps = overlaps.max(dim=0)
    gt_max_overlaps, _ = overlaps.max(dim=1)
    assigned[(max_overlaps >= 0) & (max_overlaps < neg_iou_thr)] = 0
    pos = max_overlaps >= pos_iou_thr
    assigned[pos] = argmax_overlaps[pos] + 1
    for i in range(num_gts):
        if gt_max_overlaps[i] >= min_pos_iou:
            assigned[overlaps[i, :] == gt_max_overlaps[i]] = i + 1
    return assigned


def bbox2delta(proposals, gt):
    px = (proposals[..., 0] + proposals[..., 2]) * 0.5
    py = (proposals[..., 1] + proposals[..., 3]) * 0.5
    pw = proposals[..., 2] - proposals[..., 0]
    ph = proposals[..., 3] - proposals[..., 1]
    gx = (gt[..., 0] + gt[..., 2]) * 0.5
    gy = (gt[..., 1] + gt[..., 3]) * 0.5
    gw = gt[..., 2] - gt[..., 0]
    gh = gt[..., 3] - gt[..., 1]
    return torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)


def image_targets(anchors, gt_bboxes, gt_labels):
    n = anchors.size(0)
    assigned = max_iou_assign(anchors, gt_bboxes)
    labels = torch.full((n,), NUM_CLASSES, dtype=torch.long)
    label_weights = torch.zeros(n)
    bbox_targets = torch.zeros(n, 4)
    bbox_weights = torch.zeros(n, 4)
    pos = torch.nonzero(assigned > 0, as_tuple=False).squeeze(-1)
    neg = torch.nonzero(assigned == 0, as_tuple=False).squeeze(-1)
    if pos.numel() > 0:
        bbox_targets[pos] = bbox2delta(anchors[pos], gt_bboxes[assigned[pos] - 1])
        bbox_weights[pos] = 1.0
        labels[pos] = gt_labels[assigned[pos] - 1]
        label_weights[pos] = 1.0
    label_weights[neg] = 1.0
    return assigned, labels, label_weights, bbox_targets, bbox_weights, pos.numel()

# ---------------------------------------------------------------- losses (mmdet v2.0)

class GHMC:
    def __init__(self, bins=30, momentum=0.75, loss_weight=1.0):
        self.bins, self.momentum, self.loss_weight = bins, momentum, loss_weight
        self.edges = torch.arange(bins + 1).float() / bins
        self.edges[-1] += 1e-6
        self.acc_sum = torch.zeros(bins)

    def __call__(self, pred, target, label_weight):
        edges, mmt = self.edges, self.momentum
        weights = torch.zeros_like(pred)
        g = torch.abs(pred.sigmoid().detach() - target)
        valid = label_weight > 0
        tot = max(valid.float().sum().item(), 1.0)
        n = 0
        for i in range(self.bins):
            inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                if mmt > 0:
                    self.acc_sum[i] = mmt * self.acc_sum[i] + (1 - mmt) * num_in_bin
                    weights[inds] = tot / self.acc_sum[i]
                else:
                    weights[inds] = tot / num_in_bin
                n += 1
        if n > 0:
            weights = weights / n
        loss = torch.nn.functional.binary_cross_entropy_with_logits(pred, target, weights, reduction='sum') / tot
        return loss * self.loss_weight


class GHMR:
    def __init__(self, mu=0.02, bins=10, momentum=0.7, loss_weight=10.0):
        self.mu, self.bins, self.momentum, self.loss_weight = mu, bins, momentum, loss_weight
        edges = [float(x) / bins for x in range(bins + 1)]
        edges[-1] = 1e3
        self.edges = torch.FloatTensor(edges)
        self.acc_sum = torch.zeros(bins)

    def __call__(self, pred, target, label_weight):
        mu, edges, mmt = self.mu, self.edges, self.momentum
        diff = pred - target
        loss = torch.sqrt(diff * diff + mu * mu) - mu
        g = torch.abs(diff / torch.sqrt(mu * mu + diff * diff)).detach()
        weights = torch.zeros_like(g)
        valid = label_weight > 0
        tot = max(label_weight.float().sum().item(), 1.0)
        n = 0
        for i in range(self.bins):
            inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                n += 1
                if mmt > 0:
                    self.acc_sum[i] = mmt * self.acc_sum[i] + (1 - mmt) * num_in_bin
                    weights[inds] = tot / self.acc_sum[i]
                else:
                    weights[inds] = tot / num_in_bin
        if n > 0:
            weights /= n
        loss = loss * weights
        loss = loss.sum() / tot
        return loss * self.loss_weight


def one_pass_weights(g, valid, edges, acc_sum, momentum, tot):
    """The histogram form of the per-bin loop (no state change; returns weights and new acc)."""
    bins = edges.numel() - 1
    idx = torch.bucketize(g, edges, right=True) - 1  # edges[i] <= g < edges[i+1]
    idx = torch.where(valid & (idx >= 0) & (idx < bins), idx, torch.full_like(idx, bins))
    counts = torch.bincount(idx.view(-1), minlength=bins + 1)[:bins]
    acc = acc_sum.clone()
    table = torch.zeros(bins + 1)
    n = 0
    for i in range(bins):
        k = counts[i].item()
        if k > 0:
            n += 1
            if momentum > 0:
                acc[i] = momentum * acc[i] + (1 - momentum) * k
                table[i] = tot / acc[i]
            else:
                table[i] = tot / k
    if n > 0:
        table = table / n
    return table[idx], acc


def focal_loss(pred, target_onehot, weight, avg_factor, gamma=2.0, alpha=0.25):
    """mmdet py_sigmoid_focal_loss with per-anchor weight, reduction mean with avg_factor."""
    pred_sigmoid = pred.sigmoid()
    t = target_onehot
    pt = (1 - pred_sigmoid) * t + pred_sigmoid * (1 - t)
    focal_weight = (alpha * t + (1 - alpha) * (1 - t)) * pt.pow(gamma)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(pred, t, reduction='none') * focal_weight
    loss = loss * weight.view(-1, 1)
    return loss.sum() / avg_factor


def l1_loss(pred, target, weight, avg_factor):
    return (torch.abs(pred - target) * weight).sum() / avg_factor


def onehot(labels):
    t = torch.zeros(labels.numel(), NUM_CLASSES)
    inds = torch.nonzero((labels >= 0) & (labels < NUM_CLASSES), as_tuple=False).squeeze(-1)
    t[inds, labels[inds]] = 1
    return t

# ---------------------------------------------------------------- scene

GT_BOXES = [
    # image 0: two overlapping boxes, a tiny box, a box with tied anchors (centre (20,100) sits
    # halfway between anchor centres; the top-left corner crosses the image border on purpose)
    [[10.0, 20.0, 120.0, 200.0], [90.0, 40.0, 210.0, 170.0], [150.0, 150.0, 155.0, 154.0],
     [4.0, 84.0, 36.0, 116.0], [230.5, 30.25, 300.75, 90.5]],
    # image 1: an elongated box that only gets low-quality matches, a box on the border
    [[20.0, 100.0, 300.0, 108.0], [250.0, 180.0, 320.0, 256.0], [60.0, 60.0, 100.0, 140.0]],
]
GT_LABELS = [[0, 17, 79, 3, 17], [45, 0, 62]]


def near_edge(g, edges, tol):
    g64 = g.double()
    e = edges.double()
    return ((g64[..., None] - e).abs() < tol).any(-1)


def main():
    prefix = sys.argv[1] if len(sys.argv) > 1 else 'tests/GhmGen.Runtime.Tests/Fixtures/Losses/retina_two_images'
    torch.manual_seed(0)
    sizes = level_sizes(IMAGE_H, IMAGE_W)
    anchors_per_level = [grid_anchors(s, h, w) for s, (h, w) in zip(STRIDES, sizes)]
    level_counts = [a.size(0) for a in anchors_per_level]
    anchors = torch.cat(anchors_per_level)
    num_images = len(GT_BOXES)

    per_image = []
    for b, l in zip(GT_BOXES, GT_LABELS):
        per_image.append(image_targets(anchors, torch.tensor(b, dtype=torch.float32), torch.tensor(l)))
    avg_factor = float(sum(max(p[5], 1) for p in per_image))  # mmdet num_total_samples

    def to_levels(index):
        stacked = torch.stack([p[index] for p in per_image])
        return list(torch.split(stacked, level_counts, dim=1))

    labels_l, lw_l, bt_l, bw_l = to_levels(1), to_levels(2), to_levels(3), to_levels(4)

    arrays = {}
    meta = {
        'image_height': IMAGE_H, 'image_width': IMAGE_W, 'num_images': num_images,
        'num_classes': NUM_CLASSES, 'anchors_per_cell': ANCHORS_PER_CELL,
        'level_sizes': [list(s) for s in sizes], 'level_anchor_counts': level_counts,
        'gt_boxes': GT_BOXES, 'gt_labels': GT_LABELS,
        'num_positives': [int(p[5]) for p in per_image],
        'num_negatives': [int((p[0] == 0).sum()) for p in per_image],
        'avg_factor': avg_factor,
        'hash': 'lowbias32(index + seed*0x9E3779B9); cls=(h>>8)*2^-21-6, reg=(h>>8)*2^-23-1; seed=iter*1000+level*10+(reg?1:0)',
    }
    arrays['anchors'] = anchors.numpy().astype(np.float32)
    arrays['assigned_gt'] = np.stack([p[0].numpy() for p in per_image]).astype(np.int32)
    for i, p in enumerate(per_image):
        pos = torch.nonzero(p[0] > 0, as_tuple=False).squeeze(-1)
        arrays[f'pos_box_targets_{i}'] = p[3][pos].numpy().astype(np.float32)

    ghmc, ghmr = GHMC(), GHMR()
    iterations = []
    for it in (1, 2):
        rec = {'levels': []}
        for lvl, (fh, fw) in enumerate(sizes):
            hw = fh * fw
            n_cls = num_images * ANCHORS_PER_CELL * NUM_CLASSES * hw
            n_reg = num_images * ANCHORS_PER_CELL * 4 * hw
            cls_np = hashed_logits(n_cls, head_seed(it, lvl, False))
            reg_np = hashed_deltas(n_reg, head_seed(it, lvl, True))
            cls_nchw = torch.from_numpy(cls_np).view(num_images, ANCHORS_PER_CELL * NUM_CLASSES, fh, fw)
            reg_nchw = torch.from_numpy(reg_np).view(num_images, ANCHORS_PER_CELL * 4, fh, fw)

            labels = labels_l[lvl].reshape(-1)
            lw = lw_l[lvl].reshape(-1)
            t_cls = onehot(labels)
            w_cls = lw.view(-1, 1).expand(-1, NUM_CLASSES).contiguous()
            bt = bt_l[lvl].reshape(-1, 4)
            bw = bw_l[lvl].reshape(-1, 4)

            # Keep every GHM gradient length at least 1e-6 away from a bin edge, so that a
            # 1-ulp difference in exp/sigmoid between PyTorch and .NET cannot move an element
            # to another bin. Overridden elements are listed in the fixture.
            overrides = {'cls': [], 'reg': []}
            flat_cls = cls_nchw.permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES)
            g = torch.abs(flat_cls.sigmoid() - t_cls)
            bad = near_edge(g, ghmc.edges, 1e-6) & (w_cls > 0)
            if bad.any():
                nchw_index = torch.arange(n_cls).view(num_images, ANCHORS_PER_CELL * NUM_CLASSES, fh, fw)
                nchw_index = nchw_index.permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES)
                for idx in nchw_index[bad].tolist():
                    cls_np[idx] = -4.0
                    overrides['cls'].append([idx, -4.0])
            flat_reg = reg_nchw.permute(0, 2, 3, 1).reshape(-1, 4)
            d = flat_reg - bt
            g = torch.abs(d / torch.sqrt(0.02 * 0.02 + d * d))
            bad = near_edge(g, ghmr.edges, 1e-6) & (bw > 0)
            if bad.any():
                nchw_index = torch.arange(n_reg).view(num_images, ANCHORS_PER_CELL * 4, fh, fw)
                nchw_index = nchw_index.permute(0, 2, 3, 1).reshape(-1, 4)
                flat_bt = bt.reshape(-1)
                for idx, fi in zip(nchw_index[bad].tolist(), torch.nonzero(bad.view(-1)).view(-1).tolist()):
                    v = float(np.float32(flat_bt[fi].item() + 0.011))
                    reg_np[idx] = v
                    overrides['reg'].append([idx, v])

            cls_nchw = torch.from_numpy(cls_np).view(num_images, ANCHORS_PER_CELL * NUM_CLASSES, fh, fw).clone().requires_grad_(True)
            reg_nchw = torch.from_numpy(reg_np).view(num_images, ANCHORS_PER_CELL * 4, fh, fw).clone().requires_grad_(True)
            cls_flat = cls_nchw.permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES)
            reg_flat = reg_nchw.permute(0, 2, 3, 1).reshape(-1, 4)

            # one-pass check against the loop, before the loop changes the state
            g = torch.abs(cls_flat.detach().sigmoid() - t_cls)
            tot = max((w_cls > 0).float().sum().item(), 1.0)
            w1, acc1 = one_pass_weights(g, w_cls > 0, ghmc.edges, ghmc.acc_sum, ghmc.momentum, tot)
            one_pass_c = (torch.nn.functional.binary_cross_entropy_with_logits(cls_flat.detach(), t_cls, w1, reduction='sum') / tot).item()
            d = reg_flat.detach() - bt
            g = torch.abs(d / torch.sqrt(0.02 * 0.02 + d * d))
            tot_r = max(bw.sum().item(), 1.0)
            w2, acc2 = one_pass_weights(g, bw > 0, ghmr.edges, ghmr.acc_sum, ghmr.momentum, tot_r)
            one_pass_r = ((torch.sqrt(d * d + 0.02 * 0.02) - 0.02) * w2).sum().item() / tot_r * 10.0

            loss_c = ghmc(cls_flat, t_cls, w_cls)
            loss_r = ghmr(reg_flat, bt, bw)
            assert abs(loss_c.item() - one_pass_c) <= 1e-6 * max(1.0, abs(one_pass_c)), (loss_c.item(), one_pass_c)
            assert abs(loss_r.item() - one_pass_r) <= 1e-5 * max(1.0, abs(one_pass_r)), (loss_r.item(), one_pass_r)
            assert torch.equal(acc1, ghmc.acc_sum) and torch.equal(acc2, ghmr.acc_sum)
            g_cls, = torch.autograd.grad(loss_c, cls_nchw)
            g_reg, = torch.autograd.grad(loss_r, reg_nchw)

            cls_f = cls_nchw.detach().clone().requires_grad_(True)
            reg_f = reg_nchw.detach().clone().requires_grad_(True)
            loss_f = focal_loss(cls_f.permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES), t_cls, lw, avg_factor)
            loss_l1 = l1_loss(reg_f.permute(0, 2, 3, 1).reshape(-1, 4), bt, bw, avg_factor)
            gf_cls, = torch.autograd.grad(loss_f, cls_f)
            gl1_reg, = torch.autograd.grad(loss_l1, reg_f)

            # Sampled gradient elements: every channel of every positive anchor, plus a stride.
            pos_cells = torch.nonzero(labels_l[lvl] < NUM_CLASSES, as_tuple=False)  # (image, anchor)
            cls_idx, reg_idx = set(range(0, n_cls, 211)), set(range(0, n_reg, 29))
            for img, anc in pos_cells.tolist():
                p, a = anc // ANCHORS_PER_CELL, anc % ANCHORS_PER_CELL
                for c in range(NUM_CLASSES):
                    cls_idx.add((img * ANCHORS_PER_CELL * NUM_CLASSES + a * NUM_CLASSES + c) * hw + p)
                for k in range(4):
                    reg_idx.add((img * ANCHORS_PER_CELL * 4 + a * 4 + k) * hw + p)
            cls_idx = np.array(sorted(cls_idx), dtype=np.int64)
            reg_idx = np.array(sorted(reg_idx), dtype=np.int64)
            tag = f'it{it}_p{lvl + 3}'
            if it == 1:
                arrays[f'cls_index_p{lvl + 3}'] = cls_idx.astype(np.int32)
                arrays[f'reg_index_p{lvl + 3}'] = reg_idx.astype(np.int32)
            arrays[f'ghmc_grad_{tag}'] = g_cls.reshape(-1).numpy()[cls_idx].astype(np.float32)
            arrays[f'ghmr_grad_{tag}'] = g_reg.reshape(-1).numpy()[reg_idx].astype(np.float32)
            if it == 1:
                arrays[f'focal_grad_{tag}'] = gf_cls.reshape(-1).numpy()[cls_idx].astype(np.float32)
                arrays[f'l1_grad_{tag}'] = gl1_reg.reshape(-1).numpy()[reg_idx].astype(np.float32)

            def summary(t):
                t64 = t.double()
                return {'max_abs': t64.abs().max().item(), 'sum_abs': t64.abs().sum().item(), 'sum': t64.sum().item()}

            rec['levels'].append({
                'overrides_cls': overrides['cls'], 'overrides_reg': overrides['reg'],
                'ghmc_loss': loss_c.item(), 'ghmr_loss': loss_r.item(),
                'focal_loss': loss_f.item(), 'l1_loss': loss_l1.item(),
                'ghmc_acc_sum_after': ghmc.acc_sum.tolist(), 'ghmr_acc_sum_after': ghmr.acc_sum.tolist(),
                'ghmc_grad': summary(g_cls), 'ghmr_grad': summary(g_reg),
                'focal_grad': summary(gf_cls), 'l1_grad': summary(gl1_reg),
                'num_positive_anchors': int((labels_l[lvl] < NUM_CLASSES).sum()),
                'num_valid_anchors': int((lw_l[lvl] > 0).sum()),
            })
        rec['ghmc_total'] = sum(l['ghmc_loss'] for l in rec['levels'])
        rec['ghmr_total'] = sum(l['ghmr_loss'] for l in rec['levels'])
        iterations.append(rec)
    meta['iterations'] = iterations

    index = []
    offset = 0
    with open(prefix + '.bin', 'wb') as f:
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            dtype = {np.dtype(np.float32): 'float32', np.dtype(np.int32): 'int32'}[arr.dtype]
            data = arr.astype('<' + arr.dtype.str[1:]).tobytes()
            f.write(data)
            index.append({'name': name, 'dtype': dtype, 'shape': list(arr.shape), 'offset': offset})
            offset += len(data)
    meta['arrays'] = index
    with open(prefix + '.json', 'w') as f:
        json.dump(meta, f, indent=1)
    print(f'wrote {prefix}.bin ({offset} bytes) and {prefix}.json')
    for it, rec in enumerate(iterations, 1):
        print(f'iteration {it}: GHM-C {rec["ghmc_total"]:.6f}  GHM-R {rec["ghmr_total"]:.6f}  '
              f'overrides cls {sum(len(l["overrides_cls"]) for l in rec["levels"])} '
              f'reg {sum(len(l["overrides_reg"]) for l in rec["levels"])}')
    print('positives per image', meta['num_positives'], 'avg_factor', avg_factor)


if __name__ == '__main__':
    main()
