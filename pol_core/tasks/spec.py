"""A task: a frozen description of model, data, step and margins, pinned by a spec hash."""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from ..genesis_init import compute_genesis_state
from ..keccak import keccak256, new_keccak256
from ..step import process_config_check
from ..types import DatasetError, Hash32, InvalidTaskConfig
from ..weights import compute_entry_prefix, compute_tensor_bytes, compute_weights_hash, count_learnable

SPEC_VERSION = "pol-task-spec/2"  # /2: portable genesis, floats as decimal strings


@dataclass(frozen=True)
class TaskConfig:
    name: str
    arch: str  # a versioned architecture id; the constructor for it lives in this package
    init_seed: int  # seed of the portable genesis weights (pol_core.genesis_init, pol-genesis-init/1)
    batch_size: int  # S
    lr: float
    optimizer: str  # "sgd" (plain SGD, no momentum, no weight decay), the only one step.py defines
    mean: tuple[float, ...]  # per channel, applied after dividing uint8 pixels by `scale`
    std: tuple[float, ...]
    scale: float
    eval_batch: int  # test-set chunk size; fixed so every verifier runs the same kernels
    delta_margin: float  # prover-side: every required |dw| must exceed this
    logit_margin: float  # prover-side: predictions this close to a tie count against the prover
    sabotage_tolerance: int  # correct answers W may lose against the parent's W'
    allow_equal: bool  # the paper's non-strict check (unchanged weights pass); off by default
    initial_difficulty: int
    rules: str  # "chain-bound" or "paper" (pol_core.rulesets.RuleSet)
    max_segment_steps: int  # chain-bound: most training steps one block's segment may hold
    max_step_batch: int  # chain-bound: largest batch of one segment step, 4^j * S
    extra: tuple[tuple[str, str], ...] = field(default=())  # data options, e.g. the test-set size


@dataclass(frozen=True)
class TaskData:
    """Raw data exactly as hashed: uint8 images (N, C, H, W) and int64 labels (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def compute_dataset_fingerprint(data: TaskData) -> Hash32:
    """keccak256 over the four tensors in the weights-hash entry format, names train_x ... test_y."""
    h = new_keccak256()
    for name in ("train_x", "train_y", "test_x", "test_y"):
        t = getattr(data, name)
        h.update(compute_entry_prefix(name, t))
        h.update(compute_tensor_bytes(t))
    return Hash32(h.digest())


def compute_decimal(x: float) -> str:
    """A binary64 value as the spec hash writes it: the shortest decimal that reads back as exactly x,
    in positional notation (no exponent), with ".0" when it has no fraction. 0.01 -> "0.01",
    1e-06 -> "0.000001", 16.0 -> "16.0". Another language gets the same string from its
    shortest-round-trip formatter, or copies it from docs/PROTOCOL.md, which lists every task's."""
    # NaN and infinities have no decimal; no task parameter may be one.
    if not math.isfinite(x):
        raise InvalidTaskConfig(f"a task parameter must be finite, got {x!r}")
    text = format(Decimal(repr(x)), "f")  # repr: shortest round-trip digits; "f": positional
    return text if "." in text else text + ".0"


def compute_spec_document(config: TaskConfig, dataset_fingerprint: Hash32, genesis_weights_hash: Hash32,
                          num_params: int) -> bytes:
    """The canonical JSON whose keccak256 is the spec hash: every TaskConfig field under its Python
    name (floats as compute_decimal strings, tuples as arrays, `extra` as [key, value] pairs), keys
    sorted, no whitespace, ASCII only."""
    pinned: dict[str, Any] = {}
    for f in fields(config):
        v = getattr(config, f.name)
        if isinstance(v, float):
            pinned[f.name] = compute_decimal(v)
        elif f.name in ("mean", "std"):
            pinned[f.name] = [compute_decimal(float(m)) for m in v]
        elif f.name == "extra":
            pinned[f.name] = [[str(k), str(val)] for k, val in v]
        else:
            pinned[f.name] = v  # str, int, bool
    doc = {
        "version": SPEC_VERSION,
        "config": pinned,
        "datasetFingerprint": "0x" + dataset_fingerprint.hex(),
        "genesisWeightsHash": "0x" + genesis_weights_hash.hex(),
        "numParams": num_params,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def compute_spec_hash(config: TaskConfig, dataset_fingerprint: Hash32, genesis_weights_hash: Hash32, num_params: int) -> Hash32:
    """keccak256 of compute_spec_document: the task's identity on chain."""
    return keccak256(compute_spec_document(config, dataset_fingerprint, genesis_weights_hash, num_params))


def validate_data(data: TaskData, channels: int) -> None:
    for split in ("train", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        # Images are stored as uint8 NCHW; anything else is not the format that is hashed.
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != channels:
            raise DatasetError(f"{split}_x must be uint8 (N, {channels}, H, W), got {x.dtype} {tuple(x.shape)}")
        # Every image needs exactly one int64 label.
        if y.dtype != torch.int64 or y.shape != (x.shape[0],):
            raise DatasetError(f"{split}_y must be int64 ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")


class Task:
    """A loaded task: data as float tensors ready for the step, the genesis model, the spec hash."""

    def __init__(self, config: TaskConfig, data: TaskData, build: Callable[[], nn.Module]):
        process_config_check(config)
        self.config = config
        self.raw = data
        self._build = build
        mean = torch.tensor(config.mean).view(1, -1, 1, 1)
        std = torch.tensor(config.std).view(1, -1, 1, 1)
        self.train_x = (data.train_x.float() / config.scale - mean) / std  # (N, C, H, W)
        self.train_y = data.train_y
        self.test_x = (data.test_x.float() / config.scale - mean) / std
        self.test_y = data.test_y
        self.fingerprint = compute_dataset_fingerprint(data)
        with torch.random.fork_rng(devices=[]):  # torch's own init runs in build(); keep callers' RNG
            layout = build()
        self.genesis_state = compute_genesis_state(config.arch, config.init_seed, layout)
        self.genesis_hash = compute_weights_hash(self.genesis_state)
        self.num_params = count_learnable(layout)
        self.spec_hash = compute_spec_hash(config, self.fingerprint, self.genesis_hash, self.num_params)
        self._scratch = threading.local()

    def with_rules(self, rules: str) -> "Task":
        """The same model and data under the other rule set (a different spec hash)."""
        from dataclasses import replace

        return Task(replace(self.config, rules=rules), self.raw, self._build)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def builder(self) -> Callable[[], nn.Module]:
        """The architecture's constructor (module-level, so other processes can find it by name)."""
        return self._build

    @property
    def train_size(self) -> int:
        return int(self.train_x.shape[0])

    def new_model(self) -> nn.Module:
        """The architecture with the genesis weights (pol-genesis-init/1: no RNG, no kernels)."""
        with torch.random.fork_rng(devices=[]):
            model = self._build()
        model.load_state_dict(self.genesis_state, strict=True)
        return model

    def scratch_model(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """A per-thread CPU model loaded with `state`: constructing (and initialising) a fresh
        ResNet-18 for every verification would cost more than the step being verified."""
        model: nn.Module | None = getattr(self._scratch, "model", None)
        if model is None:
            model = self._scratch.model = self.new_model()
        model.load_state_dict(state, strict=True)
        return model

    def model_from_state(self, state: Mapping[str, torch.Tensor], device: str | torch.device = "cpu") -> nn.Module:
        model = self.new_model()
        model.load_state_dict(state, strict=True)
        return model.to(device)

    def batch(self, indices: Iterable[int], device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return self.train_x[idx].to(device), self.train_y[idx].to(device)  # (S, C, H, W), (S,)
