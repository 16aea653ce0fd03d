"""Task registry: a task is loaded by name; only digits-cnn needs no arguments.

The names and `load_task` import no torch; `Task`, `TaskConfig` and `TaskData` load on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, cast

from ..types import UnknownTask

if TYPE_CHECKING:
    from .spec import Task, TaskConfig, TaskData

TASK_NAMES = ("digits-cnn", "cifar10-resnet18")


def process_task_args_check(name: str, data_dir: str | None = None, rules: str | None = None) -> None:
    """The checks load_task makes before it loads anything."""
    # Only registered tasks have a pinned architecture and dataset.
    if name not in TASK_NAMES:
        raise UnknownTask(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)}")
    # CIFAR-10 is never bundled; the user names where it is.
    if name == "cifar10-resnet18" and data_dir is None:
        raise UnknownTask("cifar10-resnet18 needs --data-dir (a directory in torchvision's CIFAR-10 format)")
    if rules is not None:
        from ..rulesets import parse_rules

        parse_rules(rules)  # WrongRules for a name neither rule set has


def load_task(name: str, data_dir: str | None = None, download: bool = False, test_limit: int | None = None,
              rules: str | None = None) -> Task:
    """`rules` overrides the task's rule set ("paper" or "chain-bound"); it is part of the spec hash."""
    process_task_args_check(name, data_dir, rules)
    task = _load_task(name, data_dir, download, test_limit)
    if rules is None or rules == task.config.rules:
        return task
    return task.with_rules(rules)


def _load_task(name: str, data_dir: str | None, download: bool, test_limit: int | None) -> Task:
    if name == "digits-cnn":
        from .digits import load_digits_task

        return load_digits_task()
    from .cifar import load_cifar_task

    return load_cifar_task(cast(str, data_dir), download=download, test_limit=test_limit)


def __getattr__(name: str) -> Any:
    if name in ("Task", "TaskConfig", "TaskData"):
        return getattr(importlib.import_module(".spec", __name__), name)
    raise AttributeError(f"module 'pol_core.tasks' has no attribute {name!r}")


__all__ = ["Task", "TaskConfig", "TaskData", "TASK_NAMES", "load_task", "process_task_args_check"]
