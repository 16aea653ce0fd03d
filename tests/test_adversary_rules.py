"""Every attack class of issue 10 at the rule level: accepted by the paper verdict, refused by the
chain-bound verdict with its own reason, and let through again once the rule that covers it is switched off.
(The attack library is tests/attacks/; part B runs the same attacks against a real anvil and verifier.)"""
import pytest
import torch

import pol_core.chainbound as chainbound
import pol_core.link as link_rules
import pol_core.segment as segment_rules
from pol_core.link import process_redraw_check
from pol_core.rulesets import RuleSet
from pol_core.segment import EMPTY_SEGMENT, compute_segment_root
from pol_core.types import (
    AccuracyNotImproved,
    InvalidSegment,
    RedrawNotAllowed,
    RedrawTooEarly,
    RequirementsNotMet,
    TipRegressed,
)
from pol_core.weights import compute_weights_hash, get_flat_params
from tests.attacks import (
    buffer_knob,
    chain_bound_next_block,
    concatenated,
    craft_weights,
    dead_channel_block_paper,
    dead_tip_scenario,
    drift,
    find_step,
    fit_test_set,
    grind_chain_bound,
    grind_paper,
    is_halted,
    make_scenario,
    paper_next_block,
    replay_from_other_parent,
    sorted_batch,
    train,
    trained_parent,
)


@pytest.fixture(scope="module")
def parent(digits_cb):
    torch.set_num_threads(1)
    return trained_parent(digits_cb, torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def scenario(digits, digits_cb, parent):
    return lambda k: make_scenario(digits, digits_cb, parent, k)


def without_replay(monkeypatch, state):
    """Switch off 'W = replay(parent's W', segment)': W becomes whatever the miner had."""
    monkeypatch.setattr(chainbound, "process_segment_replay", lambda task, model, segment: model.load_state_dict(state))


def test_an_honest_chain_bound_block_is_accepted(scenario, digits_cb):
    sc = scenario(3)
    gen = torch.Generator().manual_seed(2)
    segment = tuple(sorted_batch(gen, digits_cb.train_size, b) for b in (4, 16, 64))
    w = train(digits_cb, sc.parent_state, segment)
    p, before, after = find_step(digits_cb, w, sc.cb_requirements(), gen, lambda b, a: a > b and a >= sc.parent_correct)
    v = sc.cb_verdict(sc.cb_proof(segment, p))
    h = v.header
    assert (h.parent, h.height, h.redraw) == (sc.tip.link, sc.tip.header.height + 1, 0)
    assert h.weights_hash == compute_weights_hash(w) == compute_weights_hash(v.state)
    assert h.segment_root == compute_segment_root(segment) and h.indices == p
    assert (h.correct_before, h.correct_after) == (before, after)


def test_drift(scenario, monkeypatch):
    sc = scenario(3)
    attack = drift(sc, torch.Generator().manual_seed(3))
    accepted = sc.paper_verdict(attack.paper)
    assert accepted.header.correct_after < sc.parent_correct  # the paper chain's tip got worse
    with pytest.raises(TipRegressed):
        sc.cb_verdict(attack.chain_bound)
    monkeypatch.setattr(chainbound, "is_monotone_tip", lambda parent_count, count: True)
    assert sc.cb_verdict(attack.chain_bound).header.correct_after < sc.parent_correct


def test_weight_crafting(scenario, monkeypatch):
    sc = scenario(6)
    attack = craft_weights(sc, torch.Generator().manual_seed(4))
    accepted = sc.paper_verdict(attack.paper)
    assert accepted.header.weights_hash != compute_weights_hash(sc.parent_state)  # W was edited, not trained
    with pytest.raises(RequirementsNotMet):
        sc.cb_verdict(attack.chain_bound)
    without_replay(monkeypatch, attack.cb_state)
    sc.cb_verdict(attack.chain_bound)


def test_buffer_knob(scenario, monkeypatch):
    sc = scenario(3)
    attack = buffer_knob(sc, torch.Generator().manual_seed(5))
    honest = attack.paper.__class__(**{**attack.paper.__dict__, "state": sc.parent_state,
                                       "weights_hash": compute_weights_hash(sc.parent_state)})
    with pytest.raises(AccuracyNotImproved):
        sc.paper_verdict(honest)  # without the knob the paper rules refuse this very P
    v = sc.paper_verdict(attack.paper)
    assert v.header.correct_after > v.header.correct_before
    with pytest.raises(AccuracyNotImproved):
        sc.cb_verdict(attack.chain_bound)
    without_replay(monkeypatch, attack.cb_state)
    sc.cb_verdict(attack.chain_bound)


def test_test_set_training(scenario, digits_cb, monkeypatch):
    sc = scenario(3)
    attack = fit_test_set(sc, torch.Generator().manual_seed(6))
    v = sc.paper_verdict(attack.paper)
    assert v.header.correct_before >= sc.parent_correct + 8  # a count inflated by fitting E itself
    with pytest.raises(InvalidSegment, match="outside the training set"):
        sc.cb_verdict(attack.chain_bound)
    monkeypatch.setattr(segment_rules, "get_segment_data", concatenated)
    assert sc.cb_verdict(attack.chain_bound).header.weights_hash == compute_weights_hash(attack.fitted)


def test_r_grinding_paper_rules(scenario):
    sc = scenario(4)
    attack = grind_paper(sc, torch.Generator().manual_seed(7))
    assert sc.paper_verdict(attack.block).header == attack.header
    proof, parent, parent_hash = paper_next_block(attack)
    from pol_core.verify import compute_verdict

    # Block h+1 was mined before h was published: the miner address chose its R.
    compute_verdict(sc.paper, parent, parent_hash, sc.k, proof)


def grind_and_include(sc, seed):
    """The chain-bound grind, then block h's inclusion with a prevrandao the attacker did not know."""
    attack = grind_chain_bound(sc, torch.Generator().manual_seed(seed), guessed_randao=b"\x00" * 32)
    assert sc.cb_verdict(attack.block).header == attack.header  # block h itself is honest work
    proof, tip = chain_bound_next_block(sc, attack, inclusion_randao=b"\x5a" * 32)
    return attack, proof, tip


def test_r_grinding_chain_bound_rules(scenario, digits_cb, monkeypatch):
    sc = scenario(4)
    attack, proof, tip = grind_and_include(sc, 7)
    with pytest.raises(RequirementsNotMet):
        chainbound.compute_chain_bound_verdict(digits_cb, tip, attack.next_state, proof)
    # Without prevrandao in the link, the link is the block hash the attacker ground: block h+1 passes.
    monkeypatch.setattr(link_rules, "compute_link", lambda rules, block_hash, randao: block_hash)
    attack, proof, tip = grind_and_include(sc, 7)
    chainbound.compute_chain_bound_verdict(digits_cb, tip, attack.next_state, proof)


def test_dead_weight_halt_paper_rules(scenario, digits):
    sc = scenario(4)
    gen = torch.Generator().manual_seed(8)
    attack = dead_channel_block_paper(sc, gen)
    assert sc.paper_verdict(attack.block).header == attack.header
    flat = get_flat_params(digits.model_from_state(attack.next_state))
    assert all(float(flat[i]) == 0.0 for i in attack.dead if i not in attack.conv_in)  # still dead after the step
    # Honest miners continue from W'_h, where R_{h+1} sits on weights that never move: no batch meets it.
    assert is_halted(digits, attack.next_state, attack.next_requirements, gen, tries=150)
    with pytest.raises(RedrawNotAllowed):
        process_redraw_check(RuleSet.PAPER, 1, sc.tip.time, sc.tip.time + 10**6, 60)


def test_dead_weight_liveness_chain_bound_rules(digits, digits_cb, parent, monkeypatch):
    sc, dead = dead_tip_scenario(digits, digits_cb, parent, k=4)
    gen = torch.Generator().manual_seed(9)
    assert is_halted(digits_cb, sc.parent_state, sc.cb_requirements(0), gen, tries=150)
    p0 = sorted_batch(gen, digits_cb.train_size, 4)
    with pytest.raises(RequirementsNotMet):
        sc.cb_verdict(sc.cb_proof(EMPTY_SEGMENT, p0))
    p1, _, _ = find_step(digits_cb, sc.parent_state, sc.cb_requirements(1), gen,
                         lambda b, a: a > b and a >= sc.parent_correct)
    redrawn = sc.cb_proof(EMPTY_SEGMENT, p1, redraw=1)
    with pytest.raises(RedrawTooEarly):
        sc.cb_verdict(redrawn, chain_time=sc.tip.time + sc.tip.redraw_after - 1)
    assert sc.cb_verdict(redrawn, chain_time=sc.tip.time + sc.tip.redraw_after).header.redraw == 1
    # Without the redraw rule the tip can never be extended.
    monkeypatch.setattr(link_rules, "is_redraw_allowed", lambda j, *a: j == 0)
    with pytest.raises(RedrawTooEarly):
        sc.cb_verdict(redrawn, chain_time=sc.tip.time + 100 * sc.tip.redraw_after)


def test_replay_from_another_parent(scenario, digits_cb, monkeypatch):
    sc = scenario(5)
    gen = torch.Generator().manual_seed(10)
    # The W' of a block on another branch: the same task trained along another path.
    sibling = trained_parent(digits_cb, torch.Generator().manual_seed(11), steps=36)
    attack = replay_from_other_parent(sc, sibling, gen)
    sc.paper_verdict(attack.paper)  # the paper chain's model forks to another lineage
    with pytest.raises(RequirementsNotMet):
        sc.cb_verdict(attack.chain_bound)

    def replay_from_sibling(task, model, segment):
        model.load_state_dict(attack.other_parent)
        segment_rules.process_segment_replay(task, model, segment)

    monkeypatch.setattr(chainbound, "process_segment_replay", replay_from_sibling)
    assert sc.cb_verdict(attack.chain_bound).header.weights_hash == compute_weights_hash(attack.replayed)
