"""`pol verifier serve`."""
from __future__ import annotations

from .chain_cmd import DEFAULT_DEPLOYMENT, add_key_args, resolve_key


def cmd_serve(args) -> int:
    from pol_chain.deploy import Deployment
    from verifier_service.config import load_config
    from verifier_service.logs import setup_logging
    from verifier_service.node import VerifierNode
    from verifier_service.server import serve

    setup_logging(args.log_level)
    cfg = load_config(args.config, deployment=args.deployment, data_root=args.data_root, listen=args.listen,
                      rpc_url=args.rpc_url, data_dir=args.data_dir, metrics_port=args.metrics_port,
                      fault_pause=args.fault_pause, fault_pause_s=args.fault_pause_s,
                      receipt_wait_s=args.receipt_wait_s, eval_workers=args.eval_workers,
                      ray_address=args.ray_address, ray_actors=args.ray_actors)
    key = resolve_key(args, Deployment.load(cfg.deployment).chain_id)
    serve(VerifierNode(cfg, key), cfg.listen)
    return 0


def register(sub) -> None:
    v = sub.add_parser("verifier", help="the gRPC verifier service")
    vsub = v.add_subparsers(dest="verifier_cmd", required=True)
    s = vsub.add_parser("serve", help="verify proofs, attest blocks, serve models")
    s.add_argument("--config", help="TOML file with a [verifier] table; flags override it")
    s.add_argument("--deployment", default=None, help=f"deployment file (default {DEFAULT_DEPLOYMENT})")
    s.add_argument("--data-root", help="journal and model store (default .pol/verifier)")
    s.add_argument("--listen", help="host:port (default 127.0.0.1:50051; port 0 picks a free one)")
    s.add_argument("--rpc-url")
    s.add_argument("--data-dir", help="CIFAR-10 directory for cifar10-resnet18")
    s.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    s.add_argument("--receipt-wait-s", type=float)
    s.add_argument("--eval-workers", type=int, help="test-set evaluation processes (default: one per core; 0: in-process)")
    s.add_argument("--ray-address", help="evaluate on this Ray cluster (e.g. 10.0.0.5:6379, or 'local')")
    s.add_argument("--ray-actors", type=int, help="Ray actors (default: one per CPU of the cluster)")
    s.add_argument("--log-level", default="INFO")
    s.add_argument("--fault-pause", choices=["before_send", "after_send"], help=argparse_hidden())
    s.add_argument("--fault-pause-s", type=float, help=argparse_hidden())
    add_key_args(s)
    s.set_defaults(func=cmd_serve)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS
