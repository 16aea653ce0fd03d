"""The attack library: one function per attack class of issue 10, at the rule level (pure pol_core).

Each attack builds, from a Scenario (one parent block seen under both rule sets), the proof it would send
under the paper rules and the best proof it can send under the chain-bound rules. tests/test_adversary_rules.py
shows each accepted by the paper verdict and refused by the chain-bound verdict, and accepted again when the
rule that covers it is switched off. The same functions drive the real-anvil, real-verifier suite.

| attack | function | refused under chain-bound by |
|---|---|---|
| drift | drift.drift | the monotone tip (TipRegressed) |
| weight crafting | crafting.craft_weights | W = replay(parent W', segment) (RequirementsNotMet) |
| buffer knob | knob.buffer_knob | buffers from the replay (AccuracyNotImproved) |
| test-set training | testset.fit_test_set | segments index the training set only (InvalidSegment) |
| R grinding | grinding.grind_paper / grind_chain_bound | link = keccak256(hash, prevrandao) (RequirementsNotMet) |
| dead-weight halt | deadweight.dead_channel_block_paper / dead_tip_scenario | the timed redraw (liveness; RedrawTooEarly before it opens) |
| replay from another parent | replay.replay_from_other_parent | replay starts at the parent's W' (RequirementsNotMet) |
"""
from .crafting import CraftAttack, craft_weights
from .deadweight import DeadWeightAttack, dead_channel_block_paper, dead_tip_scenario, is_halted
from .drift import DriftAttack, drift
from .grinding import (
    GrindAttack,
    chain_bound_next_block,
    grind_chain_bound,
    grind_paper,
    measure_grinding_rate,
    paper_next_block,
)
from .knob import KnobAttack, buffer_knob
from .replay import ReplayAttack, replay_from_other_parent
from .scenario import (
    ATTACKER,
    Scenario,
    count,
    find_step,
    honest_chain_bound_block,
    make_scenario,
    sorted_batch,
    train,
    trained_parent,
)
from .testset import FitTestSetAttack, concatenated, fit_test_set

__all__ = [
    "CraftAttack", "craft_weights", "DeadWeightAttack", "dead_channel_block_paper", "dead_tip_scenario", "is_halted",
    "DriftAttack", "drift", "GrindAttack", "chain_bound_next_block", "grind_chain_bound", "grind_paper",
    "measure_grinding_rate", "paper_next_block", "KnobAttack", "buffer_knob", "ReplayAttack",
    "replay_from_other_parent", "ATTACKER", "Scenario", "count", "find_step", "honest_chain_bound_block", "make_scenario", "sorted_batch", "train",
    "trained_parent", "FitTestSetAttack", "concatenated", "fit_test_set",
]
