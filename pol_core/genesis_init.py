"""Portable genesis weights: integer hashing and exact float arithmetic, no PRNG and no kernels.

Specification (pol-genesis-init/1; docs/PROTOCOL.md "Genesis weights"). For every entry of the
model's state_dict, in order, with `seed` the task's init_seed:

  key    = first 8 bytes, big-endian, of keccak256("pol-genesis-init/1" || u64be(seed) || utf8(name))
  z_i    = splitmix64(key, i) for element i = 0, 1, ... of the tensor in row-major order:
             s = key + (i + 1) * 0x9E3779B97F4A7C15              (all mod 2^64)
             s = (s ^ (s >> 30)) * 0xBF58476D1CE4E5B9
             s = (s ^ (s >> 27)) * 0x94D049BB133111EB
             z = s ^ (s >> 31)
  k_i    = 2 * (z_i >> 40) + 1 - 2^24                            (odd, |k_i| < 2^24)
  w_i    = binary32(k_i * b * 2^-24), the exact product rounded once, to nearest, ties to even

so w_i lies strictly inside (-b, b). The bound b is a binary32 value computed in binary64:

| entry | rule | b |
|---|---|---|
| Conv2d / Linear weight, torch's default | uniform | binary32(1 / sqrt(fan_in)), fan_in = weight[0].numel() |
| Conv2d / Linear bias | uniform | the weight's b |
| Conv2d weight under torchvision's ResNet init | uniform | binary32(sqrt(6 / fan_out)), fan_out = shape[0] * shape[2] * shape[3] |
| BatchNorm weight, running_var | constant | 1.0 |
| BatchNorm bias, running_mean | constant | 0.0 |
| BatchNorm num_batches_tracked | constant | 0 (int64) |

1/sqrt(fan_in) is the bound of torch's kaiming_uniform_(a=sqrt(5)); sqrt(6/fan_out) gives the
variance of torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu") with a uniform law
(a normal law would need log and cos, whose last bits differ between math libraries). Which
convolutions take the ResNet rule is part of the architecture (`FAN_OUT_CONVS`).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch
from torch import nn

from .keccak import keccak256

INIT_VERSION = b"pol-genesis-init/1"
GAMMA = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
HALF = 1 << 24

# Per architecture: which Conv2d weights follow torchvision's ResNet init instead of torch's default.
# resnet18-cifar/v1 replaces the stem `conv1` after torchvision's init, so the stem keeps the default.
FAN_OUT_CONVS: dict[str, Callable[[str], bool]] = {
    "digits-cnn/v2": lambda name: False,
    "resnet18-cifar/v1": lambda name: name != "conv1",
}


class GenesisInitError(ValueError):
    """The model holds a tensor the genesis rules do not define."""


def compute_tensor_key(seed: int, name: str) -> int:
    return int.from_bytes(keccak256(INIT_VERSION + seed.to_bytes(8, "big") + name.encode("utf-8"))[:8], "big")


def compute_splitmix64(key: int, n: int) -> np.ndarray:
    """z_0 .. z_{n-1} as uint64 (numpy's uint64 arithmetic wraps mod 2^64)."""
    s = np.uint64(key) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GAMMA)  # (n,)
    s = (s ^ (s >> np.uint64(30))) * np.uint64(MIX1)
    s = (s ^ (s >> np.uint64(27))) * np.uint64(MIX2)
    return s ^ (s >> np.uint64(31))


def compute_uniform(key: int, n: int, bound: np.float32) -> np.ndarray:
    k = (compute_splitmix64(key, n) >> np.uint64(40)).astype(np.int64) * 2 + 1 - HALF  # odd, |k| < 2^24
    # k (24 bits) times a binary32 bound (24 bits) is exact in binary64; astype rounds once.
    return (k.astype(np.float64) * np.float64(bound) * 2.0**-24).astype(np.float32)


def compute_fan_in_bound(weight_shape: tuple[int, ...]) -> np.float32:
    return np.float32(1.0 / math.sqrt(math.prod(weight_shape[1:])))


def compute_fan_out_relu_bound(weight_shape: tuple[int, ...]) -> np.float32:
    return np.float32(math.sqrt(6.0 / (weight_shape[0] * math.prod(weight_shape[2:]))))


def get_init_rules(arch: str, model: nn.Module) -> "OrderedDict[str, tuple[str, float]]":
    """(rule, value) per state_dict entry: ("uniform", b) or ("const", c)."""
    # An architecture without a rule table would get a genesis nobody specified.
    if arch not in FAN_OUT_CONVS:
        raise GenesisInitError(f"no genesis rules for architecture {arch!r}")
    rules: dict[str, tuple[str, float]] = {}
    for mname, m in model.named_modules():
        prefix = mname + "." if mname else ""
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            shape = tuple(m.weight.shape)
            fan_out = isinstance(m, nn.Conv2d) and FAN_OUT_CONVS[arch](mname)
            b = compute_fan_out_relu_bound(shape) if fan_out else compute_fan_in_bound(shape)
            rules[prefix + "weight"] = ("uniform", float(b))
            if m.bias is not None:
                rules[prefix + "bias"] = ("uniform", float(compute_fan_in_bound(shape)))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            rules.update({prefix + "weight": ("const", 1.0), prefix + "bias": ("const", 0.0),
                          prefix + "running_mean": ("const", 0.0), prefix + "running_var": ("const", 1.0),
                          prefix + "num_batches_tracked": ("const", 0)})
    names = list(model.state_dict().keys())
    # Every tensor must have exactly one rule, or the genesis would depend on torch's own init.
    if sorted(rules) != sorted(names):
        missing = sorted(set(names) - set(rules))
        raise GenesisInitError(f"{arch}: no genesis rule for {missing[:3]}")
    return OrderedDict((n, rules[n]) for n in names)


def compute_genesis_state(arch: str, seed: int, model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """The genesis weights for `model`'s layout; `model`'s own values are never read."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    reference = model.state_dict()
    for name, (rule, value) in get_init_rules(arch, model).items():
        ref = reference[name]
        if rule == "uniform":
            data = compute_uniform(compute_tensor_key(seed, name), ref.numel(), np.float32(value))
            out[name] = torch.from_numpy(data).reshape(ref.shape)
        else:
            out[name] = torch.full(ref.shape, value, dtype=ref.dtype)
    return out


def process_genesis_init(arch: str, seed: int, model: nn.Module) -> nn.Module:
    """Overwrite every parameter and buffer of `model` with the genesis weights, in place."""
    model.load_state_dict(compute_genesis_state(arch, seed, model), strict=True)
    return model
