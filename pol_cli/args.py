"""Argument types that check a value when it is parsed, before anything heavy is loaded.
Each raises argparse.ArgumentTypeError, which the parser turns into one `pol: error:` line."""
from __future__ import annotations

import argparse
import re


def address(text: str) -> bytes:
    """A 20-byte EVM address, 0x-prefixed or bare hex."""
    raw = text[2:] if text.lower().startswith("0x") else text
    if not re.fullmatch(r"[0-9a-fA-F]{40}", raw):
        raise argparse.ArgumentTypeError(f"{text!r} is not an address: want 0x followed by 40 hex digits")
    return bytes.fromhex(raw)


def address_list(text: str) -> list[bytes]:
    """Comma-separated addresses, none twice."""
    items = [address(part.strip()) for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError("want at least one address")
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"{text!r} names an address twice")
    return items


def task_name(text: str) -> str:
    from pol_core.tasks import TASK_NAMES

    if text not in TASK_NAMES:
        raise argparse.ArgumentTypeError(f"unknown task {text!r}; known: {', '.join(TASK_NAMES)}")
    return text


def host_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:50051)")
    return text


def device(text: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: cpu, cuda or cuda:N")
    return text


def positive_int(text: str) -> int:
    return int(_positive(text, int, "an integer"))


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def verifier_count(text: str) -> int:
    """A local network's verifiers: each takes one of anvil's funded dev accounts."""
    from pol_chain.anvil import ANVIL_DEV_KEYS

    n = positive_int(text)
    if n > len(ANVIL_DEV_KEYS):
        raise argparse.ArgumentTypeError(f"at most {len(ANVIL_DEV_KEYS)} verifiers (anvil's funded dev accounts)")
    return n


def positive_float(text: str) -> float:
    return _positive(text, float, "a number")


def _positive(text: str, kind: type[int] | type[float], what: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not value > 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value
