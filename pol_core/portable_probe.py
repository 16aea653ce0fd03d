"""Recompute a genesis and a short chain of updates, and print every hash: one process, one dispatch.

    python -m pol_core.portable_probe                         # pinned (what verifiers run)
    python -m pol_core.portable_probe --unpinned [--mkldnn off --nnpack off --threads 2]
    python -m pol_core.portable_probe --write-vector tests/vectors/portable_chain.json

The chain starts from the portable genesis W0 and applies `--steps` updates on fixed batches,
recording after each the weights hash and the test-set verdict (correct count and a hash of the
logits). Compared across processes started under different ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA
and MKL_CBWR values (tests/test_portable_dispatch.py, bench/dispatch_matrix.py), pinned runs must
agree bit for bit and with tests/vectors/portable_chain.json; unpinned runs show what the switches do.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Any

ENV_SWITCHES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


def compute_chain_indices(step: int, batch_size: int, train_size: int) -> list[int]:
    """Distinct indices spread over the train set, fixed by the step number."""
    return [((step * batch_size + t) * 97 + 13) % train_size for t in range(batch_size)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    env_in = {k: os.environ.get(k) for k in ENV_SWITCHES}  # as the shell set them, before any pin
    if not args.unpinned:
        from .portable import pin_cpu_dispatch

        pin_cpu_dispatch()
    import torch

    if args.unpinned:
        if args.mkldnn is not None:
            torch.backends.mkldnn.enabled = args.mkldnn == "on"
        if args.nnpack is not None:
            torch._C._set_nnpack_enabled(args.nnpack == "on")
        torch.set_num_threads(args.threads)

    from .genesis_init import process_genesis_init
    from .step import compute_logits, enable_deterministic_mode, process_update
    from .tasks import load_task
    from .tasks.cifar import build_resnet18_cifar
    from .tasks.digits import build_digits_cnn
    from .weights import compute_weights_hash, get_state

    enable_deterministic_mode()
    task = load_task(args.task, args.cifar_dir, test_limit=args.cifar_test if args.cifar_dir else None)
    with torch.random.fork_rng(devices=[]):  # the genesis as torch's own initialisation draws it
        torch.manual_seed(task.config.init_seed)
        build = {"digits-cnn": build_digits_cnn, "cifar10-resnet18": build_resnet18_cifar}[task.name]
        torch_init_hash = compute_weights_hash(get_state(build()))
    model = process_genesis_init(task.config.arch, task.config.init_seed, task.new_model())
    x_test, y_test = task.test_x, task.test_y

    def verdict() -> dict[str, Any]:
        logits = compute_logits(model, x_test, task.config.eval_batch)  # (N, classes)
        return {"correct": int((logits.argmax(dim=1) == y_test).sum()),
                "logits": hashlib.sha256(logits.numpy().tobytes()).hexdigest()[:16]}

    chain = [{"step": 0, "weights": compute_weights_hash(get_state(model)).hex(), **verdict()}]
    for step in range(args.steps):
        idx = compute_chain_indices(step, task.config.batch_size, task.train_size)
        process_update(model, *task.batch(idx), task.config.lr)
        chain.append({"step": step + 1, "indices": idx, "weights": compute_weights_hash(get_state(model)).hex(),
                      **verdict()})
    from .portable import get_dispatch_report

    report = get_dispatch_report()
    return {
        "task": task.name,
        "pinned": not args.unpinned,
        "env": env_in,
        "in_force": {"capability": report.cpu_capability, "mkl_cbwr_branch": report.mkl_cbwr_branch,
                     "mkldnn": report.mkldnn_enabled, "nnpack": report.nnpack_enabled, "threads": report.threads},
        "genesis_torch_init": torch_init_hash.hex(),
        "chain": chain,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="digits-cnn")
    ap.add_argument("--cifar-dir", help="CIFAR-10-format directory, for cifar10-resnet18")
    ap.add_argument("--cifar-test", type=int, default=64, help="test images used for cifar10-resnet18")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--unpinned", action="store_true", help="leave every switch as the environment set it")
    ap.add_argument("--mkldnn", choices=("on", "off"), help="with --unpinned: torch.backends.mkldnn.enabled")
    ap.add_argument("--nnpack", choices=("on", "off"), help="with --unpinned: NNPACK on or off")
    ap.add_argument("--threads", type=int, default=1, help="with --unpinned: torch.set_num_threads")
    ap.add_argument("--write-vector", metavar="PATH", help="pinned only: write the chain as a golden vector")
    args = ap.parse_args(argv)
    result = run(args)
    print(json.dumps(result))
    if args.write_vector:
        # A vector holds only what every pinned machine must reproduce, nothing about this one.
        if args.unpinned:
            ap.error("--write-vector needs the pinned dispatch")
        doc = {"task": result["task"], "genesisInit": "pol-genesis-init/1", "chain": result["chain"]}
        with open(args.write_vector, "w") as f:
            f.write(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
