#!/usr/bin/python3
"""Peer timings for bench/GhmGen.Bench/NmsBenchmarks.cs, with torch.set_num_threads(2):

    /usr/bin/python3 tools/reference/bench_nms.py

1. torchvision.ops.batched_nms on 1,000 and 10,000 random boxes over 80 classes (same recipe as
   NmsBenchmarks: boxes in 1216x800, sides 10..210, uniform scores).
2. The docs/MODEL.md §7 post-processing (tools/reference/postprocess.py) of one 800x1216 image with
   logits ~ N(-6, 1.2) and deltas ~ N(0, 0.5), like PostProcessBenchmarks.
Prints the median of repeated runs in milliseconds.
"""
import statistics
import time

import torch
import torchvision

from postprocess import feature_sizes, postprocess


def median_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main():
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(42)
    for n in (1000, 10000):
        xy = torch.rand(n, 2, generator=g) * torch.tensor([1216.0, 800.0])
        wh = torch.rand(n, 2, generator=g) * 200 + 10
        boxes = torch.cat([xy, xy + wh], dim=1)
        scores = torch.rand(n, generator=g)
        classes = torch.randint(0, 80, (n,), generator=g)
        ms = median_ms(lambda: torchvision.ops.batched_nms(boxes, scores, classes, 0.5), 50)
        print(f'torchvision batched_nms, {n} boxes, 80 classes: {ms:.3f} ms')

    torch.manual_seed(7)
    sizes = feature_sizes(800, 1216)
    cls_levels = [torch.randn(720, h, w) * 1.2 - 6.0 for h, w in sizes]
    reg_levels = [torch.randn(36, h, w) * 0.5 for h, w in sizes]
    with torch.no_grad():
        ms = median_ms(lambda: postprocess(cls_levels, reg_levels, sizes, (800, 1199), (1.8734, 1.8735)), 10)
    print(f'PyTorch reference post-processing, 800x1216: {ms:.1f} ms')
    print(f'torch {torch.__version__}, torchvision {torchvision.__version__}, threads {torch.get_num_threads()}')


if __name__ == '__main__':
    main()
