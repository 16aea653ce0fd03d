import pytest
import torch

from pol_core.keccak import keccak256
from pol_core.requirements import (
    MAX_DIFFICULTY,
    compute_requirement_draw,
    compute_requirements,
    is_requirements_met,
    process_requirements_check,
)
from pol_core.types import InvalidDifficulty, InvalidHash, RequirementsNotMet

SEED = keccak256(b"seed")


def test_requirements_are_k_distinct_weights_in_range():
    r = compute_requirements(SEED, 16, 100)
    assert len(r) == 16
    assert all(0 <= x < 200 for x in r)
    assert len({x // 2 for x in r}) == 16


def test_requirements_follow_the_draw_rule_and_skip_collisions():
    # With |W| = 2 and k = 1 the first draw is always taken; with k = 2 (over half) it is refused.
    assert compute_requirements(SEED, 1, 2) == [compute_requirement_draw(SEED, 0, 2)]
    draws = [compute_requirement_draw(SEED, c, 10) for c in range(200)]
    expected, seen = [], set()
    for d in draws:
        if d // 2 not in seen:
            seen.add(d // 2)
            expected.append(d)
        if len(expected) == 5:
            break
    assert compute_requirements(SEED, 5, 10) == expected


def test_requirements_depend_on_the_seed():
    assert compute_requirements(keccak256(b"a"), 8, 10_000) != compute_requirements(keccak256(b"b"), 8, 10_000)


@pytest.mark.parametrize("k,n", [(0, 100), (MAX_DIFFICULTY + 1, 10_000), (51, 100), (1, 0)])
def test_difficulty_out_of_range_is_refused(k, n):
    with pytest.raises(InvalidDifficulty):
        compute_requirements(SEED, k, n)


def test_seed_must_be_32_bytes():
    with pytest.raises(InvalidHash):
        compute_requirements(b"short", 1, 10)


def test_check_direction_odd_decreases_even_increases():
    before = torch.tensor([1.0, 1.0, 1.0])
    after = torch.tensor([0.5, 1.5, 1.0])
    assert is_requirements_met(before, after, [1])  # weight 0 decreased, odd
    assert not is_requirements_met(before, after, [0])  # weight 0 must increase
    assert is_requirements_met(before, after, [2])  # weight 1 increased, even
    assert not is_requirements_met(before, after, [3])
    with pytest.raises(RequirementsNotMet, match="weight 1"):
        process_requirements_check(before, after, [1, 3])


def test_unchanged_weight_fails_by_default_and_passes_in_paper_mode():
    before = torch.tensor([1.0, 2.0])
    after = torch.tensor([1.0, 2.0])
    assert not is_requirements_met(before, after, [0])
    assert not is_requirements_met(before, after, [1])
    assert is_requirements_met(before, after, [0], allow_equal=True)
    assert is_requirements_met(before, after, [1], allow_equal=True)
    with pytest.raises(RequirementsNotMet):
        process_requirements_check(before, after, [0])
    process_requirements_check(before, after, [0], allow_equal=True)


def test_margin_rejects_changes_too_small_to_survive_device_noise():
    before = torch.tensor([0.0])
    after = torch.tensor([1e-9])
    assert is_requirements_met(before, after, [0])
    assert not is_requirements_met(before, after, [0], margin=1e-6)
