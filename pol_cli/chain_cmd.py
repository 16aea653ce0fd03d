"""`pol chain up|deploy|status|blocks` and `pol genesis`."""
from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import args as types
from .errors import UserError

if TYPE_CHECKING:
    from pol.genesis import Genesis
    from pol_chain.deploy import Deployment
    from pol_core.tasks import Task

DEFAULT_DEPLOYMENT = ".pol/deployment.json"
LOCAL_CHAIN_ID = 31337
# Chain-bound rules by default (W replayed, monotone tip, R seeded with prevrandao); `--rules paper` keeps
# Algorithm 1 and 2 as printed, for comparison.
DEFAULT_RULES = "chain-bound"
RULE_SETS = ("paper", "chain-bound")  # pol_core.rulesets.RuleSet's values (not imported: no torch at parse time)


def resolve_key(args: argparse.Namespace, chain_id: int | None = None) -> str:
    """A key from --key-env or --keystore; anvil's dev key only on the local default chain."""
    from pol_chain.anvil import ANVIL_DEV_KEYS
    from pol_chain.client import load_private_key

    if getattr(args, "keystore", None) or getattr(args, "key_env", None):
        return load_private_key(args.key_env, args.keystore)
    if chain_id in (None, LOCAL_CHAIN_ID):
        return ANVIL_DEV_KEYS[0]
    raise UserError(f"chain {chain_id} is not the local anvil: pass --key-env VAR or --keystore FILE")


def add_key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-env", help="environment variable holding the private key (never pass a key itself)")
    p.add_argument("--keystore", help="encrypted JSON keystore; its password comes from $POL_KEYSTORE_PASSWORD")


def add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", type=types.task_name, default="digits-cnn")
    p.add_argument("--data-dir", help="CIFAR-10 directory for --task cifar10-resnet18")


def check_task_args(args: argparse.Namespace) -> None:
    """The task checks that need no torch, before anything is loaded or started."""
    from pol_core.tasks import process_task_args_check

    process_task_args_check(args.task, getattr(args, "data_dir", None), getattr(args, "rules", None))


def check_quorum_args(rules: str, signers: int, threshold: int | None) -> None:
    """What a quorum's arguments must satisfy (`signers` = 0: no quorum), checked before anything starts;
    pol_chain.deploy refuses the same deployments, this names the flags."""
    if threshold is not None and signers == 0:
        raise UserError("--threshold needs a quorum (pol chain: --signers; pol demo: --verifiers N, N > 1)")
    if signers and rules == "paper":
        raise UserError("a quorum needs --rules chain-bound: the paper rules have no redraw of R, so a vote split "
                        "between valid blocks would halt the chain")
    if threshold is not None and threshold > signers:
        raise UserError(f"--threshold {threshold} exceeds the {signers} signers")


def load_deployment(path: str | Path) -> Deployment:
    from pol_chain.deploy import Deployment

    return Deployment.load(path)


def build_genesis(task: Task, attester: str, owner: str, difficulty: int | None, target_block_time: int,
                  half_life: int | None = None, redraw_after: int | None = None) -> Genesis:
    """The task's genesis under its rule set, its accuracy evaluated here (the chain bridge evaluates nothing)."""
    from pol.genesis import Genesis
    from pol_core.verify import compute_genesis_correct

    return Genesis.for_task(task, compute_genesis_correct(task), attester, owner, difficulty=difficulty,
                            target_block_time=target_block_time, half_life=half_life, redraw_after=redraw_after)


def deploy_task(task: Task, rpc_url: str, key: str, difficulty: int | None, target_block_time: int,
                half_life: int | None = None, redraw_after: int | None = None, attester: str | None = None,
                owner: str | None = None, signers: list[bytes] | None = None, threshold: int | None = None
                ) -> Deployment:
    """Deploy PoLChain with `task`'s genesis and rule set; attester and owner default to the deploying key.
    With `signers`, a quorum chain instead: blocks need `threshold` of their signatures, and no attester."""
    from eth_account import Account

    from pol_chain.deploy import deploy_chain

    me = Account.from_key(key).address
    quorum = None
    if signers:
        from pol.genesis import NO_ATTESTER
        from pol_core.attestation import InvalidSignerSet, make_signer_set

        if attester:
            raise UserError("--attester and --signers exclude each other: a quorum chain has no single attester")
        try:
            quorum = make_signer_set(signers, threshold or len(signers) // 2 + 1)
        except InvalidSignerSet as e:
            raise UserError(f"--signers/--threshold: {e}") from None
        attester = NO_ATTESTER
    genesis = build_genesis(task, attester or me, owner or me, difficulty, target_block_time, half_life, redraw_after)
    return deploy_chain(rpc_url, key, task.name, genesis, quorum=quorum)


def cmd_genesis(args: argparse.Namespace) -> int:
    check_task_args(args)
    from pol_core.portable import pin_cpu_dispatch

    pin_cpu_dispatch()  # the genesis count c0 = accuracy(W0, E) is consensus arithmetic
    from pol_core.header import compute_genesis_header, compute_header_hash
    from pol_core.requirements import compute_requirements, is_decrease
    from pol_core.tasks import load_task
    from pol_core.types import Difficulty
    from pol_core.verify import compute_genesis_correct

    task = load_task(args.task, args.data_dir, rules=args.rules)
    correct = compute_genesis_correct(task)
    k = Difficulty(args.difficulty or task.config.initial_difficulty)
    genesis_hash = compute_header_hash(compute_genesis_header(task.spec_hash, task.genesis_hash, correct, k))
    print(f"task               {task.name} ({task.config.rules} rules)")
    print(f"task spec hash     0x{task.spec_hash.hex()}")
    print(f"genesis weights    0x{task.genesis_hash.hex()}")
    print(f"|W|                {task.num_params}")
    print(f"genesis correct    {correct}/{task.test_x.shape[0]}")
    print(f"genesis block      0x{genesis_hash.hex()}")
    if task.config.rules != "paper":
        print("first R            from the genesis link, which mixes in the deploying block's prevrandao")
        return 0
    reqs = compute_requirements(genesis_hash, k, task.num_params)
    print(f"first R (k={k})".ljust(19) + str(reqs))
    for r in reqs:
        print(f"  r={r:<8d} weight {r // 2:<8d} must {'decrease' if is_decrease(r) else 'increase'}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    check_task_args(args)
    check_quorum_args(args.rules, len(args.signers or ()), args.threshold)
    from pol_core.portable import pin_cpu_dispatch

    pin_cpu_dispatch()  # the genesis count c0 = accuracy(W0, E) is consensus arithmetic
    from pol_chain.anvil import AnvilProcess
    from pol_chain.deploy import Deployment
    from pol_chain.process import exit_on_stop_signals
    from pol_core.tasks import load_task

    exit_on_stop_signals()  # Ctrl-C and SIGTERM stop anvil alike
    anvil = AnvilProcess(port=args.port, state_file=args.state, detached=args.detach).start()
    try:
        dep_path = Path(args.deployment)
        reuse = None
        if args.state and dep_path.exists():
            old = Deployment.load(dep_path)
            client = old.client(rpc_url=anvil.url)
            if client.w3.eth.get_code(client.address):
                reuse = Deployment(anvil.url, old.chain_id, old.address, old.deploy_block, old.task, old.genesis,
                                   old.quorum)
        dep = reuse or deploy_task(load_task(args.task, args.data_dir, rules=args.rules), anvil.url, resolve_key(args),
                                   args.difficulty, args.target_block_time, args.half_life, args.redraw_after,
                                   signers=args.signers, threshold=args.threshold)
        dep.save(dep_path)
        print(f"anvil      {anvil.url} (pid {anvil.proc.pid if anvil.proc else '?'})")
        print(f"contract   {dep.address} ({'resumed from state' if reuse else 'deployed'})")
        print(f"deployment {dep_path}", flush=True)
        if args.detach:
            print(f"anvil keeps running in the background; stop it with `kill {anvil.proc.pid if anvil.proc else ''}`")
            return 0
        print("Ctrl-C stops the chain", flush=True)
        signal.pause()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if not args.detach:
            anvil.stop()


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy to any EVM JSON-RPC endpoint; the key comes from --key-env or --keystore."""
    check_task_args(args)
    check_quorum_args(args.rules, len(args.signers or ()), args.threshold)
    from pol_chain.client import get_chain_id
    from pol_core.portable import pin_cpu_dispatch
    from pol_core.tasks import load_task

    key = resolve_key(args, get_chain_id(args.rpc_url))  # an unreachable node fails before torch loads
    pin_cpu_dispatch()  # the genesis count c0 = accuracy(W0, E) is consensus arithmetic
    dep = deploy_task(load_task(args.task, args.data_dir, rules=args.rules), args.rpc_url, key, args.difficulty,
                      args.target_block_time, args.half_life, args.redraw_after, args.attester, args.owner,
                      args.signers, args.threshold)
    dep.save(args.deployment)
    print(f"contract {dep.address} on chain {dep.chain_id}; deployment written to {args.deployment}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    dep = load_deployment(args.deployment)
    c = dep.client(rpc_url=args.rpc_url)
    tip = c.get_tip()
    print(f"contract           {dep.address} on {args.rpc_url or dep.rpc_url} (chain id {dep.chain_id})")
    print(f"task               {dep.task} (spec 0x{dep.genesis.task_spec_hash.hex()})")
    print(f"rules              {c.get_rules().value}")
    print(f"tip link           0x{tip.link.hex()}")
    print(f"height             {tip.height}")
    print(f"tip time           {tip.time}")
    print(f"latest model hash  0x{tip.model_hash.hex()}")
    print(f"tip correct        {c.get_tip_correct()}")
    print(f"difficulty k       {tip.difficulty}")
    print(f"next R             {c.get_next_requirements()}")
    if c.is_quorum():
        from eth_utils.address import to_checksum_address

        info = c.get_signer_set()
        s = info.signer_set
        print(f"attestation        quorum: {s.threshold} of {len(s.signers)} signatures per block "
              f"(set nonce {info.nonce}, owner bootstrap {'open' if info.bootstrap else 'ended'})")
        for a in s.signers:
            print(f"  signer           {to_checksum_address(bytes(a))}")
    else:
        print(f"attestation        single attester {c.get_attester()}")
    return 0


def cmd_blocks(args: argparse.Namespace) -> int:
    dep = load_deployment(args.deployment)
    c = dep.client(rpc_url=args.rpc_url)
    print(f"{'height':>6}  {'block hash':<18} {'miner':<12} {'correct':>13}  {'k':>3}  tx")
    for b in c.get_blocks(dep.deploy_block):
        h = b.header
        print(f"{h.height:>6}  0x{b.block_hash.hex()[:16]} 0x{h.miner.hex()[:4]}..{h.miner.hex()[-4:]} "
              f"{h.correct_before:>6}->{h.correct_after:<6} {h.difficulty:>3}  {b.tx_hash[:18]}")
    return 0


def add_rules_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", choices=RULE_SETS, default=DEFAULT_RULES,
                   help=f"rule set (default {DEFAULT_RULES}; 'paper' for the paper's rules as printed)")


def add_quorum_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--signers", type=types.address_list,
                   help="comma-separated addresses: a quorum chain, blocks need --threshold of their signatures "
                        "(chain-bound rules only)")
    p.add_argument("--threshold", type=types.positive_int,
                   help="signatures a block needs (default: a majority of --signers)")


def add_genesis_args(p: argparse.ArgumentParser, target_block_time: int = 5) -> None:
    add_rules_arg(p)
    p.add_argument("--difficulty", type=types.positive_int, help="genesis k, the anchor of the difficulty rule "
                                                                 "(default: the task's)")
    p.add_argument("--target-block-time", type=types.positive_int, default=target_block_time, help="seconds")
    p.add_argument("--half-life", type=types.positive_int,
                   help="seconds of schedule drift per bit of k (default 10 block times)")
    p.add_argument("--redraw-after", type=types.positive_int,
                   help="chain-bound: seconds before R may be redrawn (default 20 block times)")


def register(sub: Any) -> None:
    g = sub.add_parser("genesis", help="print a task's genesis and first requirements")
    add_task_args(g)
    g.add_argument("--difficulty", type=types.positive_int)
    add_rules_arg(g)
    g.set_defaults(func=cmd_genesis)

    chain = sub.add_parser("chain", help="the PoLChain contract on anvil or any EVM node")
    csub = chain.add_subparsers(dest="chain_cmd", required=True)
    up = csub.add_parser("up", help="start anvil and deploy PoLChain")
    add_task_args(up)
    up.add_argument("--port", type=int, default=8545)
    up.add_argument("--state", help="anvil --state file, so the local chain survives restarts")
    add_genesis_args(up)
    add_quorum_args(up)
    up.add_argument("--deployment", default=DEFAULT_DEPLOYMENT)
    up.add_argument("--detach", action="store_true",
                    help="deploy and leave anvil running after this command exits (the only child that outlives it)")
    add_key_args(up)
    up.set_defaults(func=cmd_up)
    dp = csub.add_parser("deploy", help="deploy PoLChain to any EVM JSON-RPC endpoint")
    dp.add_argument("--rpc-url", required=True)
    add_task_args(dp)
    add_genesis_args(dp)
    dp.add_argument("--attester", help="address of the verifier's key (default: the deployer)")
    dp.add_argument("--owner", help="address that may rotate the attester, or change the signer set until it ends "
                                    "the bootstrap (default: the deployer)")
    add_quorum_args(dp)
    dp.add_argument("--deployment", default=DEFAULT_DEPLOYMENT)
    add_key_args(dp)
    dp.set_defaults(func=cmd_deploy)
    for name, fn, help_ in (("status", cmd_status, "tip, height, latest model hash, difficulty, next R"),
                            ("blocks", cmd_blocks, "every recorded block, rebuilt from events")):
        p = csub.add_parser(name, help=help_)
        p.add_argument("--deployment", default=DEFAULT_DEPLOYMENT)
        p.add_argument("--rpc-url", help="override the deployment's RPC URL")
        p.set_defaults(func=fn)
