"""`pol mine`: run a prover against a verifier, with a live status line and a clean Ctrl-C."""
from __future__ import annotations

import logging
import signal
import sys
import time


def parse_address(text: str) -> bytes:
    raw = bytes.fromhex(text[2:] if text.startswith("0x") else text)
    if len(raw) != 20:
        raise SystemExit(f"--miner must be a 20-byte hex address, got {len(raw)} bytes")
    return raw


def cmd_mine(args) -> int:
    from pol_core.tasks import load_task
    from prover.miner import Miner, MinerConfig

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    task = load_task(args.task, args.data_dir, test_limit=args.test_limit)
    cfg = MinerConfig(target=args.verifier, miner=parse_address(args.miner), mode=args.mode, device=args.device,
                      candidates=args.candidates, seed=args.seed, max_blocks=args.max_blocks,
                      reduced_precision=args.reduced_precision, train_lr_scale=args.train_lr_scale)
    tty = sys.stdout.isatty()

    def show(s) -> None:
        line = (f"attempts/s {s.rate:8.0f} | tip {s.tip_height:5d} | k {s.difficulty:3d} | "
                f"R expected every {s.expected_seconds():7.3f}s | won {s.blocks_won} | rejected {sum(s.rejected.values())}")
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)

    miner = Miner(task, cfg, on_status=show)
    presses = [0]

    def on_sigint(*_):
        presses[0] += 1
        if presses[0] > 1:
            raise KeyboardInterrupt  # a second Ctrl-C does not wait
        # The first stops after the current round; a submission in flight is completed, never cut.
        print("\nstopping after the current round..." if not miner.submitting else "\nfinishing the submission...",
              file=sys.stderr, flush=True)
        miner.stop()

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    t0 = time.monotonic()
    stats = miner.run()
    print(f"\nmined for {time.monotonic() - t0:.1f}s: {stats.attempts} attempts, {stats.blocks_won} blocks won, "
          f"rejections {stats.rejected or 'none'}", flush=True)
    return 0


def register(sub) -> None:
    m = sub.add_parser("mine", help="mine PoL blocks against a verifier service")
    m.add_argument("--verifier", default="127.0.0.1:50051", help="HOST:PORT of the verifier service")
    m.add_argument("--task", default="digits-cnn")
    m.add_argument("--data-dir")
    m.add_argument("--test-limit", type=int)
    m.add_argument("--miner", required=True, help="the miner's 0x address, credited in the block header")
    m.add_argument("--mode", choices=["fast", "faithful", "guided"], default="fast")
    m.add_argument("--device", default="cpu", help="cpu or cuda")
    m.add_argument("--candidates", type=int, default=256,
                   help="fast: candidate mini-batches per pass; guided: candidates exact-checked per round")
    m.add_argument("--reduced-precision", action="store_true", help="bf16 search on CUDA (winner re-run in fp32)")
    m.add_argument("--train-lr-scale", type=float, default=None,
                   help="fast mode: lr of the training step between rounds, in units of the task's lr "
                        "(default: sqrt(candidates))")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--max-blocks", type=int)
    m.add_argument("--threads", type=int, help="torch CPU threads (several provers on one machine: 1 each)")
    m.set_defaults(func=cmd_mine)
