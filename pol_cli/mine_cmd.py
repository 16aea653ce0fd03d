"""`pol mine`: run a prover against a verifier, with a live status line and a clean Ctrl-C."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from . import args as types
from .errors import UserError

if TYPE_CHECKING:
    from prover.miner import MinerStats


def cmd_mine(args: argparse.Namespace) -> int:
    # Everything that can be checked without torch is checked first: the arguments (by argparse)
    # and the verifier, which must answer and serve the task asked for.
    from pol.client import VerifierClient

    from .chain_cmd import check_task_args

    check_task_args(args)
    client = VerifierClient(args.verifier, client_id=f"miner-{args.miner.hex()}", connect_timeout=args.connect_timeout)
    try:
        tip = client.get_tip()
    finally:
        client.close()
    if tip.task != args.task:
        raise UserError(f"the verifier at {args.verifier} runs task {tip.task!r}, not {args.task!r}: pass --task {tip.task}")

    import torch

    from pol_core.tasks import load_task
    from prover.miner import Miner, MinerConfig

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    # The deployment's rule set, as the verifier reports it: the task's spec hash (and the proof) depend on it.
    task = load_task(args.task, args.data_dir, test_limit=args.test_limit, rules=tip.rules or None)
    cfg = MinerConfig(target=args.verifier, miner=args.miner, mode=args.mode, device=args.device,
                      candidates=args.candidates, seed=args.seed, max_blocks=args.max_blocks,
                      reduced_precision=args.reduced_precision, train_batch=args.train_batch, train_every=args.train_every,
                      connect_timeout=args.connect_timeout)
    tty = sys.stdout.isatty()

    def show(s: MinerStats) -> None:
        line = (f"attempts/s {s.rate:8.0f} | tip {s.tip_height:5d} | k {s.difficulty:3d} | "
                f"R expected every {s.expected_seconds():7.3f}s | won {s.blocks_won} | rejected {sum(s.rejected.values())}")
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)

    miner = Miner(task, cfg, on_status=show)
    presses = [0]

    def on_signal(*_: object) -> None:
        presses[0] += 1
        if presses[0] > 1:
            raise KeyboardInterrupt  # a second Ctrl-C does not wait
        # The first stops after the current round; a submission in flight is completed, never cut.
        print("\nstopping after the current round..." if not miner.submitting else "\nfinishing the submission...",
              file=sys.stderr, flush=True)
        miner.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    stats = miner.run()
    print(f"\nmined for {time.monotonic() - t0:.1f}s: {stats.attempts} attempts, {stats.blocks_won} blocks won, "
          f"rejections {stats.rejected or 'none'}, retries {stats.retries or 'none'}", flush=True)
    return 0


def register(sub: Any) -> None:
    m = sub.add_parser("mine", help="mine PoL blocks against a verifier service")
    m.add_argument("--verifier", type=types.host_port, default="127.0.0.1:50051", help="HOST:PORT of the verifier service")
    m.add_argument("--task", type=types.task_name, default="digits-cnn")
    m.add_argument("--data-dir")
    m.add_argument("--test-limit", type=types.positive_int)
    m.add_argument("--miner", type=types.address, required=True,
                   help="the miner's 0x address, credited in the block header")
    m.add_argument("--mode", choices=["fast", "faithful", "guided"], default="fast")
    m.add_argument("--device", type=types.device, default="cpu", help="cpu or cuda")
    m.add_argument("--candidates", type=types.positive_int, default=256,
                   help="fast: candidate mini-batches per pass; guided: candidates exact-checked per round")
    m.add_argument("--reduced-precision", action="store_true", help="bf16 search on CUDA (winner re-run in fp32)")
    m.add_argument("--train-batch", type=types.positive_int, default=None,
                   help="fast mode: samples in the training step between rounds, S times a power of 4 "
                        "(default: the largest within a quarter of the round, at most 64 S); its rate is lr * sqrt(batch / S)")
    m.add_argument("--train-every", type=types.positive_int, default=1,
                   help="fast mode: take the training step after every N-th round only")
    m.add_argument("--connect-timeout", type=types.positive_float, default=30.0,
                   help="seconds to wait for the verifier to answer before giving up")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--max-blocks", type=types.positive_int)
    m.add_argument("--threads", type=types.positive_int, help="torch CPU threads (several provers on one machine: 1 each)")
    m.set_defaults(func=cmd_mine)
