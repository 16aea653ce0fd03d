"""digits-cnn: scikit-learn's bundled 8x8 digits and a small CNN with BatchNorm. Runs offline."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .spec import Task, TaskConfig, TaskData, validate_data

CONFIG = TaskConfig(
    name="digits-cnn",
    arch="digits-cnn/v2",
    init_seed=20211,
    batch_size=4,
    lr=0.01,
    optimizer="sgd",
    mean=(0.5,),
    std=(0.5,),
    scale=16.0,  # pixel values are 0..16
    eval_batch=512,
    delta_margin=1e-6,
    logit_margin=1e-3,
    sabotage_tolerance=5,
    allow_equal=False,
    initial_difficulty=4,
    rules="chain-bound",
    max_segment_steps=32,
    max_step_batch=256,
)


def build_digits_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),  # (B, 8, 8, 8); BatchNorm would zero a bias's gradient
        nn.BatchNorm2d(8),
        nn.SiLU(),  # smooth: no weight sits behind a mostly-zero gradient, so each requirement is ~1 bit
        nn.Conv2d(8, 16, 3, padding=1, bias=False),  # (B, 16, 8, 8)
        nn.BatchNorm2d(16),
        nn.SiLU(),  # smooth: no weight sits behind a mostly-zero gradient, so each requirement is ~1 bit
        nn.MaxPool2d(2),  # (B, 16, 4, 4)
        nn.Flatten(),
        nn.Linear(256, 10),
    )


def load_digits_data() -> TaskData:
    """Every fifth sample (index % 5 == 0) is the test set; the rest, in order, is the train set."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images.astype(np.uint8)).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.from_numpy(d.target.astype(np.int64))
    is_test = torch.arange(len(labels)) % 5 == 0
    data = TaskData(images[~is_test], labels[~is_test], images[is_test], labels[is_test])
    validate_data(data, channels=1)
    return data


def load_digits_task() -> Task:
    return Task(CONFIG, load_digits_data(), build_digits_cnn)
