"""`pol`: the single command line of the project."""
from __future__ import annotations

import argparse
import sys

from . import chain_cmd


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pol", description="Proof-of-Learning chain (Directed Guiding Gradients)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    chain_cmd.register(sub)
    for mod in ("verifier_cmd", "mine_cmd", "demo_cmd"):
        try:
            module = __import__(f"pol_cli.{mod}", fromlist=["register"])
        except ModuleNotFoundError:
            continue
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
