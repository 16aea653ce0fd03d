"""The portable genesis: golden values, and a reimplementation from the specification alone."""
import math
import struct
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from pol_core.genesis_init import (
    GenesisInitError,
    compute_fan_in_bound,
    compute_genesis_state,
    compute_splitmix64,
    compute_tensor_key,
    compute_uniform,
    get_init_rules,
)
from pol_core.keccak import keccak256
from pol_core.tasks.cifar import CONFIG as CIFAR, build_resnet18_cifar
from pol_core.tasks.digits import CONFIG as DIGITS, build_digits_cnn
from pol_core.weights import compute_weights_hash

DIGITS_GENESIS = "9fa8768524d6e2e2f4610bf667ffd06e06022cdd52de636182f256d601e32637"
RESNET_GENESIS = "98b8d93d58b0eb0588fa0833a188e3a9cb5a5b3f083c6db5f26e2000cb94fa12"
M64 = (1 << 64) - 1


# ── the specification, written again with Python integers and binary64 floats only ──

def spec_key(seed: int, name: str) -> int:
    return int.from_bytes(keccak256(b"pol-genesis-init/1" + seed.to_bytes(8, "big") + name.encode())[:8], "big")


def spec_splitmix64(key: int, i: int) -> int:
    s = (key + (i + 1) * 0x9E3779B97F4A7C15) & M64
    s = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & M64
    s = ((s ^ (s >> 27)) * 0x94D049BB133111EB) & M64
    return s ^ (s >> 31)


def to_f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]  # one IEEE rounding, to nearest even


def spec_value(key: int, i: int, b: float) -> float:
    k = 2 * (spec_splitmix64(key, i) >> 40) + 1 - (1 << 24)
    return to_f32(k * b * 2.0**-24)


def spec_state(seed: int, entries: list[tuple[str, tuple[int, ...], str, float]]) -> "OrderedDict[str, torch.Tensor]":
    """entries: (name, shape, rule, bound or constant), as the PROTOCOL table gives them."""
    out = OrderedDict()
    for name, shape, rule, v in entries:
        n = math.prod(shape)
        if rule == "uniform":
            key = spec_key(seed, name)
            out[name] = torch.tensor([spec_value(key, i, v) for i in range(n)], dtype=torch.float32).reshape(shape)
        elif name.endswith("num_batches_tracked"):
            out[name] = torch.zeros(shape, dtype=torch.int64)
        else:
            out[name] = torch.full(shape, v, dtype=torch.float32)
    return out


def bn(prefix: str, c: int) -> list:
    return [(f"{prefix}.weight", (c,), "const", 1.0), (f"{prefix}.bias", (c,), "const", 0.0),
            (f"{prefix}.running_mean", (c,), "const", 0.0), (f"{prefix}.running_var", (c,), "const", 1.0),
            (f"{prefix}.num_batches_tracked", (), "const", 0)]


def test_splitmix64_is_the_standard_generator():
    # The first output of Vigna's splitmix64 seeded with 0.
    assert int(compute_splitmix64(0, 1)[0]) == 0xE220A8397B1DCDAF == spec_splitmix64(0, 0)
    key = compute_tensor_key(20211, "0.weight")
    assert key == spec_key(20211, "0.weight") == 0x905D2CDABA0DE240
    assert [int(z) for z in compute_splitmix64(key, 3)] == [spec_splitmix64(key, i) for i in range(3)] == [
        0xBA1E937B21A4F2E5, 0xF4852C08ACF708EC, 0x74D82E77D56C8245]


def test_golden_values_digits_first_weights():
    b = compute_fan_in_bound((8, 1, 3, 3))  # fan_in 9: b = binary32(1/3)
    assert b.view(np.uint32) == 0x3EAAAAAB
    w = compute_uniform(compute_tensor_key(20211, "0.weight"), 4, b)
    assert [hex(v) for v in w.view(np.uint32)] == ["0x3e1afc34", "0x3e9b5c3c", "0xbcedfc20", "0x3d9302fe"]


def test_digits_genesis_reimplemented_from_the_spec():
    b_conv1, b_conv2, b_fc = (to_f32(1 / math.sqrt(9)), to_f32(1 / math.sqrt(72)), to_f32(1 / math.sqrt(256)))
    entries = [("0.weight", (8, 1, 3, 3), "uniform", b_conv1), *bn("1", 8),
               ("3.weight", (16, 8, 3, 3), "uniform", b_conv2), *bn("4", 16),
               ("8.weight", (10, 256), "uniform", b_fc), ("8.bias", (10,), "uniform", b_fc)]
    spec = spec_state(DIGITS.init_seed, entries)
    ours = compute_genesis_state(DIGITS.arch, DIGITS.init_seed, build_digits_cnn())
    assert list(spec) == list(ours)
    for name in spec:
        assert torch.equal(spec[name], ours[name]), name
    assert compute_weights_hash(spec).hex() == compute_weights_hash(ours).hex() == DIGITS_GENESIS


def test_resnet_genesis_golden_hash_and_spec_samples():
    model = build_resnet18_cifar()
    ours = compute_genesis_state(CIFAR.arch, CIFAR.init_seed, model)
    assert compute_weights_hash(ours).hex() == RESNET_GENESIS
    rules = get_init_rules(CIFAR.arch, model)
    # The stem and the classifier keep torch's default bound; the other convolutions torchvision's.
    assert rules["conv1.weight"] == ("uniform", float(to_f32(1 / math.sqrt(27))))
    assert rules["layer1.0.conv1.weight"] == ("uniform", float(to_f32(math.sqrt(6 / (64 * 9)))))
    assert rules["layer2.0.downsample.0.weight"] == ("uniform", float(to_f32(math.sqrt(6 / 128))))
    assert rules["fc.weight"] == rules["fc.bias"] == ("uniform", float(to_f32(1 / math.sqrt(512))))
    for name, (rule, b) in rules.items():
        if rule != "uniform":
            continue
        flat = ours[name].reshape(-1)
        key = spec_key(CIFAR.init_seed, name)
        for i in (0, 1, flat.numel() // 2, flat.numel() - 1):
            assert flat[i].item() == spec_value(key, i, b), (name, i)


def test_values_lie_strictly_inside_the_bound_and_match_the_uniform_law():
    state = compute_genesis_state(CIFAR.arch, CIFAR.init_seed, build_resnet18_cifar())
    w = state["layer4.1.conv2.weight"].double()  # 2.36M values
    b = math.sqrt(6 / (512 * 9))
    assert w.abs().max() < b and (w != 0).all()
    assert abs(w.mean().item()) < 1e-3 * b
    assert abs(w.std().item() / (b / math.sqrt(3)) - 1) < 2e-3
    assert float(state["bn1.running_var"].min()) == 1.0 and int(state["bn1.num_batches_tracked"]) == 0
    assert state["bn1.num_batches_tracked"].dtype == torch.int64


def test_seed_and_name_each_change_the_values():
    a = compute_genesis_state(DIGITS.arch, 1, build_digits_cnn())
    b = compute_genesis_state(DIGITS.arch, 2, build_digits_cnn())
    assert not torch.equal(a["0.weight"], b["0.weight"])
    assert compute_tensor_key(1, "3.weight") != compute_tensor_key(1, "0.weight")


def test_genesis_ignores_the_values_torch_initialised():
    m1, m2 = build_digits_cnn(), build_digits_cnn()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m2.parameters():
            p.normal_()
    h1 = compute_weights_hash(compute_genesis_state(DIGITS.arch, DIGITS.init_seed, m1))
    assert h1 == compute_weights_hash(compute_genesis_state(DIGITS.arch, DIGITS.init_seed, m2))


def test_undefined_layers_and_architectures_are_refused():
    with pytest.raises(GenesisInitError, match="architecture"):
        get_init_rules("mystery/v1", build_digits_cnn())
    with pytest.raises(GenesisInitError, match="no genesis rule"):
        get_init_rules(DIGITS.arch, nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)))
