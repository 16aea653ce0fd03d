"""`pol`: the single command line of the project, and its one error boundary.

Nothing heavy is imported here or in the command modules at load time: `pol --help` and every
subcommand's help answer without torch or web3 (tests/test_cli.py checks; bench/cli.py times it).
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import NoReturn, Sequence

from . import audit_cmd, chain_cmd, demo_cmd, mine_cmd, quorum_cmd, verifier_cmd
from .errors import USER_ERROR, explain


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are the boundary's one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"pol: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(USER_ERROR)


def build_parser() -> Parser:
    ap = Parser(prog="pol", description="Proof-of-Learning chain (Directed Guiding Gradients)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for module in (chain_cmd, verifier_cmd, mine_cmd, demo_cmd, audit_cmd, quorum_cmd):
        module.register(sub)
    _add_debug(ap)
    return ap


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """`--debug` is accepted after any subcommand too (`pol mine --debug ...`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                _add_debug(child)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the boundary: one line, never a traceback unless asked
        if args.debug:
            traceback.print_exc()
        message, code = explain(e)
        print(f"pol: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
