"""Task registry: a task is loaded by name; only digits-cnn needs no arguments."""
from __future__ import annotations

from ..types import UnknownTask
from .spec import Task, TaskConfig, TaskData

TASK_NAMES = ("digits-cnn", "cifar10-resnet18")


def load_task(name: str, data_dir: str | None = None, download: bool = False, test_limit: int | None = None,
              rules: str | None = None) -> Task:
    """`rules` overrides the task's rule set ("paper" or "chain-bound"); it is part of the spec hash."""
    task = _load_task(name, data_dir, download, test_limit)
    if rules is None or rules == task.config.rules:
        return task
    return task.with_rules(rules)


def _load_task(name: str, data_dir: str | None, download: bool, test_limit: int | None) -> Task:
    if name == "digits-cnn":
        from .digits import load_digits_task

        return load_digits_task()
    if name == "cifar10-resnet18":
        from .cifar import load_cifar_task

        # CIFAR-10 is never bundled; the user names where it is.
        if data_dir is None:
            raise UnknownTask("cifar10-resnet18 needs --data-dir (a directory in torchvision's CIFAR-10 format)")
        return load_cifar_task(data_dir, download=download, test_limit=test_limit)
    raise UnknownTask(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)}")


__all__ = ["Task", "TaskConfig", "TaskData", "TASK_NAMES", "load_task"]
