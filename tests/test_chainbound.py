"""The chain-bound rules one by one: segments, replay, links and seeds, redraws, the difficulty rule, and
every refusal of the chain-bound verdict."""
from dataclasses import replace

import pytest
import torch

from pol_core.chainbound import is_monotone_tip, process_chain_bound_accuracy_rules
from pol_core.difficulty import DifficultyParams, compute_next_difficulty, process_difficulty_params_check
from pol_core.header import Header
from pol_core.keccak import keccak256
from pol_core.link import compute_link, compute_seed, is_redraw_allowed, process_redraw_check
from pol_core.rulesets import RuleSet, parse_rules, rules_from_code
from pol_core.segment import (
    EMPTY_SEGMENT,
    SegmentBounds,
    compute_segment_encoding,
    compute_segment_root,
    decode_segment,
    process_segment_check,
    process_segment_replay,
)
from pol_core.step import compute_step_lr, process_update
from pol_core.types import (
    AccuracyNotImproved,
    HeightNotNext,
    InvalidBatchSize,
    InvalidDifficulty,
    InvalidHeader,
    InvalidIndices,
    InvalidSegment,
    ParentNotTip,
    ParentStateMismatch,
    RedrawNotAllowed,
    RedrawTooEarly,
    TipRegressed,
    WrongRules,
)
from pol_core.verify import compute_verdict
from pol_core.weights import compute_weights_hash, get_state
from tests.attacks import honest_chain_bound_block, sorted_batch

BOUNDS = SegmentBounds(batch_size=4, max_steps=3, max_step_batch=64, train_size=100)


# ── segments ──

def test_segment_encoding_is_length_prefixed_steps():
    seg = ((1, 2, 3, 4), tuple(range(16)))
    enc = compute_segment_encoding(seg)
    assert enc[:4] == (4).to_bytes(4, "big") and enc[4:8] == (1).to_bytes(4, "big")
    assert enc[20:24] == (16).to_bytes(4, "big") and len(enc) == 4 * (1 + 4 + 1 + 16)
    assert compute_segment_root(seg) == keccak256(enc)
    assert decode_segment(enc) == seg


def test_empty_segment_root_is_keccak_of_nothing_never_zero():
    assert compute_segment_encoding(EMPTY_SEGMENT) == b""
    assert compute_segment_root(EMPTY_SEGMENT) == keccak256(b"") != b"\x00" * 32
    assert decode_segment(b"") == EMPTY_SEGMENT


def test_segment_root_binds_order_and_boundaries():
    a, b = (0, 1, 2, 3), (4, 5, 6, 7)
    roots = {compute_segment_root(s) for s in ((a, b), (b, a), (a + b,), (a,), (a, a))}
    assert len(roots) == 5


@pytest.mark.parametrize("data,msg", [(b"\x00\x00\x00", "truncated step length"),
                                      ((4).to_bytes(4, "big") + b"\x00" * 12, "declares 4 indices"),
                                      (compute_segment_encoding([[0, 1, 2, 3]]) + b"\x00", "truncated step length")])
def test_decode_refuses_malformed_encodings(data, msg):
    with pytest.raises(InvalidSegment, match=msg):
        decode_segment(data)


def test_segment_within_bounds_passes():
    process_segment_check(((0, 1, 2, 3), tuple(range(16)), tuple(range(36, 100))), BOUNDS)
    process_segment_check(EMPTY_SEGMENT, BOUNDS)


@pytest.mark.parametrize("segment,msg", [
    (((0, 1, 2, 3),) * 4, "at most 3"),
    (((0, 1, 2),), "not 4\\^j"),
    ((tuple(range(8)),), "not 4\\^j"),
    (((),), "not 4\\^j"),
    ((tuple(range(256)),), "at most 64"),
    (((0, 1, 2, 100),), "outside the training set"),
    (((0, 1, 2, -1),), "outside the training set"),
    (((0, 2, 1, 3),), "not strictly ascending"),
    (((0, 1, 1, 3),), "not strictly ascending"),
])
def test_segment_out_of_bounds_is_refused(segment, msg):
    with pytest.raises(InvalidSegment, match=msg):
        process_segment_check(segment, BOUNDS)


def test_step_lr_is_lr_times_two_to_the_j(digits_cb):
    lr = digits_cb.config.lr
    assert [compute_step_lr(digits_cb.config, b) for b in (4, 16, 64, 256)] == [lr, 2 * lr, 4 * lr, 8 * lr]
    with pytest.raises(InvalidBatchSize):
        compute_step_lr(digits_cb.config, 8)


def test_replay_is_the_update_step_by_step(digits_cb):
    gen = torch.Generator().manual_seed(0)
    segment = (sorted_batch(gen, digits_cb.train_size, 4), sorted_batch(gen, digits_cb.train_size, 64))
    model = digits_cb.model_from_state(digits_cb.genesis_state)
    process_segment_replay(digits_cb, model, segment)
    manual = digits_cb.model_from_state(digits_cb.genesis_state)
    for step, lr in zip(segment, (digits_cb.config.lr, 4 * digits_cb.config.lr)):
        process_update(manual, *digits_cb.batch(step), lr)
    assert compute_weights_hash(get_state(model)) == compute_weights_hash(get_state(manual))
    # Buffers follow from the replay: one BatchNorm update per step.
    assert int(get_state(model)["1.num_batches_tracked"]) == 2


# ── links, seeds, redraws ──

def test_links_and_seeds():
    h, r = keccak256(b"block"), keccak256(b"randao")
    assert compute_link(RuleSet.PAPER, h, r) == h
    assert compute_link(RuleSet.CHAIN_BOUND, h, r) == keccak256(h + r)
    assert compute_link(RuleSet.CHAIN_BOUND, h, keccak256(b"other")) != compute_link(RuleSet.CHAIN_BOUND, h, r)
    link = compute_link(RuleSet.CHAIN_BOUND, h, r)
    assert compute_seed(link, 0) == link
    assert compute_seed(link, 1) == keccak256(link + b"\x00\x00\x00\x01")
    assert len({compute_seed(link, j) for j in range(5)}) == 5


def test_redraw_opens_exactly_at_its_time():
    assert is_redraw_allowed(0, 100, 100, 60)
    assert not is_redraw_allowed(1, 100, 159, 60)
    assert is_redraw_allowed(1, 100, 160, 60)
    assert not is_redraw_allowed(3, 100, 279, 60) and is_redraw_allowed(3, 100, 280, 60)
    process_redraw_check(RuleSet.CHAIN_BOUND, 2, 100, 220, 60)
    with pytest.raises(RedrawTooEarly):
        process_redraw_check(RuleSet.CHAIN_BOUND, 2, 100, 219, 60)
    with pytest.raises(RedrawNotAllowed):
        process_redraw_check(RuleSet.PAPER, 1, 100, 10**9, 60)
    with pytest.raises(RedrawNotAllowed):
        process_redraw_check(RuleSet.CHAIN_BOUND, 2**32, 100, 10**15, 1)


def test_rule_set_names_and_codes():
    assert parse_rules("paper") is RuleSet.PAPER and parse_rules("chain-bound") is RuleSet.CHAIN_BOUND
    assert [rules_from_code(r.code) for r in RuleSet] == list(RuleSet)
    with pytest.raises(WrongRules):
        parse_rules("chainbound")
    with pytest.raises(WrongRules):
        rules_from_code(2)


# ── the difficulty rule ──

P = DifficultyParams(initial=8, minimum=1, maximum=32, target_block_time=10, half_life=40, genesis_time=1000)


@pytest.mark.parametrize("height,time,k", [
    (0, 1000, 8), (4, 1020, 9), (4, 1021, 8), (4, 1060, 8), (4, 1061, 7),  # rounding at +-tau/2
    (100, 1000, 32), (3, 500_000, 1),  # clamps
])
def test_difficulty_rule_edges(height, time, k):
    assert compute_next_difficulty(P, height, time) == k


def test_difficulty_rises_with_speed_and_falls_with_delay():
    ks = [compute_next_difficulty(P, 50, 1000 + t) for t in range(0, 2000, 10)]
    assert ks == sorted(ks, reverse=True) and ks[0] > 8 > ks[-1]


def test_difficulty_params_are_checked():
    process_difficulty_params_check(P)
    for bad in (replace(P, half_life=0), replace(P, target_block_time=0), replace(P, initial=40),
                replace(P, minimum=0), replace(P, maximum=256)):
        with pytest.raises(InvalidDifficulty):
            process_difficulty_params_check(bad)


# ── the chain-bound verdict's refusals ──

@pytest.fixture(scope="module")
def mined(digits, digits_cb):
    """A scenario at k = 3 and an honest chain-bound proof on it."""
    return honest_chain_bound_block(digits, digits_cb)


def test_honest_proof_passes(mined):
    sc, proof = mined
    assert sc.cb_verdict(proof).header.segment_root == compute_segment_root(proof.segment)


def test_verdicts_refuse_the_other_rule_set(mined, digits, digits_cb):
    sc, proof = mined
    from pol_core.chainbound import compute_chain_bound_verdict

    with pytest.raises(WrongRules):
        compute_chain_bound_verdict(digits, sc.tip, sc.parent_state, proof)
    with pytest.raises(WrongRules):
        compute_verdict(digits_cb, sc.paper_parent, sc.paper_link, 3, sc.paper_proof(sc.parent_state, proof.indices))


@pytest.mark.parametrize("change,error,msg", [
    (lambda p: replace(p, parent=keccak256(b"another link")), ParentNotTip, "is not the tip"),
    (lambda p: replace(p, height=p.height + 1), HeightNotNext, "must be"),
    (lambda p: replace(p, indices=tuple(reversed(p.indices))), InvalidIndices, "not strictly ascending"),
    (lambda p: replace(p, indices=p.indices[:3]), InvalidIndices, "S=4"),
    (lambda p: replace(p, segment=p.segment + ((0, 1, 2),)), InvalidSegment, "not 4\\^j"),
    (lambda p: replace(p, segment=((5000, 5001, 5002, 5003),)), InvalidSegment, "outside the training set"),
    (lambda p: replace(p, redraw=1), RedrawTooEarly, "opens at"),
])
def test_verdict_refusals(mined, change, error, msg):
    sc, proof = mined
    with pytest.raises(error, match=msg):
        sc.cb_verdict(change(proof))


def test_verdict_refuses_a_parent_state_that_is_not_the_parents(mined, digits_cb):
    sc, proof = mined
    from pol_core.chainbound import compute_chain_bound_verdict

    other = {k: v.clone() for k, v in sc.parent_state.items()}
    other["1.running_mean"][0] += 1e-3
    with pytest.raises(ParentStateMismatch):
        compute_chain_bound_verdict(digits_cb, sc.tip, other, proof)


def test_verdict_refuses_a_parent_of_another_task(mined, digits_cb):
    sc, proof = mined
    from pol_core.chainbound import compute_chain_bound_verdict

    tip = replace(sc.tip, header=replace(sc.tip.header, task_spec_hash=keccak256(b"other task")))
    with pytest.raises(InvalidHeader, match="block of task"):
        compute_chain_bound_verdict(digits_cb, tip, sc.parent_state, proof)


def test_monotone_rule_at_its_edges():
    parent = Header(b"\x00" * 32, 1, b"\x00" * 32, b"\x00" * 32, b"\x00" * 32, (), 90, 100, 1, b"\x00" * 20)
    ok = replace(parent, correct_before=98, correct_after=100)
    process_chain_bound_accuracy_rules(parent, ok)  # equal to the parent's count is allowed
    assert is_monotone_tip(100, 100) and not is_monotone_tip(100, 99)
    with pytest.raises(TipRegressed):
        process_chain_bound_accuracy_rules(parent, replace(ok, correct_after=99))
    with pytest.raises(AccuracyNotImproved):
        process_chain_bound_accuracy_rules(parent, replace(ok, correct_before=100, correct_after=100))
