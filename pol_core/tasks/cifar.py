"""cifar10-resnet18: the paper's setting, CIFAR-10 from a directory in torchvision's format."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..types import DatasetError
from .spec import Task, TaskConfig, TaskData, validate_data

BATCH_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"

CONFIG = TaskConfig(
    name="cifar10-resnet18",
    arch="resnet18-cifar/v1",
    init_seed=20211,
    batch_size=4,
    lr=0.001,
    optimizer="sgd",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    scale=255.0,
    eval_batch=500,
    delta_margin=1e-7,
    logit_margin=1e-3,
    sabotage_tolerance=50,
    allow_equal=False,
    initial_difficulty=8,
    rules="chain-bound",
    max_segment_steps=16,
    max_step_batch=64,
)


def build_resnet18_cifar() -> nn.Module:
    """torchvision's resnet18 in its CIFAR form: 3x3 stride-1 stem and no max-pool."""
    from torchvision.models import resnet18

    model: nn.Module = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)  # (B, 64, 32, 32)
    model.maxpool = nn.Identity()
    return model


def read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    # The user names the directory; a missing file must say which one.
    if not path.is_file():
        raise DatasetError(f"CIFAR-10 file not found: {path}")
    with path.open("rb") as f:
        entry = pickle.load(f, encoding="latin1")
    # torchvision's format: a dict with 'data' (N, 3072) uint8 and 'labels' (or 'fine_labels').
    if "data" not in entry or not ("labels" in entry or "fine_labels" in entry):
        raise DatasetError(f"{path} is not a CIFAR-10 batch file")
    x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    return torch.from_numpy(x.copy()), torch.from_numpy(y)


def load_cifar_data(root: str | Path, download: bool = False, test_limit: int | None = None) -> TaskData:
    root = Path(root)
    if download:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)
    base = root / BATCH_DIR if (root / BATCH_DIR).is_dir() else root
    parts = [read_cifar_batch(base / name) for name in TRAIN_FILES]
    train_x = torch.cat([p[0] for p in parts])
    train_y = torch.cat([p[1] for p in parts])
    test_x, test_y = read_cifar_batch(base / TEST_FILE)
    if test_limit is not None:
        test_x, test_y = test_x[:test_limit], test_y[:test_limit]
    data = TaskData(train_x, train_y, test_x, test_y)
    validate_data(data, channels=3)
    return data


def load_cifar_task(root: str | Path, download: bool = False, test_limit: int | None = None) -> Task:
    config = CONFIG
    if test_limit is not None:
        from dataclasses import replace

        config = replace(CONFIG, extra=(("test_limit", str(test_limit)),))
    return Task(config, load_cifar_data(root, download, test_limit), build_resnet18_cifar)


def write_cifar_like(root: str | Path, n_train_per_file: int, n_test: int, seed: int = 0) -> Path:
    """Random data in CIFAR-10's on-disk format, for tests and benchmarks without the real set."""
    rng = np.random.default_rng(seed)
    base = Path(root) / BATCH_DIR
    base.mkdir(parents=True, exist_ok=True)
    for name, n in [(f, n_train_per_file) for f in TRAIN_FILES] + [(TEST_FILE, n_test)]:
        entry = {
            "batch_label": name,
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=n).tolist(),
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        with (base / name).open("wb") as f:
            pickle.dump(entry, f)
    return Path(root)
