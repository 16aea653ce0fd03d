"""Links, seeds and the redraw rule: what R derives from, and when it may be drawn again.

- link(block) = keccak256(blockHash || randao) under chain-bound rules, where randao is the EVM's
  block.prevrandao of the block that included it (unknown while the miner is still choosing free bytes);
  link(block) = blockHash under paper rules. A header's `parent` field names its parent's link.
- seed(link, j) = link for j = 0, else keccak256(link || u32be(j)).
- R = compute_requirements(seed, k, |W|).
- j >= 1 (chain-bound only) is allowed once chain time >= tipTime + j * redrawAfter.
"""
from __future__ import annotations

from .keccak import keccak256
from .rulesets import RuleSet
from .types import Hash32, InvalidHash, RedrawIndex, RedrawNotAllowed, RedrawTooEarly, Timestamp

UINT32_MAX = (1 << 32) - 1


def compute_link(rules: RuleSet, block_hash: Hash32, randao: Hash32) -> Hash32:
    # Both inputs are 32-byte words, as the contract reads them.
    if len(block_hash) != 32 or len(randao) != 32:
        raise InvalidHash("block hash and randao must be 32 bytes")
    if rules is RuleSet.PAPER:
        return block_hash
    return keccak256(bytes(block_hash) + bytes(randao))


def compute_seed(link: Hash32, redraw: RedrawIndex) -> Hash32:
    # The link is a 32-byte word and j a uint32 in the header.
    if len(link) != 32:
        raise InvalidHash(f"link must be 32 bytes, got {len(link)}")
    if not 0 <= redraw <= UINT32_MAX:
        raise RedrawNotAllowed(f"redraw index {redraw} does not fit uint32")
    if redraw == 0:
        return link
    return keccak256(bytes(link) + int(redraw).to_bytes(4, "big"))


def compute_redraw_time(tip_time: Timestamp, redraw: RedrawIndex, redraw_after: int) -> Timestamp:
    """The earliest chain time at which redraw index j may be used."""
    return Timestamp(tip_time + redraw * redraw_after)


def is_redraw_allowed(redraw: RedrawIndex, tip_time: Timestamp, chain_time: Timestamp, redraw_after: int) -> bool:
    return redraw == 0 or chain_time >= compute_redraw_time(tip_time, redraw, redraw_after)


def process_redraw_check(
    rules: RuleSet, redraw: RedrawIndex, tip_time: Timestamp, chain_time: Timestamp, redraw_after: int
) -> None:
    # The paper has no redraw: R is the parent hash's, once and for all.
    if rules is RuleSet.PAPER and redraw != 0:
        raise RedrawNotAllowed(f"redraw index {redraw}: the paper rules have no redraw")
    # j must fit the header's uint32.
    if not 0 <= redraw <= UINT32_MAX:
        raise RedrawNotAllowed(f"redraw index {redraw} does not fit uint32")
    # A redraw is a liveness escape for an R no batch can meet, so it opens only after a timeout;
    # before it, a miner could simply pick whichever of several R suits it.
    if not is_redraw_allowed(redraw, tip_time, chain_time, redraw_after):
        raise RedrawTooEarly(f"redraw {redraw} opens at chain time {compute_redraw_time(tip_time, redraw, redraw_after)}, "
                             f"now {chain_time}")
