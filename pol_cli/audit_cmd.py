"""`pol audit`: re-verify every block from the contract's events and a model store."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from . import args as types
from .chain_cmd import DEFAULT_DEPLOYMENT, load_deployment

if TYPE_CHECKING:
    import torch

    from pol_core.types import Hash32


def cmd_audit(args: argparse.Namespace) -> int:
    dep = load_deployment(args.deployment)  # before anything heavy: a missing file is one line at once
    from pol_core.portable import pin_cpu_dispatch

    pin_cpu_dispatch()  # before any tensor operation: the audit recomputes every block

    from pol.client import Rejected, VerifierClient
    from pol.wire import MalformedWeights
    from pol_core.tasks import load_task
    from verifier_service.evaluation import make_evaluator
    from verifier_service.journal import Journal, ModelStore

    from .audit import FetchModel, FetchSegment, audit_chain

    fetch: FetchModel
    fetch_segment: FetchSegment
    if args.verifier:
        client = VerifierClient(args.verifier)

        def fetch_remote(h: Hash32, order: Iterable[str]) -> Mapping[str, torch.Tensor] | None:
            try:
                return client.get_model(h, order)
            except (Rejected, MalformedWeights):  # a missing or broken model is reported per block
                return None

        def segment_remote(h: Hash32) -> bytes | None:
            try:
                return bytes(client.get_block(block_hash=h).segment)
            except Rejected:
                return None

        fetch, fetch_segment = fetch_remote, segment_remote
    else:
        store = ModelStore(args.models, create=False)

        def fetch_local(h: Hash32, order: Iterable[str]) -> Mapping[str, torch.Tensor] | None:
            return store.get_state(h, list(order))

        journal_path = Path(args.models).parent / "journal.sqlite"  # the verifier's data root holds both

        def segment_local(h: Hash32) -> bytes | None:
            if not journal_path.exists():
                return None
            journal = Journal(journal_path)
            try:
                entry = journal.get_segment(h)
            finally:
                journal.close()
            return None if entry is None else entry.segment

        fetch, fetch_segment = fetch_local, segment_local

    task = load_task(dep.task, args.data_dir, rules=dep.genesis.rules.value)
    evaluator = make_evaluator(args.eval_workers, args.ray_address, task=task)
    try:
        results = audit_chain(dep, fetch, task, args.rpc_url, fetch_segment, evaluator)
    finally:
        evaluator.close()
    for r in results:
        print(f"block {r.height:5d}  {'OK  ' if r.ok else 'FAIL'}  {r.detail}")
    bad = [r for r in results if not r.ok]
    print(f"{len(results)} blocks audited, {len(bad)} failed", file=sys.stderr if bad else sys.stdout)
    return 1 if bad else 0


def register(sub: Any) -> None:
    a = sub.add_parser("audit", help="re-verify every block from the contract's events and a model store")
    a.add_argument("--deployment", default=DEFAULT_DEPLOYMENT)
    a.add_argument("--rpc-url")
    src = a.add_mutually_exclusive_group()
    src.add_argument("--models", default=".pol/verifier/models", help="a verifier's model store directory")
    src.add_argument("--verifier", type=types.host_port, help="HOST:PORT: fetch models over gRPC instead")
    a.add_argument("--data-dir")
    a.add_argument("--eval-workers", type=types.non_negative_int,
                   help="test-set evaluation processes (default: one per core; 0: in-process)")
    a.add_argument("--ray-address", help="evaluate on this Ray cluster (HOST:PORT of its head, or 'local')")
    a.set_defaults(func=cmd_audit)
