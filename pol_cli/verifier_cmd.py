"""`pol verifier serve`."""
from __future__ import annotations

import argparse
from typing import Any

from . import args as types
from .chain_cmd import DEFAULT_DEPLOYMENT, add_key_args, load_deployment, resolve_key
from .errors import UserError


def cmd_serve(args: argparse.Namespace) -> int:
    from verifier_service.config import load_config

    # The config, the deployment and the key are checked before torch and the task load.
    cfg = load_config(args.config, deployment=args.deployment, data_root=args.data_root, listen=args.listen,
                      rpc_url=args.rpc_url, data_dir=args.data_dir, metrics_port=args.metrics_port,
                      fault_pause=args.fault_pause, fault_pause_s=args.fault_pause_s,
                      receipt_wait_s=args.receipt_wait_s, eval_workers=args.eval_workers,
                      ray_address=args.ray_address, ray_actors=args.ray_actors, peers=args.peers,
                      fault_sign_blindly=True if args.fault_sign_blindly else None)
    dep = load_deployment(cfg.deployment)
    key = resolve_key(args, dep.chain_id)

    from verifier_service.preflight import PreflightError, run_preflight

    # Every setting that cannot work is refused here, in one line, before the task loads.
    try:
        run_preflight(cfg, dep, key)
    except PreflightError as e:
        raise UserError(str(e)) from None

    from pol_core.portable import pin_cpu_dispatch

    pin_cpu_dispatch()  # before any tensor operation: the task loads next, and every verdict is consensus arithmetic

    from verifier_service.factory import build_node
    from verifier_service.logs import setup_logging
    from verifier_service.server import serve

    setup_logging(args.log_level)
    node = build_node(cfg, key, deployment=dep)
    if node.verdicts is not None:
        from verifier_service.evaluation import EvaluationError

        # The port is announced once proofs can be verified: every verdict worker is up and checked.
        try:
            node.verdicts.prepare()
        except EvaluationError as e:
            node.verdicts.close()
            raise UserError(f"verdict_workers: {e} (set verdict_workers = 0 to verify in-process)") from None
    serve(node, cfg.listen, metrics_port=cfg.metrics_port, chunk_size=cfg.chunk_size)
    return 0


def register(sub: Any) -> None:
    v = sub.add_parser("verifier", help="the gRPC verifier service")
    vsub = v.add_subparsers(dest="verifier_cmd", required=True)
    s = vsub.add_parser("serve", help="verify proofs, attest blocks, serve models")
    s.add_argument("--config", help="TOML file with a [verifier] table; flags override it")
    s.add_argument("--deployment", default=None, help=f"deployment file (default {DEFAULT_DEPLOYMENT})")
    s.add_argument("--data-root", help="journal and model store (default .pol/verifier)")
    s.add_argument("--listen", type=types.host_port, help="host:port (default 127.0.0.1:50051; port 0 picks a free one)")
    s.add_argument("--rpc-url")
    s.add_argument("--data-dir", help="CIFAR-10 directory for cifar10-resnet18")
    s.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    s.add_argument("--receipt-wait-s", type=types.positive_float)
    s.add_argument("--eval-workers", type=types.non_negative_int,
                   help="test-set evaluation processes (default: one per core; 0: in-process)")
    s.add_argument("--ray-address", help="evaluate on this Ray cluster (HOST:PORT of its head, or 'local')")
    s.add_argument("--ray-actors", type=types.positive_int, help="Ray actors (default: one per CPU of the cluster)")
    s.add_argument("--peers", help="quorum mode: the other verifiers' addresses, HOST:PORT,HOST:PORT")
    s.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    s.add_argument("--fault-pause", choices=["before_send", "after_send"], help=argparse.SUPPRESS)
    s.add_argument("--fault-pause-s", type=float, help=argparse.SUPPRESS)
    s.add_argument("--fault-sign-blindly", action="store_true", help=argparse.SUPPRESS)  # test-only
    add_key_args(s)
    s.set_defaults(func=cmd_serve)
