"""The two rule sets. A task pins one (TaskConfig.rules, inside the spec hash); the contract holds the same
choice as an immutable (`PoLChain.RULES`, the enum code below)."""
from __future__ import annotations

from enum import Enum

from .types import WrongRules


class RuleSet(str, Enum):
    """`paper`: Algorithm 1 and 2 as printed, W claimed by the miner, plus the strict rule and the sabotage
    guard. `chain-bound`: W is replayed from the parent's canonical W' and the block's training segment,
    the tip never loses accuracy, R's seed mixes in randomness fixed at inclusion, and R may be redrawn."""

    PAPER = "paper"
    CHAIN_BOUND = "chain-bound"

    @property
    def code(self) -> int:
        """The value of `PoLChain.Rules` in the contract's Genesis and RULES()."""
        return 0 if self is RuleSet.PAPER else 1


def parse_rules(name: str) -> RuleSet:
    # A typo must not silently select the other rule set.
    try:
        return RuleSet(name)
    except ValueError:
        raise WrongRules(f"unknown rule set {name!r}; known: {', '.join(r.value for r in RuleSet)}") from None


def rules_from_code(code: int) -> RuleSet:
    # The contract's enum has exactly two members.
    if code not in (0, 1):
        raise WrongRules(f"unknown rule set code {code}")
    return RuleSet.PAPER if code == 0 else RuleSet.CHAIN_BOUND


def process_rules_check(pinned: str, expected: RuleSet) -> None:
    # A verdict applies the rules the task spec hash pins, never the other set's.
    if parse_rules(pinned) is not expected:
        raise WrongRules(f"the task is pinned to {pinned!r} rules, not {expected.value!r}")
