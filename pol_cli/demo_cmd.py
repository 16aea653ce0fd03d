"""`pol demo`: a local PoL network in one command, and the paper's Figure 1 from it."""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import args as types
from .chain_cmd import DEFAULT_DEPLOYMENT, add_genesis_args, deploy_task

if TYPE_CHECKING:
    from pol.client import VerifierClient
    from pol.v1 import verifier_pb2 as pb

    from .network import LocalNetwork

MINERS = ["0x" + f"{i:02x}" * 20 for i in (0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6)]


def cmd_demo(args: argparse.Namespace) -> int:
    from pol_chain.process import exit_on_stop_signals

    from .chain_cmd import check_quorum_args, check_task_args
    from .network import LocalNetwork

    check_task_args(args)
    check_quorum_args(args.rules, args.verifiers if args.verifiers > 1 else 0, args.threshold)
    from pol_core.portable import pin_cpu_dispatch

    pin_cpu_dispatch()  # this process computes c0; the verifier it starts pins itself, the miners are free
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir)
    if workdir.exists():
        shutil.rmtree(workdir)  # a demo always starts a fresh chain; running it twice works
    workdir.mkdir(parents=True)
    net = LocalNetwork(workdir)
    exit_on_stop_signals()  # Ctrl-C and SIGTERM (a service manager, `timeout`) stop the network alike
    t_start = time.monotonic()
    try:
        return run_demo(args, net, out, t_start)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the network", file=sys.stderr)
        return 130
    finally:
        net.stop()  # --keep-running included: nothing outlives the demo


def run_demo(args: argparse.Namespace, net: LocalNetwork, out: Path, t_start: float) -> int:
    from eth_account import Account

    from pol.client import VerifierClient
    from pol_chain.anvil import ANVIL_DEV_KEYS
    from pol_core.tasks import load_task

    from .report import BlockRow, write_csv, write_figure

    task = load_task(args.task, args.data_dir, rules=args.rules)
    test_size = int(task.test_y.shape[0])
    url = net.start_anvil(args.port)
    quorum = args.verifiers > 1
    keys = list(ANVIL_DEV_KEYS[:args.verifiers])  # anvil's funded dev accounts: each verifier relays its blocks
    signers = [bytes.fromhex(Account.from_key(k).address[2:]) for k in keys] if quorum else None
    dep = deploy_task(task, url, ANVIL_DEV_KEYS[0], args.difficulty, args.target_block_time, args.half_life,
                      args.redraw_after, signers=signers, threshold=args.threshold if quorum else None)
    dep_path = Path(args.deployment)
    dep.save(dep_path)
    vextra = ["--data-dir", args.data_dir] if args.data_dir else []
    if quorum:
        net.start_quorum(dep_path, keys, args.verifier_port, vextra)
    else:
        net.start_verifier(dep_path, args.verifier_port, vextra)
    net.wait_verifiers()
    extra = ["--task", args.task, "--mode", args.mode, "--device", args.device, "--candidates", str(args.candidates),
             "--threads", "1",
             "--train-batch", str(args.train_batch), "--train-every", str(args.train_every)]
    if args.data_dir:
        extra += ["--data-dir", args.data_dir]
    for i in range(args.provers):
        net.start_prover(i, MINERS[i % len(MINERS)], extra)
    addrs = [f"127.0.0.1:{p}" for p in net.verifier_ports]
    run_info: dict[str, object] = {"contract": dep.address, "rpc_url": url, "deployment": str(dep_path),
                                   "verifier": addrs[0], "verifiers": addrs, "pids": net.pids()}
    if dep.quorum is not None:
        run_info["threshold"] = dep.quorum.threshold
    (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")  # the pids, while the network runs
    who = (f"verifiers {', '.join(addrs)} ({dep.quorum.threshold}-of-{len(addrs)} quorum)" if dep.quorum is not None
           else f"verifier {addrs[0]}")
    print(f"anvil {url} | contract {dep.address} | {who} | {args.provers} provers ({args.mode})")
    print(f"{'height':>6} {'miner':<14} {'interval':>9} {'accuracy':>17} {'k':>3} {'gas':>7}  tx", flush=True)

    clients = [VerifierClient(a) for a in addrs]
    g = dep.genesis
    rows = [BlockRow(0, "0x" + g.block_hash().hex(), "genesis", 0.0, g.correct, g.correct, g.correct / test_size,
                     g.difficulty, 0, "")]
    last_time = time.time()
    shown = 0
    deadline = time.monotonic() + args.timeout
    while shown < args.blocks:
        if time.monotonic() > deadline:
            print(f"timed out after {args.timeout}s with {shown} blocks", file=sys.stderr)
            break
        if any(p.poll() is not None for p in [*net.verifiers, *net.provers]):
            print("a network process exited early; see the logs in " + str(net.workdir), file=sys.stderr)
            return 1
        tip = clients[0].get_tip()
        while shown < min(tip.height, args.blocks):
            b = read_block(clients, shown + 1)
            if b is None:
                break
            interval = b.accepted_at - last_time
            last_time = b.accepted_at
            row = BlockRow(b.height, "0x" + b.block_hash.hex(), "0x" + b.miner.hex(), round(interval, 3),
                           b.correct_before, b.correct_after, b.correct_after / test_size, b.difficulty, b.gas_used,
                           b.tx_hash)
            rows.append(row)
            shown += 1
            miner = row.miner[:6] + ".." + row.miner[-4:]
            print(f"{row.height:>6} {miner:<14} {interval:>8.2f}s {b.correct_before:>5}->{b.correct_after:<5}"
                  f"({100 * row.accuracy_after:5.1f}%) {b.difficulty:>3} {b.gas_used:>7}  {b.tx_hash[:18]}", flush=True)
        time.sleep(0.1)  # the display's refresh; waiting for the verifier itself is gRPC's (wait_for_ready)
    net.stop_provers()
    for c in clients:
        c.close()
    write_csv(rows, out / "blocks.csv")
    write_figure(rows, out / "figure1.png",
                 f"{args.task}: accuracy and block interval ({args.provers} provers, {shown} blocks)")
    run_info.update(blocks=shown, seconds=round(time.monotonic() - t_start, 1))
    (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    print(f"\nwrote {out / 'blocks.csv'} and {out / 'figure1.png'} in {time.monotonic() - t_start:.1f}s")
    if args.keep_running:
        print_try_it(dep.address, url, net.verifier_ports[0], dep_path)
        print("the network keeps running; Ctrl-C (or SIGTERM) stops it", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            print("\nstopping the network", file=sys.stderr)
    return 0 if shown >= args.blocks else 1


def read_block(clients: list[VerifierClient], height: int) -> pb.Block | None:
    """The attested block at `height` as a verifier knows it. In a quorum every member holds it, and the one
    that relayed the transaction also knows its gas, so that one is preferred."""
    from pol.client import Rejected, VerifierUnavailable

    found = None
    for c in clients:
        try:
            b = c.get_block(height=height, timeout=5)
        except (Rejected, VerifierUnavailable):
            continue  # not (yet) known to this member
        if b.attested and (found is None or b.gas_used > found.gas_used):
            found = b
    return found


def print_try_it(address: str, url: str, port: int, dep_path: Path) -> None:
    print(f"""
try it, from another terminal:
  .venv/bin/pol chain status --deployment {dep_path}
  node_modules/.bin/cast call {address} 'latestModelHash()(bytes32)' --rpc-url {url}
  .venv/bin/pol audit --deployment {dep_path} --verifier 127.0.0.1:{port}
  .venv/bin/pol mine --verifier 127.0.0.1:{port} --miner 0x{'ab' * 20}
  grpcurl -plaintext 127.0.0.1:{port} pol.v1.Verifier/GetTip      # server reflection is on
""")


def register(sub: Any) -> None:
    d = sub.add_parser("demo", help="a local PoL network: anvil, verifier, competing provers, Figure 1")
    d.add_argument("--blocks", type=types.positive_int, default=20)
    d.add_argument("--out", default="results")
    d.add_argument("--task", type=types.task_name, default="digits-cnn")
    d.add_argument("--data-dir", help="CIFAR-10 directory for --task cifar10-resnet18")
    d.add_argument("--device", type=types.device, default="cpu")
    d.add_argument("--provers", type=types.positive_int, default=2)
    d.add_argument("--verifiers", type=types.verifier_count, default=1,
                   help="1: one attester; more: a quorum of verifiers that co-sign every block")
    d.add_argument("--threshold", type=types.positive_int,
                   help="with --verifiers N: signatures a block needs (default: a majority)")
    add_genesis_args(d, target_block_time=3)
    d.set_defaults(difficulty=6)
    d.add_argument("--mode", choices=["fast", "faithful", "guided"], default="fast",
                   help="the provers' search (guided: mini-batches chosen from per-sample gradient estimates)")
    d.add_argument("--candidates", type=types.positive_int, default=128,
                   help="fast: candidate mini-batches per pass; guided: candidates exact-checked per round")
    d.add_argument("--train-batch", type=types.positive_int, default=4,
                   help="provers' training step between rounds, in samples (S times a power of 4)")
    d.add_argument("--train-every", type=types.positive_int, default=8,
                   help="provers train after every N-th round; with the small batch, accuracy climbs over many "
                        "blocks, as in the paper's figure")
    d.add_argument("--port", type=int, help="anvil port (default: a free one)")
    d.add_argument("--verifier-port", type=int)
    d.add_argument("--deployment", default=DEFAULT_DEPLOYMENT)
    d.add_argument("--workdir", default=".pol/demo", help="logs, journal and model store of this run")
    d.add_argument("--timeout", type=types.positive_float, default=900)
    d.add_argument("--keep-running", action="store_true")
    d.set_defaults(func=cmd_demo)
