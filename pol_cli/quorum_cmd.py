"""`pol quorum report`: send the equivocation evidence a verifier holds to the contract."""
from __future__ import annotations

import argparse
from typing import Any

from . import args as types
from .chain_cmd import DEFAULT_DEPLOYMENT, add_key_args, load_deployment, resolve_key
from .errors import UserError


def cmd_report(args: argparse.Namespace) -> int:
    dep = load_deployment(args.deployment)
    if dep.quorum is None:
        raise UserError(f"the deployment {args.deployment} has a single attester: there is no signer set to report to")
    key = resolve_key(args, dep.chain_id)

    from pol.quorum_client import QuorumClient
    from pol_core.attestation import is_equivocation
    from verifier_service.quorum import signed_from_message

    chain = dep.client(key, rpc_url=args.rpc_url)
    client = QuorumClient(args.verifier)
    try:
        evidence = client.list_evidence()
    finally:
        client.close()
    reported = 0
    for pair in evidence:
        a, b = signed_from_message(pair.a), signed_from_message(pair.b)
        who = "0x" + a.signer.hex()
        where = f"height {a.header.height}, redraw {a.header.redraw}"
        # The verifier's word is not taken for it: the pair must be evidence here too.
        if a.signer != b.signer or not is_equivocation(a.header, b.header):
            print(f"skipped {who} at {where}: not two headers of one signer at one (height, redraw)")
            continue
        if a.signer not in chain.get_signer_set().signer_set.signers:
            print(f"skipped {who} at {where}: no longer a member")
            continue
        receipt = chain.report_equivocation(a.header, a.signature, b.header, b.signature)
        after = chain.get_signer_set().signer_set
        outcome = "removed" if a.signer not in after.signers else "kept (the set would fall below t)"
        print(f"reported {who} at {where}: tx {receipt.tx_hash}, {outcome}; set now {after.threshold} of "
              f"{len(after.signers)}")
        reported += 1
    if not evidence:
        print(f"no equivocation evidence at {args.verifier}")
    return 0


def register(sub: Any) -> None:
    q = sub.add_parser("quorum", help="the verifiers' signer set (quorum mode)")
    qsub = q.add_subparsers(dest="quorum_cmd", required=True)
    r = qsub.add_parser("report", help="report the equivocation evidence a verifier holds (removes the signer)")
    r.add_argument("--verifier", type=types.host_port, required=True, help="HOST:PORT of a verifier")
    r.add_argument("--deployment", default=DEFAULT_DEPLOYMENT, help=f"deployment file (default {DEFAULT_DEPLOYMENT})")
    r.add_argument("--rpc-url")
    add_key_args(r)
    r.set_defaults(func=cmd_report)
