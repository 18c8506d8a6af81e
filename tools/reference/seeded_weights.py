"""Deterministic "seeded" weights for the RetinaNet-GHM networks, identical in numpy and C#.

Every float32 state value is a pure function of (checkpoint key, row-major element index), so the
C# side (runtime/GhmGen.Runtime/Layers/SeededWeights.cs) regenerates the same tensors bit for bit
and no multi-MB weight file has to be committed.

    h   = splitmix64(fnv1a64(utf8(key)) + index)            (all uint64, wrapping)
    u   = (h >> 40) * 2**-24                                 (exact; 24 bits -> [0, 1))
    v   = float32(low + (high - low) * u)                    (low/high/u float64, one final cast)

fnv1a64: offset basis 0xcbf29ce484222325, prime 0x100000001b3, over the key's UTF-8 bytes.
splitmix64(x): z = x + 0x9e3779b97f4a7c15; z = (z ^ z>>30) * 0xbf58476d1ce4e5b9;
               z = (z ^ z>>27) * 0x94d049bb133111eb; return z ^ z>>31.
The affine map is evaluated in float64 exactly in this order, (high - low) first, then the
product, then the sum, then one round-to-nearest cast to float32. No FMA.

Roles, decided from the key alone (docs/MODEL.md §3 names):
  *.num_batches_tracked                   int64 0
  bbox_head.loss_cls.edges  [31]          float32(k) / 30 in float32; edges[30] += 1e-6 (float32)
  bbox_head.loss_bbox.edges [11]          float32(k) / 10 in float32; edges[10] = 1000
  *.acc_sum                               0
  *.running_mean                          U(-0.1, 0.1)
  *.running_var                           U(0.5, 1.5)
  BN (module name bn1/bn2/bn3 or downsample.1) .weight  U(0.5, 1.0), .bias U(-0.1, 0.1)
  conv .weight (4-d) [out, in/groups, kh, kw]   U(-s, s), s = sqrt(gain * 3 / fan_in),
                                          fan_in = in/groups * kh * kw; gain = 1 for keys
                                          starting "backbone.", 2 (He uniform) for neck and head
  bbox_head.retina_cls.bias               U(-4.59512 - 0.05, -4.59512 + 0.05)
  other conv .bias                        U(-0.05, 0.05)
  the network input (key "input")         U(-2, 2)
"""
from __future__ import annotations

import math

import numpy as np

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1

# Backbone convs: variance 1/fan_in (residual sums grow through 33 blocks otherwise);
# FPN and head convs: He gain 2 so the four ReLU head convs keep the signal above the biases.
BACKBONE_CONV_GAIN = 1.0
NECK_HEAD_CONV_GAIN = 2.0
RETINA_CLS_PRIOR_BIAS = -4.59512
INPUT_KEY = "input"


def fnv1a64(key: str) -> int:
    h = FNV_OFFSET
    for b in key.encode("utf-8"):
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform01(key: str, count: int, start: int = 0) -> np.ndarray:
    """float64 values in [0, 1), exact multiples of 2**-24, for element indices start..start+count-1."""
    base = np.uint64(fnv1a64(key))
    with np.errstate(over="ignore"):
        counters = base + np.arange(start, start + count, dtype=np.uint64)
    h = splitmix64(counters)
    return (h >> np.uint64(40)).astype(np.float64) * (2.0 ** -24)


def uniform(key: str, count: int, low: float, high: float) -> np.ndarray:
    u = uniform01(key, count)
    return (low + (high - low) * u).astype(np.float32)


def _module_leaf(key: str) -> tuple[str, str]:
    module, _, leaf = key.rpartition(".")
    return module, leaf


def is_batch_norm_module(module: str) -> bool:
    last = module.rpartition(".")[2]
    return module.endswith("downsample.1") or (last.startswith("bn") and last[2:].isdigit())


def ghmc_edges(bins: int = 30) -> np.ndarray:
    edges = np.arange(bins + 1, dtype=np.float32) / np.float32(bins)
    edges[-1] = edges[-1] + np.float32(1e-6)
    return edges


def ghmr_edges(bins: int = 10) -> np.ndarray:
    edges = np.arange(bins + 1, dtype=np.float32) / np.float32(bins)
    edges[-1] = np.float32(1e3)
    return edges


def role(key: str, shape: tuple[int, ...]) -> str:
    module, leaf = _module_leaf(key)
    if leaf == "num_batches_tracked":
        return "counter"
    if key == "bbox_head.loss_cls.edges":
        return "ghmc_edges"
    if key == "bbox_head.loss_bbox.edges":
        return "ghmr_edges"
    if leaf == "acc_sum":
        return "acc_sum"
    if leaf == "running_mean":
        return "bn_running_mean"
    if leaf == "running_var":
        return "bn_running_var"
    if is_batch_norm_module(module) and leaf == "weight":
        return "bn_weight"
    if is_batch_norm_module(module) and leaf == "bias":
        return "bn_bias"
    if leaf == "weight" and len(shape) == 4:
        return "conv_weight"
    if key == "bbox_head.retina_cls.bias":
        return "retina_cls_bias"
    if leaf == "bias" and len(shape) == 1:
        return "conv_bias"
    raise ValueError(f"seeded weights: no role for state key '{key}' with shape {list(shape)}")


def seeded_value(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The seeded tensor for one state key (float32, or int64 for num_batches_tracked)."""
    shape = tuple(int(d) for d in shape)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    r = role(key, shape)
    if r == "counter":
        return np.zeros(shape, dtype=np.int64)
    if r == "ghmc_edges":
        return ghmc_edges(count - 1).reshape(shape)
    if r == "ghmr_edges":
        return ghmr_edges(count - 1).reshape(shape)
    if r == "acc_sum":
        return np.zeros(shape, dtype=np.float32)
    if r == "bn_running_mean":
        low, high = -0.1, 0.1
    elif r == "bn_running_var":
        low, high = 0.5, 1.5
    elif r == "bn_weight":
        low, high = 0.5, 1.0
    elif r == "bn_bias":
        low, high = -0.1, 0.1
    elif r == "conv_weight":
        fan_in = shape[1] * shape[2] * shape[3]
        gain = BACKBONE_CONV_GAIN if key.startswith("backbone.") else NECK_HEAD_CONV_GAIN
        s = math.sqrt(gain * 3.0 / fan_in)
        low, high = -s, s
    elif r == "retina_cls_bias":
        low, high = RETINA_CLS_PRIOR_BIAS - 0.05, RETINA_CLS_PRIOR_BIAS + 0.05
    else:  # conv_bias
        low, high = -0.05, 0.05
    return uniform(key, count, low, high).reshape(shape)


def seeded_input(shape: tuple[int, ...]) -> np.ndarray:
    """The seeded network input: U(-2, 2) over key "input", row-major NCHW."""
    count = int(np.prod(shape, dtype=np.int64))
    return uniform(INPUT_KEY, count, -2.0, 2.0).reshape(shape)


def seeded_state_dict(model) -> "dict":
    """A state dict (torch tensors) for `model` with every entry replaced by its seeded value."""
    import torch

    out = {}
    for key, tensor in model.state_dict().items():
        value = seeded_value(key, tuple(tensor.shape))
        out[key] = torch.from_numpy(value.copy())
    return out


def load_seeded(model) -> None:
    model.load_state_dict(seeded_state_dict(model), strict=True)
