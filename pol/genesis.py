"""The genesis record: everything PoLChain fixes at deployment, typed, with the ABI tuple of its
constructor argument and the JSON a deployment file stores.

The field order is the order of `struct Genesis` in contracts/src/PoLChain.sol; nothing here repeats
it by hand: `as_abi_tuple` follows the dataclass, and tests/test_wire.py checks the dataclass
against the constructor input of the compiled ABI, name by name and type by type.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Mapping

from pol_core.header import Header, compute_genesis_header, compute_header_hash
from pol_core.rulesets import RuleSet, parse_rules
from pol_core.types import CorrectCount, Difficulty, Hash32, WrongRules

if TYPE_CHECKING:
    from pol_core.tasks import Task


class GenesisError(ValueError):
    """A genesis record that is incomplete or malformed."""


def to_camel(name: str) -> str:
    """task_spec_hash -> taskSpecHash: the Solidity struct's field name."""
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class Genesis:
    task_spec_hash: Hash32
    weights_hash: Hash32  # W0
    num_params: int  # |W|
    batch_size: int  # S
    correct: CorrectCount  # accuracy(W0, E) as a count
    rules: RuleSet  # the contract's `enum Rules` (its code on the wire, its name in JSON)
    sabotage_tolerance: int  # paper rules only
    difficulty: Difficulty  # k0: the genesis k and the difficulty rule's anchor
    min_difficulty: Difficulty
    max_difficulty: Difficulty
    target_block_time: int  # seconds
    half_life: int  # seconds of schedule drift per bit of k
    redraw_after: int  # chain-bound: seconds after the tip before each further redraw index opens
    attester: str  # checksummed addresses
    owner: str

    def __post_init__(self) -> None:
        from eth_utils.address import is_address, to_checksum_address

        for f in fields(self):
            value = getattr(self, f.name)
            # The rule set travels by name in JSON; an unknown name is another contract.
            if f.name == "rules":
                try:
                    object.__setattr__(self, f.name, parse_rules(value.value if isinstance(value, RuleSet) else value))
                except (WrongRules, AttributeError, TypeError) as e:
                    raise GenesisError(f"rules must be one of {[r.value for r in RuleSet]}, got {value!r}") from e
            # Accounts are 20-byte addresses, kept in checksummed form (web3 encodes only that).
            if f.type == "str":
                if not (isinstance(value, str) and is_address(value)):
                    raise GenesisError(f"{to_camel(f.name)} must be a 0x address, got {value!r}")
                object.__setattr__(self, f.name, to_checksum_address(value))
            # Hashes are bytes32 on chain.
            if f.name.endswith("_hash") and not (isinstance(value, bytes) and len(value) == 32):
                raise GenesisError(f"{to_camel(f.name)} must be 32 bytes")
            # Every number is an unsigned integer on chain.
            if f.type in ("int", "CorrectCount", "Difficulty") and not (isinstance(value, int) and value >= 0):
                raise GenesisError(f"{to_camel(f.name)} must be a non-negative integer, got {value!r}")

    @classmethod
    def for_task(cls, task: Task, correct: CorrectCount, attester: str, owner: str, *, difficulty: int | None = None,
                 target_block_time: int = 5, half_life: int | None = None, redraw_after: int | None = None,
                 min_difficulty: int = 1, max_difficulty: int = 64) -> Genesis:
        """A task's genesis under the task's rule set; `correct` is accuracy(W0, E)
        (pol_core.verify.compute_genesis_correct). By default one bit of k per ten target block times of
        schedule drift, and a redraw of R every twenty target block times."""
        from eth_utils.address import to_checksum_address

        return cls(
            task_spec_hash=task.spec_hash,
            weights_hash=task.genesis_hash,
            num_params=task.num_params,
            batch_size=task.config.batch_size,
            correct=correct,
            rules=parse_rules(task.config.rules),
            sabotage_tolerance=task.config.sabotage_tolerance,
            difficulty=Difficulty(difficulty or task.config.initial_difficulty),
            min_difficulty=Difficulty(min_difficulty),
            max_difficulty=Difficulty(min(max_difficulty, task.num_params // 2, 255)),
            target_block_time=target_block_time,
            half_life=half_life or 10 * target_block_time,
            redraw_after=redraw_after or 20 * target_block_time,
            attester=to_checksum_address(attester),
            owner=to_checksum_address(owner),
        )

    def as_abi_tuple(self) -> tuple[Any, ...]:
        """The constructor argument, in field order (the rule set as its enum code)."""
        return tuple(bytes(v) if isinstance(v, bytes) else v.code if isinstance(v, RuleSet) else v
                     for v in (getattr(self, f.name) for f in fields(self)))

    def header(self) -> Header:
        """The genesis block (height 0) the contract records at deployment."""
        return compute_genesis_header(self.task_spec_hash, self.weights_hash, self.correct, self.difficulty)

    def block_hash(self) -> Hash32:
        return compute_header_hash(self.header())

    def to_json(self) -> dict[str, Any]:
        """camelCase keys as in the Solidity struct; hashes as 0x-hex."""
        return {to_camel(f.name): ("0x" + v.hex() if isinstance(v, bytes) else v.value if isinstance(v, RuleSet) else v)
                for f in fields(self) for v in (getattr(self, f.name),)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Genesis:
        names = {to_camel(f.name): f for f in fields(cls)}
        # A record must name exactly the struct's fields: a missing or extra one is another contract.
        missing = sorted(set(names) - set(doc))
        unknown = sorted(set(doc) - set(names))
        if missing or unknown:
            raise GenesisError(f"genesis fields differ from PoLChain's: missing {missing}, unknown {unknown}")
        values: dict[str, Any] = {}
        for key, f in names.items():
            v = doc[key]
            if f.name.endswith("_hash"):
                if not (isinstance(v, str) and v.startswith("0x")):
                    raise GenesisError(f"{key} must be a 0x-hex string")
                try:
                    v = Hash32(bytes.fromhex(v[2:]))
                except ValueError as e:
                    raise GenesisError(f"{key} is not hex: {e}") from e
            values[f.name] = v
        return cls(**values)
