"""`pol`: the single command line of the project."""
from __future__ import annotations

import argparse
import sys

from . import chain_cmd, demo_cmd, mine_cmd, verifier_cmd


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pol", description="Proof-of-Learning chain (Directed Guiding Gradients)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for module in (chain_cmd, verifier_cmd, mine_cmd, demo_cmd):
        module.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
