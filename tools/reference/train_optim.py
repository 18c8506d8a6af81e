#!/usr/bin/python3
"""Reference fixtures for GhmGen's optimiser side of training (docs/TRAINING.md §4-§5).

Run by hand with Debian's PyTorch 1.13 (CI never runs Python):

    /usr/bin/python3 tools/reference/train_optim.py [OUT_DIR]

OUT_DIR defaults to tests/GhmGen.Runtime.Tests/Fixtures/Training. Writes:

  sgd_reference.json   three steps of mmcv's OptimizerHook on a small parameter list, done by
                       torch itself: clip_grad_norm_(max_norm=35) then SGD(momentum 0.9,
                       weight_decay 1e-4). Inputs are seeded (seeded_weights.uniform, the twin of
                       SeededWeights.FillUniform), so the C# test regenerates them; the fixture
                       holds torch's per-tensor norms, total norm and clip coefficient as float32
                       bits, and SHA-256 of every gradient after clipping, every parameter and
                       every momentum buffer after each step. One parameter is frozen (never a
                       gradient), one gets its first gradient at step 2.
  mmdet_all.pth        an mmcv-style training checkpoint whose optimiser state indexes every
                       parameter (frozen included), as mmdetection writes it (zip format);
  mmdet_all_legacy.pth the same in the pre-1.6 legacy format;
  mmdet_trained.pth    the same with the optimiser built over the trained parameters only;
  mmdet_checkpoints.json what the three files hold (keys, progress, lr, buffer values);
  adamw_reference.json three steps of torch.optim.AdamW(betas (0.9, 0.999), eps 1e-8,
                       weight_decay 0.05, amsgrad off) on the same parameter list, without
                       clipping, the lr changing between steps: SHA-256 of every parameter,
                       exp_avg and exp_avg_sq after each step, each parameter's step count, and
                       the first values as float32 bits. The frozen parameter never has a
                       gradient; the late one gets its first at step 2 (its own step 1), with
                       gradients so small there that eps matters in its denominator.

Parameters are plain float32 tensors; the network does not matter to the optimiser.
"""
import collections
import hashlib
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seeded_weights import uniform  # noqa: E402

MAX_NORM = 35.0
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4

# key, shape, role: "trained", "frozen" (never a gradient), "late" (first gradient at step 2)
PARAMETERS = [
    ("backbone.conv1.weight", (4, 3, 3, 3), "frozen"),
    ("backbone.layer2.0.conv1.weight", (512, 512, 3, 3), "trained"),   # R-50's largest tensor
    ("backbone.layer2.0.bn1.weight", (7,), "trained"),
    ("backbone.layer2.0.bn1.bias", (1,), "trained"),
    ("neck.fpn_convs.0.conv.weight", (70001,), "trained"),              # odd length: SIMD tails
    ("bbox_head.retina_cls.bias", (720,), "late"),
    ("bbox_head.retina_reg.weight", (36, 256, 3, 3), "trained"),
]
# (lr, gradient half-range) per step: step 0 is not clipped, steps 1 and 2 are.
STEPS = [(0.01, 1e-3), (0.005005, 0.5), (0.02, 0.05)]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def sha(t):
    return hashlib.sha256(t.detach().contiguous().numpy().astype("<f4").tobytes()).hexdigest()


def grad_for(step, key, shape, half):
    n = int(np.prod(shape))
    return torch.from_numpy(uniform(f"grad{step}/{key}", n, -half, half).reshape(shape))


def sgd_reference():
    params = []
    for key, shape, _ in PARAMETERS:
        n = int(np.prod(shape))
        params.append(torch.nn.Parameter(torch.from_numpy(uniform(key, n, -0.5, 0.5).reshape(shape))))
    opt = torch.optim.SGD(params, lr=STEPS[0][0], momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    steps = []
    for s, (lr, half) in enumerate(STEPS):
        for group in opt.param_groups:
            group["lr"] = lr
        for (key, shape, role), p in zip(PARAMETERS, params):
            has = role == "trained" or (role == "late" and s >= 2)
            p.grad = grad_for(s, key, shape, half) if has else None
        with_grad = [p for p in params if p.grad is not None]  # mmcv clip_grads' filter
        norms = [torch.norm(p.grad.detach(), 2) for p in with_grad]
        total = torch.nn.utils.clip_grad_norm_(with_grad, MAX_NORM, norm_type=2)
        coef = torch.clamp(MAX_NORM / (total + 1e-6), max=1.0)
        clipped = {key: sha(p.grad) for (key, _, _), p in zip(PARAMETERS, params) if p.grad is not None}
        opt.step()
        steps.append({
            "lr": lr,
            "gradient_half_range": half,
            "norms_f32": [f32_bits(n) for n in norms],
            "total_norm_f32": f32_bits(total),
            "total_norm": float(total),
            "clip_coef_f32": f32_bits(coef),
            "clipped_gradients": clipped,
            "parameters": {key: sha(p) for (key, _, _), p in zip(PARAMETERS, params)},
            "buffers": {key: sha(opt.state[p]["momentum_buffer"]) for (key, _, _), p in zip(PARAMETERS, params)
                        if "momentum_buffer" in opt.state.get(p, {})},
            "sample": {key: [f32_bits(x) for x in p.detach().reshape(-1)[:4].tolist()] for (key, _, _), p in zip(PARAMETERS, params)},
        })
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "max_norm": MAX_NORM, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
        "parameters": [{"key": k, "shape": list(s), "role": r} for k, s, r in PARAMETERS],
        "init": "seeded_weights.uniform(key, n, -0.5, 0.5)",
        "gradient": "seeded_weights.uniform(f'grad{step}/{key}', n, -half, half)",
        "steps": steps,
    }


ADAMW_BETAS = (0.9, 0.999)
ADAMW_EPS = 1e-8
ADAMW_WEIGHT_DECAY = 0.05
# (lr, gradient half-range) per step; the late parameter's first gradient (step 2) is tiny.
ADAMW_STEPS = [(1e-3, 1e-3), (5.005e-4, 0.5), (2e-3, 1e-6)]


def adamw_reference():
    params = []
    for key, shape, _ in PARAMETERS:
        n = int(np.prod(shape))
        params.append(torch.nn.Parameter(torch.from_numpy(uniform(key, n, -0.5, 0.5).reshape(shape))))
    opt = torch.optim.AdamW(params, lr=ADAMW_STEPS[0][0], betas=ADAMW_BETAS, eps=ADAMW_EPS,
                            weight_decay=ADAMW_WEIGHT_DECAY, amsgrad=False)
    steps = []
    for s, (lr, half) in enumerate(ADAMW_STEPS):
        for group in opt.param_groups:
            group["lr"] = lr
        for (key, shape, role), p in zip(PARAMETERS, params):
            has = role == "trained" or (role == "late" and s >= 2)
            p.grad = grad_for(s, key, shape, half) if has else None
        opt.step()
        state = {key: opt.state[p] for (key, _, _), p in zip(PARAMETERS, params) if len(opt.state.get(p, {})) > 0}
        steps.append({
            "lr": lr,
            "gradient_half_range": half,
            "parameters": {key: sha(p) for (key, _, _), p in zip(PARAMETERS, params)},
            "step": {key: float(st["step"]) for key, st in state.items()},
            "exp_avg": {key: sha(st["exp_avg"]) for key, st in state.items()},
            "exp_avg_sq": {key: sha(st["exp_avg_sq"]) for key, st in state.items()},
            "sample": {key: [f32_bits(x) for x in p.detach().reshape(-1)[:4].tolist()] for (key, _, _), p in zip(PARAMETERS, params)},
            "exp_avg_sample": {key: [f32_bits(x) for x in st["exp_avg"].reshape(-1)[:4].tolist()] for key, st in state.items()},
            "exp_avg_sq_sample": {key: [f32_bits(x) for x in st["exp_avg_sq"].reshape(-1)[:4].tolist()] for key, st in state.items()},
        })
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "betas": list(ADAMW_BETAS), "eps": ADAMW_EPS, "weight_decay": ADAMW_WEIGHT_DECAY,
        "parameters": [{"key": k, "shape": list(s), "role": r} for k, s, r in PARAMETERS],
        "init": "seeded_weights.uniform(key, n, -0.5, 0.5)",
        "gradient": "seeded_weights.uniform(f'grad{step}/{key}', n, -half, half), not clipped",
        "steps": steps,
    }


# A small detector-like state dict: parameters and buffers interleaved as state_dict() orders them.
CKPT_STATE = [
    ("backbone.conv1.weight", (2, 3, 1, 1), "frozen"),
    ("backbone.bn1.weight", (2,), "frozen"),
    ("backbone.bn1.bias", (2,), "frozen"),
    ("backbone.bn1.running_mean", (2,), "buffer"),
    ("backbone.bn1.running_var", (2,), "buffer"),
    ("backbone.bn1.num_batches_tracked", (), "counter"),
    ("backbone.layer2.0.conv1.weight", (3, 2, 1, 1), "trained"),
    ("backbone.layer2.0.bn1.weight", (3,), "trained"),
    ("backbone.layer2.0.bn1.bias", (3,), "trained"),
    ("backbone.layer2.0.bn1.running_mean", (3,), "buffer"),
    ("backbone.layer2.0.bn1.running_var", (3,), "buffer"),
    ("backbone.layer2.0.bn1.num_batches_tracked", (), "counter"),
    ("bbox_head.loss_cls.acc_sum", (30,), "buffer"),
    ("bbox_head.retina_cls.weight", (4, 3, 1, 1), "trained"),
    ("bbox_head.retina_cls.bias", (4,), "trained"),
]


def mmdet_checkpoints(out_dir):
    state = collections.OrderedDict()
    for key, shape, role in CKPT_STATE:
        n = int(np.prod(shape)) if shape else 1
        if role == "counter":
            state[key] = torch.tensor(0, dtype=torch.int64)
        else:
            state[key] = torch.from_numpy(uniform(key, n, -1.0, 1.0).reshape(shape))
    all_keys = [k for k, _, r in CKPT_STATE if r in ("trained", "frozen")]
    trained_keys = [k for k, _, r in CKPT_STATE if r == "trained"]
    described = {"parameter_keys": all_keys, "trained_keys": trained_keys, "files": {}}
    for name, keys, legacy in (("mmdet_all.pth", all_keys, False), ("mmdet_all_legacy.pth", all_keys, True),
                               ("mmdet_trained.pth", trained_keys, False)):
        params = {k: torch.nn.Parameter(state[k].clone()) for k in all_keys}
        for k in all_keys:
            params[k].requires_grad_(k in trained_keys)
        opt = torch.optim.SGD([params[k] for k in keys], lr=0.01, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])  # mmcv LrUpdaterHook.before_run
        for step, lr in enumerate((1.0000000000000009e-05, 2.9980000000000563e-05)):
            for group in opt.param_groups:
                group["lr"] = lr
            for k in trained_keys:
                params[k].grad = grad_for(step, k, tuple(params[k].shape), 0.1)
            opt.step()
        sd = collections.OrderedDict((k, params[k].detach() if k in params else v) for k, v in state.items())
        meta = {"mmcv_version": "1.7.2", "CLASSES": ("a", "b", "c", "d"), "epoch": 1, "iter": 2, "hook_msgs": {}}
        path = os.path.join(out_dir, name)
        torch.save({"meta": meta, "state_dict": sd, "optimizer": opt.state_dict()}, path,
                   _use_new_zipfile_serialization=not legacy)
        described["files"][name] = {
            "indexing": "all" if keys is all_keys else "trained",
            "epoch": 1, "iter": 2, "lr": 2.9980000000000563e-05, "initial_lr": 0.01,
            "buffers": {k: [f32_bits(x) for x in opt.state[params[k]]["momentum_buffer"].reshape(-1).tolist()] for k in trained_keys},
        }
    with open(os.path.join(out_dir, "mmdet_checkpoints.json"), "w") as f:
        json.dump(described, f, indent=1)
        f.write("\n")


def main():
    torch.set_num_threads(int(os.environ.get("REFERENCE_THREADS", "1")))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "GhmGen.Runtime.Tests", "Fixtures", "Training")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "sgd_reference.json"), "w") as f:
        json.dump(sgd_reference(), f, indent=1)
        f.write("\n")
    mmdet_checkpoints(out_dir)
    with open(os.path.join(out_dir, "adamw_reference.json"), "w") as f:
        json.dump(adamw_reference(), f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(out_dir))


if __name__ == "__main__":
    main()
