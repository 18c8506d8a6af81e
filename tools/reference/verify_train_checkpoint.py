#!/usr/bin/python3
"""Checks a training checkpoint written by GhmGen with PyTorch itself (CI never runs Python).

    dotnet test tests/GhmGen.Runtime.Tests -c Release --filter "FullyQualifiedName~TrainingCheckpointTests"
    D=tests/GhmGen.Runtime.Tests/bin/Release/net10.0/train-checkpoint-verify
    /usr/bin/python3 tools/reference/verify_train_checkpoint.py $D/train_by_ghmgen.pth $D/train_by_ghmgen.expected.json
    /usr/bin/python3 tools/reference/verify_train_checkpoint.py $D/train_by_ghmgen_adamw.pth $D/train_by_ghmgen_adamw.expected.json

The C# test (TrainingCheckpointTests.Writes_a_file_for_torch_to_verify) trains a small state for
two steps, saves it, then takes a third step and records SHA-256 of every parameter and buffer.
Writes_an_AdamW_file_for_torch_to_verify does the same with AdamW (its expected.json says
"optimizer": "adamw"). This script:
  1. torch.load()s the file: meta (epoch, iter, ghmgen_resume), state_dict, optimizer;
  2. builds nn.Parameters from the state dict in the optimiser's index order and a
     torch.optim.SGD(momentum 0.9, weight_decay 1e-4), or a torch.optim.AdamW(weight_decay from
     the json, default betas and eps), over them, then opt.load_state_dict();
  3. checks the loaded momentum buffers (AdamW: step, exp_avg, exp_avg_sq) against the saved
     SHA-256s, and that torch's own state_dict() of the loaded optimiser has the same layout
     (AdamW: the same param-group keys in the same order, and the same state keys and types);
  4. takes the third step in torch (mmcv order: clip_grad_norm_(35) over parameters with a
     gradient, then step) and compares grad_norm, every parameter and every buffer (AdamW: every
     step count and both moments) with GhmGen's, bit for bit.
Exit status 0 when everything agrees.
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seeded_weights import uniform  # noqa: E402


def sha(t):
    return hashlib.sha256(t.detach().contiguous().numpy().astype("<f4").tobytes()).hexdigest()


def adamw_state(st):
    """As the C# test's StateSha: "step sha(exp_avg) sha(exp_avg_sq)" ("2", not "2.0", for a whole step)."""
    step = float(st["step"])
    return f"{int(step) if step.is_integer() else step} {sha(st['exp_avg'])} {sha(st['exp_avg_sq'])}"


def main(path, expected_path):
    torch.set_num_threads(1)
    with open(expected_path) as f:
        want = json.load(f)
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    ckpt = torch.load(path, map_location="cpu")
    check(sorted(ckpt) == ["meta", "optimizer", "state_dict"], f"top-level keys {sorted(ckpt)}")
    meta = ckpt["meta"]
    resume = meta["ghmgen_resume"]
    check(meta["epoch"] == want["epoch"] and meta["iter"] == want["iter"], f"meta epoch {meta['epoch']} iter {meta['iter']}")
    check(resume["iter_in_epoch"] == want["iter_in_epoch"] and resume["data_seed"] == want["data_seed"],
          f"resume iter_in_epoch {resume['iter_in_epoch']} data_seed {resume['data_seed']}")
    keys = resume["optimizer_param_keys"]
    check(keys == want["parameter_keys"], f"optimizer_param_keys = all {len(keys)} parameters in state-dict order")

    sd = ckpt["state_dict"]
    params = [torch.nn.Parameter(sd[k].clone()) for k in keys]
    trained = set(want["trained_keys"])
    for k, p in zip(keys, params):
        p.requires_grad_(k in trained)
    adamw = want.get("optimizer") == "adamw"
    if adamw:
        opt = torch.optim.AdamW(params, lr=0.5, weight_decay=want["weight_decay"])
        for g in opt.param_groups:
            g["initial_lr"] = 0.5  # mmcv's LrUpdaterHook adds it
        fresh_keys = list(opt.state_dict()["param_groups"][0])
        saved_group = ckpt["optimizer"]["param_groups"][0]
        check(list(saved_group) == fresh_keys, f"param group keys {list(saved_group)} are torch's {fresh_keys}")
        check(isinstance(saved_group["betas"], tuple) and saved_group["foreach"] is None
              and saved_group["amsgrad"] is False and saved_group["maximize"] is False and saved_group["capturable"] is False,
              "betas is a tuple, foreach None, amsgrad/maximize/capturable False")
        for i, st in ckpt["optimizer"]["state"].items():
            ok = (list(st) == ["step", "exp_avg", "exp_avg_sq"] and torch.is_tensor(st["step"]) and st["step"].dim() == 0
                  and st["step"].dtype == torch.float32 and st["exp_avg"].shape == params[i].shape)
            if not ok:
                check(False, f"state {i} is {{'step': 0-dim float32, 'exp_avg', 'exp_avg_sq'}}")
                break
        else:
            check(True, f"{len(ckpt['optimizer']['state'])} states are {{'step': 0-dim float32 tensor, 'exp_avg', 'exp_avg_sq'}}")
    else:
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    opt.load_state_dict(ckpt["optimizer"])
    group = opt.param_groups[0]
    initial_lr = want.get("initial_lr", 0.01)
    check(group["lr"] == want["lr_saved"] and group["initial_lr"] == initial_lr, f"param group lr {group['lr']!r} initial_lr {group['initial_lr']!r}")
    if adamw:
        check(group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8 and group["weight_decay"] == want["weight_decay"] and not group["amsgrad"],
              "param group betas, eps, weight_decay, amsgrad")
        # opt.state is a defaultdict: .get() so that no empty entries are created for frozen ones.
        loaded = {k: adamw_state(opt.state[p]) for k, p in zip(keys, params) if "exp_avg" in opt.state.get(p, {})}
        check(loaded == want["states_saved"], f"{len(loaded)} AdamW states (step, exp_avg, exp_avg_sq) loaded onto the right parameters")
    else:
        check(group["momentum"] == 0.9 and group["weight_decay"] == 1e-4 and group["dampening"] == 0 and not group["nesterov"],
              "param group momentum, weight_decay, dampening, nesterov")
        # opt.state is a defaultdict: .get() so that no empty entries are created for frozen ones.
        loaded = {k: sha(opt.state[p]["momentum_buffer"]) for k, p in zip(keys, params) if "momentum_buffer" in opt.state.get(p, {})}
        check(loaded == want["buffers_saved"], f"{len(loaded)} momentum buffers loaded onto the right parameters")
    again = opt.state_dict()
    check(again["param_groups"][0]["params"] == list(range(len(keys))) and sorted(again["state"]) == sorted(ckpt["optimizer"]["state"]),
          "torch's state_dict() of the loaded optimiser has the same indices")

    step = want["next_step"]
    for g in opt.param_groups:
        g["lr"] = step["lr"]
    for k, p in zip(keys, params):
        p.grad = torch.from_numpy(uniform(f"grad2/{k}", p.numel(), -0.5, 0.5).reshape(p.shape)) if k in trained else None
    with_grad = [p for p in params if p.requires_grad and p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(with_grad, step["max_norm"], norm_type=2)
    norm_bits = struct.unpack("<I", struct.pack("<f", float(norm)))[0]
    check(norm_bits == step["grad_norm_f32"], f"grad_norm {float(norm)!r} (bits {norm_bits:#x}) equals GhmGen's")
    opt.step()
    got_params = {k: sha(p) for k, p in zip(keys, params)}
    check(got_params == step["parameters"], f"all {len(keys)} parameters after the next step equal GhmGen's bit for bit")
    if adamw:
        got_states = {k: adamw_state(opt.state[p]) for k, p in zip(keys, params) if "exp_avg" in opt.state.get(p, {})}
        check(got_states == step["states"], f"all {len(got_states)} AdamW states after the next step equal GhmGen's bit for bit")
    else:
        got_buffers = {k: sha(opt.state[p]["momentum_buffer"]) for k, p in zip(keys, params) if "momentum_buffer" in opt.state.get(p, {})}
        check(got_buffers == step["buffers"], f"all {len(got_buffers)} momentum buffers after the next step equal GhmGen's bit for bit")
    print(f"torch {torch.__version__}: {'OK' if not failures else str(len(failures)) + ' FAILED'}")
    return 0 if not failures else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
