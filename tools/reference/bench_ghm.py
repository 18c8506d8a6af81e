#!/usr/bin/python3
"""PyTorch peer for bench/GhmGen.Bench/GhmLossBenchmarks.cs: GHM-C forward + backward on one
800x1216 image (182,403 anchors x 80 classes = 14.6 M logits), 2 threads.

    /usr/bin/python3 tools/reference/bench_ghm.py [repeats]

Times (a) mmdetection's GHMC (the per-bin loop, autograd backward) and (b) a one-pass version
(bucketize + bincount, same weights, autograd backward). The logits are split per FPN level and
each level is one call, as mmdetection does. Prints the median and best of the repeats in ms.
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
LEVEL_CELLS = [100 * 152, 50 * 76, 25 * 38, 13 * 19, 7 * 10]
NUM_CLASSES = 80


class GHMCLoop:
    """mmdet/models/losses/ghm_loss.py GHMC (v2.0), momentum 0.75."""

    def __init__(self, bins=30, momentum=0.75):
        self.bins, self.momentum = bins, momentum
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
                self.acc_sum[i] = mmt * self.acc_sum[i] + (1 - mmt) * num_in_bin
                weights[inds] = tot / self.acc_sum[i]
                n += 1
        if n > 0:
            weights = weights / n
        return F.binary_cross_entropy_with_logits(pred, target, weights, reduction='sum') / tot


class GHMCOnePass(GHMCLoop):
    """Same result with one histogram: bucketize, bincount, a 30-entry weight table, gather."""

    def __call__(self, pred, target, label_weight):
        with torch.no_grad():
            g = torch.abs(pred.sigmoid() - target)
            valid = label_weight > 0
            tot = max(valid.sum().item(), 1.0)
            idx = torch.bucketize(g, self.edges, right=True) - 1
            idx = torch.where(valid, idx.clamp_(0, self.bins - 1), torch.full_like(idx, self.bins))
            counts = torch.bincount(idx.view(-1), minlength=self.bins + 1)[:self.bins].float()
            nonempty = counts > 0
            self.acc_sum = torch.where(nonempty, self.momentum * self.acc_sum + (1 - self.momentum) * counts, self.acc_sum)
            table = torch.zeros(self.bins + 1)
            table[:self.bins] = torch.where(nonempty, tot / self.acc_sum, torch.zeros(self.bins))
            table /= max(int(nonempty.sum()), 1)
            weights = table[idx]
        return F.binary_cross_entropy_with_logits(pred, target, weights, reduction='sum') / tot


def make_level(cells, gen):
    n = cells * 9
    x = (-4.6 + 3 * (torch.rand(n, NUM_CLASSES, generator=gen) - 0.5)).requires_grad_(True)
    u = torch.rand(n, generator=gen)
    labels = torch.full((n,), NUM_CLASSES, dtype=torch.long)
    pos = u < 0.001
    labels[pos] = torch.randint(0, NUM_CLASSES, (int(pos.sum()),), generator=gen)
    target = torch.zeros(n, NUM_CLASSES)
    target[pos, labels[pos]] = 1
    weight = (u >= 0.001) & (u < 0.99)
    label_weight = (weight | pos).float().view(-1, 1).expand(n, NUM_CLASSES).contiguous()
    return x, target, label_weight


def run(loss, levels):
    for x, _, _ in levels:
        x.grad = None
    start = time.perf_counter()
    total = 0.0
    for x, t, w in levels:
        value = loss(x, t, w)
        value.backward()
        total += value.item()
    return (time.perf_counter() - start) * 1000, total


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    gen = torch.Generator().manual_seed(0)
    levels = [make_level(c, gen) for c in LEVEL_CELLS]
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, logits {sum(x.numel() for x, _, _ in levels):,}')
    loop, one = GHMCLoop(), GHMCOnePass()
    for name, loss in (('mmdet per-bin loop', loop), ('one-pass (bucketize+bincount)', one)):
        run(loss, levels)  # warm-up
        times = []
        for _ in range(repeats):
            ms, value = run(loss, levels)
            times.append(ms)
        print(f'{name:32s} median {statistics.median(times):8.1f} ms  best {min(times):8.1f} ms  (loss {value:.6f})')
    # both keep the same state after the same calls
    assert torch.allclose(loop.acc_sum, one.acc_sum, rtol=1e-5), (loop.acc_sum, one.acc_sum)
    # memory bandwidth yardstick: a 14.6 M-float copy
    src = torch.rand(sum(x.numel() for x, _, _ in levels))
    dst = torch.empty_like(src)
    times = []
    for _ in range(repeats):
        s = time.perf_counter()
        dst.copy_(src)
        times.append((time.perf_counter() - s) * 1000)
    print(f'{"copy 14.6 M floats":32s} median {statistics.median(times):8.1f} ms  best {min(times):8.1f} ms')


if __name__ == '__main__':
    main()
