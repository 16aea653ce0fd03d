"""The difficulty rule: ASERT in whole bits of k, anchored at genesis (as in Bitcoin Cash's aserti3-2d).

The k of the block after a tip at height h, recorded at chain time t:

    drift = h * T - (t - t0)                     seconds ahead of schedule (negative: behind)
    q     = floor((2 * drift + tau) / (2 * tau))  drift in half-lives, rounded half up
    k     = clamp(k0 + q, kMin, kMax)

where t0 is the genesis time, k0 the genesis k, T the target block time and tau the half-life: every tau
seconds ahead of schedule adds one requirement (one bit, halving an attempt's chance), every tau behind
removes one. Exact integer arithmetic; floor rounds toward minus infinity. The contract computes the same
(`PoLChain.computeDifficulty`), and tests/vectors/difficulty.json pins both.
"""
from __future__ import annotations

from dataclasses import dataclass

from .types import Difficulty, Height, InvalidDifficulty, Timestamp


@dataclass(frozen=True)
class DifficultyParams:
    initial: int  # k0, the genesis block's k
    minimum: int
    maximum: int
    target_block_time: int  # T, seconds
    half_life: int  # tau, seconds of schedule drift per bit of k
    genesis_time: Timestamp  # t0: the timestamp of the block that deployed the chain


def process_difficulty_params_check(p: DifficultyParams) -> None:
    # Both divisors must be positive, or the rule divides by zero.
    if p.target_block_time <= 0 or p.half_life <= 0:
        raise InvalidDifficulty(f"target block time {p.target_block_time} and half-life {p.half_life} must be positive")
    # k0 must be reachable: inside [kMin, kMax], and kMax fits the header's uint8.
    if not 1 <= p.minimum <= p.initial <= p.maximum <= 255:
        raise InvalidDifficulty(f"need 1 <= kMin {p.minimum} <= k0 {p.initial} <= kMax {p.maximum} <= 255")


def compute_next_difficulty(p: DifficultyParams, tip_height: Height, tip_time: Timestamp) -> Difficulty:
    """k of block tip_height + 1."""
    drift = tip_height * p.target_block_time - (tip_time - p.genesis_time)
    q = (2 * drift + p.half_life) // (2 * p.half_life)  # Python's // is floor division
    return Difficulty(max(p.minimum, min(p.maximum, p.initial + q)))
