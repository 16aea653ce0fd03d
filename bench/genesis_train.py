"""Does the portable genesis train like torch's own initialisation? Plain SGD on digits-cnn.

    .venv/bin/python bench/genesis_train.py [--epochs 3] [--seeds 3] [--init-seeds 3]

Both initialisations, each drawn with several init seeds (the task's own first), go through the same
plain batch-4 SGD at the task's learning rate with the same shuffles; the table gives the test
accuracy after each epoch: mean and range over init seeds x shuffle seeds.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch

from pol_core.genesis_init import process_genesis_init
from pol_core.step import compute_correct, process_update
from pol_core.tasks import load_task
from pol_core.tasks.digits import build_digits_cnn


def train(task, model, epochs: int, seed: int) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    n, s = task.train_size, task.config.batch_size
    out = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for i in range(0, n - s + 1, s):
            process_update(model, *task.batch(order[i : i + s].tolist()), task.config.lr)
        out.append(compute_correct(model, task.test_x, task.test_y, task.config.eval_batch) / len(task.test_y))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--init-seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = load_task("digits-cnn")
    seeds = [task.config.init_seed + i for i in range(args.init_seeds)]

    def torch_init(seed: int):
        torch.manual_seed(seed)
        return build_digits_cnn()

    inits = {
        "torch init (today)": torch_init,
        "portable (pol-genesis-init/1)": lambda seed: process_genesis_init(task.config.arch, seed, build_digits_cnn()),
    }
    print(f"digits-cnn, plain SGD, batch {task.config.batch_size}, lr {task.config.lr}, "
          f"{task.train_size} train / {len(task.test_y)} test, init seeds {seeds} x {args.seeds} shuffle seeds")
    print("| genesis | " + " | ".join(f"epoch {e + 1}" for e in range(args.epochs)) + " |")
    print("|---|" + "---:|" * args.epochs)
    for name, make in inits.items():
        runs = [train(task, make(i), args.epochs, s) for i in seeds for s in range(args.seeds)]
        cells = []
        for e in range(args.epochs):
            accs = [r[e] for r in runs]
            cells.append(f"{100 * statistics.mean(accs):.1f}% ({100 * min(accs):.1f}–{100 * max(accs):.1f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
