"""Directed Guiding Gradient requirements: derivation from a seed and the direction check."""
from __future__ import annotations

import functools
from typing import Sequence

import torch

from .keccak import keccak256
from .types import (
    Difficulty,
    Hash32,
    InvalidDifficulty,
    InvalidHash,
    ParamIndex,
    Requirement,
    RequirementsNotMet,
)

MAX_DIFFICULTY = 255  # k is stored as a uint8 on chain
# Derivation draws at most this many counters; each draw collides with probability < k/|W|, so the
# bound is only reached for k close to |W|, which is rejected below.
MAX_DRAWS = 1 << 16


def compute_requirement_draw(seed: Hash32, counter: int, num_params: int) -> Requirement:
    """r_counter = uint256(keccak256(abi.encodePacked(seed, uint32(counter)))) mod 2|W|."""
    digest = keccak256(bytes(seed) + counter.to_bytes(4, "big"))
    return Requirement(int.from_bytes(digest, "big") % (2 * num_params))


def compute_requirements(seed: Hash32, k: Difficulty, num_params: int) -> list[Requirement]:
    """The k requirements for a block mined on a parent whose hash is `seed`, in draw order."""
    return list(_compute_requirements(bytes(seed), int(k), int(num_params)))


@functools.lru_cache(maxsize=256)  # pure; every proof for the same tip derives the same R
def _compute_requirements(seed: bytes, k: int, num_params: int) -> tuple[Requirement, ...]:
    # The seed is a block hash, always 32 bytes.
    if len(seed) != 32:
        raise InvalidHash(f"seed must be 32 bytes, got {len(seed)}")
    # There must be at least one learnable parameter to require anything of.
    if num_params < 1:
        raise InvalidDifficulty(f"|W| must be positive, got {num_params}")
    # k = 0 would make every step a proof; k > 255 does not fit the contract's uint8.
    if not 1 <= k <= MAX_DIFFICULTY:
        raise InvalidDifficulty(f"k must be in [1, {MAX_DIFFICULTY}], got {k}")
    # Collision avoidance needs k distinct weights; half of |W| keeps the expected draws below 2k.
    if 2 * k > num_params:
        raise InvalidDifficulty(f"k={k} is more than half of |W|={num_params}")
    taken: set[int] = set()
    out: list[Requirement] = []
    counter = 0
    while len(out) < k:
        # Unreachable for valid k; it bounds the loop against a broken keccak or modulus.
        if counter >= MAX_DRAWS:
            raise InvalidDifficulty("requirement derivation did not terminate")
        r = compute_requirement_draw(Hash32(seed), counter, num_params)
        counter += 1
        if r // 2 in taken:
            continue  # collision avoidance: one requirement per weight
        taken.add(r // 2)
        out.append(r)
    return tuple(out)


def requirement_index(r: Requirement) -> ParamIndex:
    return ParamIndex(r // 2)


def is_decrease(r: Requirement) -> bool:
    """The paper's text: odd r means weight r // 2 must decrease, even r means increase."""
    return r % 2 == 1


def compute_orientation(reqs: Sequence[Requirement]) -> torch.Tensor:
    """+1 where the weight must increase, -1 where it must decrease: multiply a change by it and
    positive means 'as required'."""
    return torch.tensor([-1.0 if is_decrease(r) else 1.0 for r in reqs], dtype=torch.float64)  # (k,)


def compute_required_deltas(
    flat_before: torch.Tensor, flat_after: torch.Tensor, reqs: Sequence[Requirement]
) -> torch.Tensor:
    """Signed change of each required weight, oriented so that positive means 'as required'."""
    idx = torch.tensor([requirement_index(r) for r in reqs], dtype=torch.long)
    delta = flat_after[idx].double() - flat_before[idx].double()  # (k,)
    return delta * compute_orientation(reqs)


def is_requirements_met(
    flat_before: torch.Tensor,
    flat_after: torch.Tensor,
    reqs: Sequence[Requirement],
    *,
    margin: float = 0.0,
    allow_equal: bool = False,
) -> bool:
    """True when every required weight moved in its direction by more than `margin`.

    `allow_equal` is the paper's printed Algorithm 1, where an unchanged weight passes; the
    protocol default rejects it so that dead weights are not free bits.
    """
    oriented = compute_required_deltas(flat_before, flat_after, reqs)
    if allow_equal and margin == 0.0:
        return bool((oriented >= 0).all())
    return bool((oriented > margin).all())


def process_requirements_check(
    flat_before: torch.Tensor,
    flat_after: torch.Tensor,
    reqs: Sequence[Requirement],
    *,
    allow_equal: bool = False,
) -> None:
    """Raise RequirementsNotMet naming the first requirement that fails."""
    oriented = compute_required_deltas(flat_before, flat_after, reqs)
    for r, d in zip(reqs, oriented.tolist()):
        ok = d >= 0 if allow_equal else d > 0
        # The change from W to W' must follow every requirement's direction.
        if not ok:
            want = "decrease" if is_decrease(r) else "increase"
            raise RequirementsNotMet(f"weight {r // 2} (r={r}) must {want}; oriented change {d:.3e}")
