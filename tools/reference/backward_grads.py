"""Makes the parameter-gradient fixtures for the C# backward pass of the four networks and the demo.

    /usr/bin/python3 tools/reference/backward_grads.py [MODEL ...]      # default: all five

Writes tests/GhmGen.Models.Tests/Fixtures/Gradients/<model>.json.

The function differentiated (everything seeded, nothing else needed on the C# side):

  network  model.py's network with the seeded weights (seeded_weights.py); the whole model in eval
           mode, so every BN uses its running statistics (norm_eval=True) and updates nothing;
           requires_grad=False on backbone.conv1, backbone.bn1 and backbone.layer1.* (frozen_stages=1).
           The demo (ghm-demo-r18-fpn, demo_model.py: basic blocks, 64-channel FPN and head with 2
           convs per branch, 4 classes) freezes nothing and trains its BN with batch statistics
           (demo_model.NORM_EVAL = False): the model is in train() mode, so every BN normalises with
           the mean and biased variance over N, H, W of the padded batch (the padding zeros count)
           and each forward updates running_mean / running_var (momentum 0.1, unbiased variance) and
           num_batches_tracked. Every forward of such a model starts from the seeded buffers.
  input    a padded batch [2, 3, 64, 96] as mmdetection collates it: image n of size h_n x w_n
           (image 0: 64x96, image 1: 48x80) in the top-left corner, zeros elsewhere. The image region
           of image n holds float32(-2 + 4 * u(key, i)) = SeededWeights.FillUniform(key, span, -2, 2)
           with key "input.image<n>" and i the row-major index in the image's own [3, h_n, w_n].
  outputs  the ten head outputs cls_p3..cls_p7, reg_p3..reg_p7, each [2, 720 | 36, h, w].
  G_name   for each output a seeded gradient: float32(-1 + 2 * u("output_grad." + name, i)) =
           SeededWeights.FillUniform("output_grad." + name, span, -1, 1), i = row-major index in
           the [2, C, h, w] output.
  loss     L = sum over the ten outputs of sum(G_name * output)  (so dL/d output = G_name).

Recorded per trainable parameter (named_parameters order, key = state-dict key), for the float32
run ("f32") and for a float64 copy ("f64": model.double(), the same float32 inputs and G cast):
  norm     sqrt(sum g^2) (float64 arithmetic), max_abs = max |g|,
  probe    sum_i g_i * R_i (float64 arithmetic), R = SeededWeights.FillUniform("probe." + key, span,
           -1, 1) over the parameter's row-major elements (float32 values); probe_rms = rms(R),
  samples  g at 48 flat row-major indices: 0..7, numel-8..numel-1, then for j = 0..31
           floor(SeededWeights.Uniform01("sample." + key, j) * numel) (exact in double; the list is
           also stored as "seeded_indices"),
  fp32_vs_fp64  PyTorch float32 against float64 over the whole tensor (max |diff|, L2, relative),
  rounding      the same for a float32 run that uses the float64 run's ReLU masks: rounding alone,
  flips         ReLU inputs within float32 noise of 0 (|x64| < 10 x the rms float32 error of that
                ReLU's input: "relu.candidates") may land on the other side of 0 in any float32
                implementation, which drops or adds the gradient through that element. For each
                candidate e its effect delta_e = -/+ dL/dy_e * dx_e/dtheta is computed exactly in
                float64; flips.samples[j] = sum_e |delta_e[i_j]|, flips.l2 = sum_e ||delta_e||,
                flips.probe = sum_e |<delta_e, R>|, flips.max_abs = max_i sum_e |delta_e[i]|.
The C# tolerance (GradientFixture.cs; "tolerance" in the JSON; mirrored by tolerance_ratio here):
  |x - f64| <= 30 * rounding + 2 * flips + 1e-7 * scale, checked here on PyTorch float32 with and
without oneDNN (two summation orders, different flips): "summary.tolerance_ratio_*" (<= 1 passes).
Also a self test per file: summaries of FillUniform("self_test." + key, -1, 1) for two keys.
Floats have 9 significant digits; float32 values (f32 samples, checksum "first") the shortest
decimal that reads back to the same float32; tolerance terms are rounded up to 3 digits.

Checked, and recorded: the frozen keys get no gradient (.grad is None), and every buffer (BN
running_mean / running_var / num_batches_tracked, GHM edges / acc_sum) is bitwise unchanged after
forward + backward, except in a train-mode-BN model (the demo): there "running_stats" records,
per BN, running_mean and running_var after the one forward (float64 run, all values; float32
run's max |diff| to it, and the no-oneDNN float32 run's) and num_batches_tracked (1). The C#
tolerance on them is RUNNING_K x the float32 run's max |diff| + FLOOR x max |value| per tensor;
"summary.running_stats_ratio_*" checks the two PyTorch float32 runs against it.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_model  # noqa: E402
import model as reference_model  # noqa: E402
import seeded_weights as seeded  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests/GhmGen.Models.Tests/Fixtures/Gradients")

BATCH_SHAPE = (2, 3, 64, 96)
IMAGE_SIZES = [(64, 96), (48, 80)]          # (h, w) of image 0 and image 1, top-left in the batch
INPUT_KEY_PREFIX = "input.image"            # + image index
OUTPUT_GRAD_KEY_PREFIX = "output_grad."     # + output name
PROBE_KEY_PREFIX = "probe."                 # + parameter key
SAMPLE_KEY_PREFIX = "sample."               # + parameter key
SELF_TEST_KEY_PREFIX = "self_test."      # + parameter key
EDGE_SAMPLES = 8
SEEDED_SAMPLES = 32
RELU_CANDIDATE_Z = 10.0
# The C# comparison (tests/GhmGen.Models.Tests/Backward/GradientFixture.cs), mirrored by tolerance_ratio:
#   |value - f64| <= ROUNDING_K * rounding + FLIP_M * flips + FLOOR * scale
ROUNDING_K = 30.0
FLIP_M = 2.0
FLOOR = 1e-7
RUNNING_K = 30.0
FROZEN_PREFIXES = ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.")
OUTPUT_NAMES = [f"cls_p{l}" for l in range(3, 8)] + [f"reg_p{l}" for l in range(3, 8)]


def f9(x: float) -> float:
    """9 significant digits (float32 round-trips exactly; float64 to ~5e-10 relative)."""
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return x
    return float(f"{x:.9g}")


def batch_input() -> np.ndarray:
    x = np.zeros(BATCH_SHAPE, dtype=np.float32)
    for n, (h, w) in enumerate(IMAGE_SIZES):
        region = seeded.uniform(f"{INPUT_KEY_PREFIX}{n}", 3 * h * w, -2.0, 2.0).reshape(3, h, w)
        x[n, :, :h, :w] = region
    return x


def sample_indices(key: str, numel: int) -> list:
    u = seeded.uniform01(SAMPLE_KEY_PREFIX + key, SEEDED_SAMPLES)
    return [int(math.floor(v * numel)) for v in u]


def all_sample_indices(key: str, numel: int) -> list:
    first = list(range(EDGE_SAMPLES))
    last = list(range(numel - EDGE_SAMPLES, numel))
    return first + last + sample_indices(key, numel)


def shortest_f32(x: float) -> float:
    """A float32 value as the shortest decimal that reads back to the same float32."""
    return float(repr(np.float32(x)).replace("np.float32(", "").rstrip(")"))


def checksum(values: np.ndarray) -> dict:
    """float64 sum, sum of squares, max |x|, sum of x_i * ((i % 997) + 1) over the row-major index i
    (catches layout errors the plain sums cannot), and the first 4 values."""
    v = values.astype(np.float64).reshape(-1)
    weights = (np.arange(v.size, dtype=np.int64) % 997 + 1).astype(np.float64)
    return {"sum": f9(v.sum()), "sum_sq": f9((v * v).sum()), "max_abs": f9(np.abs(v).max()),
            "index_weighted_sum": f9((v * weights).sum()),
            "first": [shortest_f32(a) for a in values.reshape(-1)[:4]]}


def flat_outputs(net, x):
    cls, reg = net(x)
    return list(cls) + list(reg)


def frozen_prefixes(name: str) -> tuple:
    return () if name == demo_model.NAME else FROZEN_PREFIXES


def freeze(net) -> list:
    frozen = []
    prefixes = frozen_prefixes(net.name)
    for key, p in net.named_parameters():
        if prefixes and key.startswith(prefixes):
            p.requires_grad_(False)
            frozen.append(key)
    return frozen


class ReluHook:
    """Replaces torch.nn.functional.relu (model.py calls F.relu) while active.

    record mode: y = relu(x) unchanged; keeps (x, y) of every call in forward order ("slots") and
    retains y.grad, the gradient arriving at the ReLU output.
    masks mode:  y = x * masks[slot], i.e. the ReLU with the given (float64 run's) masks; its
    gradient is g * mask, so a float32 run in this mode has rounding error only, no mask flips.
    """

    def __init__(self, masks=None):
        self.masks = masks
        self.calls = []

    def __enter__(self):
        self.original = F.relu
        F.relu = self._relu
        return self

    def __exit__(self, *exc):
        F.relu = self.original

    def _relu(self, x, inplace=False):
        slot = len(self.calls)
        if self.masks is None:
            y = self.original(x)
            if y.requires_grad:
                y.retain_grad()
        else:
            y = x * self.masks[slot].to(x.dtype)
        self.calls.append((x, y))
        return y


def train_bn(name: str) -> bool:
    """Whether the model's BN trains with batch statistics (train() mode; C# NormEval = false)."""
    return name == demo_model.NAME and not demo_model.NORM_EVAL


def build(name: str, dtype) -> tuple:
    net = demo_model.build() if name == demo_model.NAME else reference_model.build(name)
    seeded.load_seeded(net)
    net = net.to(dtype)
    if train_bn(name):
        net.train()                 # BN on batch statistics; each forward updates the running ones
    else:
        net.eval()                  # eval: BN on running statistics, nothing updated
    net.seeded_buffers = {k: v.clone() for k, v in net.named_buffers()}
    frozen = freeze(net)
    return net, frozen


def forward_backward(net, x: torch.Tensor, grads: list, retain_graph: bool = False) -> tuple:
    """Forward + backward of L = sum(G * out) from the seeded buffers; returns (outputs, per-output
    dot(G, out), L, buffers unchanged). A train-mode-BN model's buffers are left as the forward updated them."""
    with torch.no_grad():
        for k, v in net.named_buffers():
            v.copy_(net.seeded_buffers[k])
    outs = flat_outputs(net, x)
    dots = [(g * o).sum() for g, o in zip(grads, outs)]
    loss = torch.stack(dots).sum()
    loss.backward(retain_graph=retain_graph)
    unchanged = all(torch.equal(net.seeded_buffers[k], v) for k, v in net.named_buffers())
    assert unchanged != train_bn(net.name), "a buffer changed during forward/backward" if unchanged is False else "train-mode BN updated no buffer"
    return [o.detach() for o in outs], [float(d) for d in dots], float(loss), unchanged


def running_stats(net) -> dict:
    """running_mean / running_var (float64 copies) and num_batches_tracked of every BN, by BN key."""
    out = {}
    for key, m in net.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            out[key] = (m.running_mean.detach().double().numpy().copy(), m.running_var.detach().double().numpy().copy(),
                        int(m.num_batches_tracked))
    return out


def trainable_grads(net) -> dict:
    return {k: p.grad.detach().double().numpy().reshape(-1).copy()
            for k, p in net.named_parameters() if p.requires_grad}


def grad_record(g64: np.ndarray, probe: np.ndarray, idx: list, float32_values: bool) -> dict:
    sample = shortest_f32 if float32_values else f9
    return {"norm": f9(np.sqrt((g64 * g64).sum())), "max_abs": f9(np.abs(g64).max()),
            "probe": f9((g64 * probe.astype(np.float64)).sum()),
            "samples": [sample(g64[i]) for i in idx]}


def f3(x: float) -> float:
    x = float(x)
    return float(f"{x:.3g}") if x else 0.0


def up3(x: float) -> float:
    """A non-negative tolerance term rounded up to 3 significant digits (never below x)."""
    x = float(x)
    if x <= 0.0:
        return 0.0
    e = math.floor(math.log10(x)) - 2
    v = math.ceil(x / 10.0 ** e) * 10.0 ** e
    v = float(f"{v:.3g}")
    while v < x:
        v = float(f"{v + 10.0 ** e:.3g}")
    return v


def tolerance_ratio(param: dict, g: np.ndarray, probe: np.ndarray) -> float:
    """Worst |measured - f64| / tolerance over the samples, the norm and the probe (<= 1 passes)."""
    ref, rnd, fl = param["f64"], param["rounding"], param["flips"]
    idx = list(range(EDGE_SAMPLES)) + list(range(g.size - EDGE_SAMPLES, g.size)) + param["seeded_indices"]
    worst = 0.0
    for i, r, f in zip(idx, ref["samples"], fl["samples"]):
        tol = ROUNDING_K * rnd["max_abs_diff"] + FLIP_M * f + FLOOR * ref["max_abs"]
        worst = max(worst, abs(float(g[i]) - r) / tol)
    norm = float(np.sqrt((g * g).sum()))
    tol = ROUNDING_K * rnd["l2_diff"] + FLIP_M * fl["l2"] + FLOOR * ref["norm"]
    worst = max(worst, abs(norm - ref["norm"]) / tol)
    rms_probe = float(np.sqrt((probe * probe).mean()))
    tol = ROUNDING_K * rnd["l2_diff"] * rms_probe + FLIP_M * fl["probe"] + FLOOR * ref["norm"] * rms_probe * math.sqrt(g.size)
    worst = max(worst, abs(float((g * probe).sum()) - ref["probe"]) / tol)
    return worst


def count_flips(calls_a, calls_b) -> int:
    return int(sum(int(((xa.detach() > 0) != (xb.detach() > 0)).sum())
                   for (xa, _), (xb, _) in zip(calls_a, calls_b) if xb.requires_grad))


def make(name: str) -> dict:
    t0 = time.time()
    net32, frozen = build(name, torch.float32)
    net64, frozen64 = build(name, torch.float64)
    assert frozen == frozen64

    x_np = batch_input()
    x32 = torch.from_numpy(x_np)
    x64 = x32.double()
    with torch.no_grad():
        shapes = [tuple(o.shape) for o in flat_outputs(net32, x32)]
    g_np = [seeded.uniform(OUTPUT_GRAD_KEY_PREFIX + n, int(np.prod(s)), -1.0, 1.0).reshape(s)
            for n, s in zip(OUTPUT_NAMES, shapes)]
    g32 = [torch.from_numpy(g) for g in g_np]
    g64 = [g.double() for g in g32]

    # 1. The reference runs: plain PyTorch float32 and float64 (ReLU calls only recorded).
    with ReluHook() as rec32:
        outs32, dots32, loss32, unchanged32 = forward_backward(net32, x32, g32)
    stats32 = running_stats(net32)
    with ReluHook() as rec64:
        outs64, dots64, loss64, unchanged64 = forward_backward(net64, x64, g64, retain_graph=True)
    stats64 = running_stats(net64)
    for net in (net32, net64):
        for key, p in net.named_parameters():
            if not p.requires_grad:
                assert p.grad is None, f"frozen {key} got a gradient"
    a32, a64 = trainable_grads(net32), trainable_grads(net64)
    keys = list(a64)
    params64 = [p for k, p in net64.named_parameters() if p.requires_grad]

    # 2. float32 with the float64 run's ReLU masks: PyTorch's float32 rounding error alone.
    masks = [(x.detach() > 0) for x, _ in rec64.calls]
    for p in net32.parameters():
        p.grad = None
    with ReluHook(masks):
        forward_backward(net32, x32, g32)
    n32 = trainable_grads(net32)

    # 2b. A second float32 implementation: PyTorch without oneDNN (im2col + GEMM convolutions,
    #     other summation orders, so other ReLU flips). Only used to check the tolerance rule.
    for p in net32.parameters():
        p.grad = None
    with torch.backends.mkldnn.flags(enabled=False), ReluHook() as rec_alt:
        forward_backward(net32, x32, g32)
    alt32 = trainable_grads(net32)
    stats_alt = running_stats(net32)

    # 3. ReLU inputs a float32 implementation may put on the other side of 0: |x64| < Z * rms of
    #    PyTorch's float32 error on that ReLU's input. Flipping element e changes every parameter
    #    gradient upstream of it by delta_e = -/+ (dL/dy_e) * d x_e / d theta (exactly linear:
    #    the forward value at e is ~1e-6 either way).
    candidates = []
    flip_abs = {k: np.zeros_like(v) for k, v in a64.items()}
    flip_l2 = {k: 0.0 for k in keys}
    torch_flip_sum = {k: np.zeros_like(v) for k, v in a64.items()}
    probes = {}
    for key in keys:
        probes[key] = seeded.uniform(PROBE_KEY_PREFIX + key, a64[key].size, -1.0, 1.0).astype(np.float64)
    flip_probe = {k: 0.0 for k in keys}
    for slot, ((xa, _), (xb, yb)) in enumerate(zip(rec32.calls, rec64.calls)):
        if not xb.requires_grad:
            continue                  # frozen part (stem, layer1): no parameter gradient through it
        d = xa.detach().double() - xb.detach()
        rms = float(d.pow(2).mean().sqrt())
        flat64 = xb.reshape(-1)
        z = (xb.detach().abs() / rms).reshape(-1)
        for k in torch.nonzero(z < RELU_CANDIDATE_Z).reshape(-1).tolist():
            on64 = bool(flat64[k] > 0)
            flipped = bool((xa.reshape(-1)[k] > 0) != on64)
            g_up = float(yb.grad.reshape(-1)[k])
            dx = torch.autograd.grad(flat64[k], params64, retain_graph=True, allow_unused=True)
            sign = -1.0 if on64 else 1.0
            for key, gk in zip(keys, dx):
                if gk is None:
                    continue
                delta = sign * g_up * gk.detach().numpy().reshape(-1)
                flip_abs[key] += np.abs(delta)
                flip_l2[key] += float(np.sqrt((delta * delta).sum()))
                flip_probe[key] += abs(float((delta * probes[key]).sum()))
                if flipped:
                    torch_flip_sum[key] += delta
            candidates.append({"slot": slot, "index": int(k), "shape": list(xb.shape),
                               "z": f3(float(z[k])), "x_f64": f9(float(flat64[k])),
                               "grad_out_f64": f9(g_up), "flipped_by_torch_fp32": flipped})
    seconds = time.time() - t0

    outputs = []
    for n, o32, o64, d32, d64 in zip(OUTPUT_NAMES, outs32, outs64, dots32, dots64):
        diff = float((o32.double() - o64).abs().max())
        m = float(o64.abs().max())
        outputs.append({"name": n, "shape": list(o64.shape), "max_abs": f9(m),
                        "dot_grad_f64": f9(d64), "dot_grad_f32": f9(d32),
                        "fp32_vs_fp64_max_abs_diff": f9(diff), "fp32_vs_fp64_rel_to_max_abs": f9(diff / m)})

    shapes_by_key = {k: list(p.shape) for k, p in net64.named_parameters()}
    params, flip_model_worst = [], 0.0
    for key in keys:
        a, b, n = a32[key], a64[key], n32[key]
        numel = b.size
        idx = all_sample_indices(key, numel)
        r32, r64 = grad_record(a, probes[key], idx, True), grad_record(b, probes[key], idx, False)
        e = a - b
        en = n - b
        max_diff, l2_diff = float(np.abs(e).max()), float(np.sqrt((e * e).sum()))
        # Check of the flip model: float32 = float64 + rounding + the effects of PyTorch's own flips.
        resid = a - (n + torch_flip_sum[key])
        if l2_diff > 0:
            flip_model_worst = max(flip_model_worst, float(np.sqrt((resid * resid).sum())) / l2_diff)
        params.append({
            "key": key, "shape": shapes_by_key[key], "numel": int(numel),
            "probe_rms": f9(np.sqrt((probes[key] * probes[key]).mean())),
            "seeded_indices": idx[2 * EDGE_SAMPLES:],
            "f64": r64, "f32": r32,
            "fp32_vs_fp64": {
                "max_abs_diff": f9(max_diff), "l2_diff": f9(l2_diff),
                "rel_max": f9(max_diff / r64["max_abs"]) if r64["max_abs"] else 0.0,
                "rel_l2": f9(l2_diff / r64["norm"]) if r64["norm"] else 0.0,
                "probe_abs_diff": f9(abs(r32["probe"] - r64["probe"])),
            },
            "rounding": {"max_abs_diff": up3(np.abs(en).max()), "l2_diff": up3(np.sqrt((en * en).sum()))},
            "flips": {"max_abs": up3(flip_abs[key].max()), "l2": up3(flip_l2[key]),
                      "probe": up3(flip_probe[key]), "samples": [up3(flip_abs[key][i]) for i in idx]},
        })

    # Summaries of a known vector, so the C# summariser (indices, probe, order) is checked by itself.
    self_tests = []
    for key in (keys[-1], max(keys, key=lambda k: a64[k].size)):
        vec = seeded.uniform(SELF_TEST_KEY_PREFIX + key, a64[key].size, -1.0, 1.0).astype(np.float64)
        self_tests.append({"key": key, "vector_key": SELF_TEST_KEY_PREFIX + key, "low": -1.0, "high": 1.0,
                           "summary": grad_record(vec, probes[key], all_sample_indices(key, vec.size), True)})

    # Running statistics after the one forward of a train-mode-BN model, with their tolerance terms.
    stats_doc, stats_ratio_torch, stats_ratio_alt = [], 0.0, 0.0
    if train_bn(name):
        for key, (mean64, var64, tracked) in stats64.items():
            entry = {"key": key, "num_batches_tracked": tracked}
            for field, v64, v32, valt in (("running_mean", mean64, stats32[key][0], stats_alt[key][0]),
                                          ("running_var", var64, stats32[key][1], stats_alt[key][1])):
                diff = float(np.abs(v32 - v64).max())
                tol = RUNNING_K * up3(diff) + FLOOR * float(np.abs(v64).max())
                stats_ratio_torch = max(stats_ratio_torch, diff / tol)
                stats_ratio_alt = max(stats_ratio_alt, float(np.abs(valt - v64).max()) / tol)
                entry[field] = {"f64": [f9(v) for v in v64], "fp32_max_abs_diff": up3(diff),
                                "no_onednn_fp32_max_abs_diff": f9(float(np.abs(valt - v64).max()))}
            assert tracked == 1 and stats32[key][2] == 1
            stats_doc.append(entry)

    ratio_torch = max(tolerance_ratio(q, a32[q["key"]], probes[q["key"]]) for q in params)
    ratio_alt = max(tolerance_ratio(q, alt32[q["key"]], probes[q["key"]]) for q in params)
    wm = max(params, key=lambda q: q["fp32_vs_fp64"]["rel_max"])
    wl = max(params, key=lambda q: q["fp32_vs_fp64"]["rel_l2"])
    wr = max(params, key=lambda q: q["rounding"]["max_abs_diff"] / q["f64"]["max_abs"])
    doc = {
        "about": "Parameter gradients of L = sum over the ten outputs of sum(G * output) for the "
                 "seeded network on a seeded padded batch; made by tools/reference/backward_grads.py "
                 "(its docstring and tools/reference/README.md give every formula).",
        "model": name, "torch_version": torch.__version__,
        "mode": ("whole model train() (BN on batch statistics, running stats updated once)" if train_bn(name)
                 else "whole model eval (BN on running stats, not updated)") + "; frozen: " + (", ".join(frozen_prefixes(name)) or "nothing"),
        "batch_norm": "batch statistics" if train_bn(name) else "running statistics",
        "input": {
            "shape": list(BATCH_SHAPE),
            "images": [{"index": n, "key": f"{INPUT_KEY_PREFIX}{n}", "height": h, "width": w,
                        "low": -2.0, "high": 2.0} for n, (h, w) in enumerate(IMAGE_SIZES)],
            "layout": "image n's values at [n, c, y, x] for y < height, x < width (index "
                      "(c*height + y)*width + x of its key), zeros elsewhere",
            "checksum": checksum(x_np),
        },
        "output_grads": [{"name": n, "key": OUTPUT_GRAD_KEY_PREFIX + n, "shape": list(g.shape),
                          "low": -1.0, "high": 1.0, "checksum": checksum(g)}
                         for n, g in zip(OUTPUT_NAMES, g_np)],
        "outputs": outputs,
        "loss_f64": f9(loss64), "loss_f32": f9(loss32),
        "sampling": {"probe_key_prefix": PROBE_KEY_PREFIX, "probe_low": -1.0, "probe_high": 1.0,
                     "sample_key_prefix": SAMPLE_KEY_PREFIX, "edge_samples": EDGE_SAMPLES,
                     "seeded_samples": SEEDED_SAMPLES,
                     "samples_order": "0..7, numel-8..numel-1, seeded_indices[0..31]"},
        "summary_self_test": self_tests,
        "frozen_keys": frozen,
        "buffers_unchanged": bool(unchanged32 and unchanged64),
        "running_stats": stats_doc,
        "running_stats_tolerance": {"k": RUNNING_K, "floor": FLOOR,
                                    "rule": "per tensor: max |x - f64| <= k * fp32_max_abs_diff + floor * max |f64|"},
        "trainable_count": len(params),
        "tolerance": {"rounding_k": ROUNDING_K, "flip_m": FLIP_M, "floor": FLOOR,
                      "rule": "|x - f64| <= rounding_k * R + flip_m * F + floor * S; samples: R = "
                              "rounding.max_abs_diff, F = flips.samples[j], S = f64.max_abs; norm: R = "
                              "rounding.l2_diff, F = flips.l2, S = f64.norm; probe: R = rounding.l2_diff * "
                              "probe_rms, F = flips.probe, S = f64.norm * probe_rms * sqrt(numel)"},
        "relu": {
            "calls": len(rec64.calls), "trainable_calls": sum(1 for x, _ in rec64.calls if x.requires_grad),
            "trainable_elements": int(sum(x.numel() for x, _ in rec64.calls if x.requires_grad)),
            "candidate_z": RELU_CANDIDATE_Z,
            "candidates": candidates,
            "flip_model_check": f3(flip_model_worst),
        },
        "summary": {
            "worst_rel_max": {"key": wm["key"], "rel_max": wm["fp32_vs_fp64"]["rel_max"]},
            "worst_rel_l2": {"key": wl["key"], "rel_l2": wl["fp32_vs_fp64"]["rel_l2"]},
            "median_rel_max": f9(float(np.median([q["fp32_vs_fp64"]["rel_max"] for q in params]))),
            "worst_rounding_rel_max": {"key": wr["key"], "rel_max": f3(wr["rounding"]["max_abs_diff"] / wr["f64"]["max_abs"])},
            "torch_fp32_flips": count_flips(rec32.calls, rec64.calls),
            "torch_fp32_flips_among_candidates": sum(1 for c in candidates if c["flipped_by_torch_fp32"]),
            "no_onednn_fp32_flips": count_flips(rec_alt.calls, rec64.calls),
            "tolerance_ratio_torch_fp32": f3(ratio_torch),
            "tolerance_ratio_no_onednn_fp32": f3(ratio_alt),
            "running_stats_ratio_torch_fp32": f3(stats_ratio_torch),
            "running_stats_ratio_no_onednn_fp32": f3(stats_ratio_alt),
            "seconds": round(seconds, 1),
        },
        "params": params,
    }
    return doc


def write(doc: dict) -> str:
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, doc["model"] + ".json")
    compact = {"separators": (",", ":")}
    lines = ["{"]
    for field, value in doc.items():
        if field == "params":
            continue
        lines.append(f' {json.dumps(field)}:{json.dumps(value, **compact)},')
    lines.append(' "params":[')
    lines.append(",\n".join("  " + json.dumps(q, **compact) for q in doc["params"]))
    lines.append(" ]")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main(argv: list) -> int:
    torch.set_num_threads(int(os.environ.get("REFERENCE_THREADS", "1")))
    names = argv or list(reference_model.VARIANTS) + [demo_model.NAME]
    for name in names:
        doc = make(name)
        path = write(doc)
        s = doc["summary"]
        print(f"{name}: {doc['trainable_count']} trainable, {len(doc['frozen_keys'])} frozen; "
              f"{os.path.getsize(path):,} bytes; {s['seconds']} s; L {doc['loss_f64']}; "
              f"torch fp32 vs fp64: worst rel_max {s['worst_rel_max']['rel_max']:.2e} "
              f"({s['worst_rel_max']['key']}), worst rel_l2 {s['worst_rel_l2']['rel_l2']:.2e}, "
              f"median rel_max {s['median_rel_max']:.2e}; rounding only (fp64 masks) worst rel_max "
              f"{s['worst_rounding_rel_max']['rel_max']:.2e}; ReLU candidates "
              f"{len(doc['relu']['candidates'])}, torch flips {s['torch_fp32_flips']}, "
              f"flip-model residual {doc['relu']['flip_model_check']:.2e}; all torch flips "
              f"{s['torch_fp32_flips']} (in candidates {s['torch_fp32_flips_among_candidates']}), "
              f"no-oneDNN flips {s['no_onednn_fp32_flips']}; tolerance ratio torch "
              f"{s['tolerance_ratio_torch_fp32']:.3g}, no-oneDNN {s['tolerance_ratio_no_onednn_fp32']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
