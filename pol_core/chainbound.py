"""The chain-bound verdict: W is computed, not claimed.

W = replay(parent's canonical W', segment); then the paper's DGG step on P is checked exactly as under the
paper rules, against R drawn from seed(parent link, j); then the tip must not lose accuracy. The miner
sends no weights at all: the segment, P, j and its address are the whole proof.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import torch

from .evaluation import Evaluator, KnownCount, evaluate_serial, get_known_correct
from .header import Header, compute_header_hash
from .link import compute_seed, process_redraw_check
from .requirements import compute_requirements, process_requirements_check
from .rules import is_accuracy_improved, process_chain_position, process_same_task
from .rulesets import RuleSet, process_rules_check
from .segment import (
    Segment,
    SegmentBounds,
    compute_segment_root,
    process_ascending_check,
    process_segment_check,
    process_segment_replay,
)
from .step import process_step
from .tasks.spec import Task
from .types import (
    AccuracyNotImproved,
    Address,
    CorrectCount,
    Difficulty,
    Hash32,
    Height,
    InvalidIndices,
    InvalidWeights,
    ParentStateMismatch,
    RedrawIndex,
    SampleIndex,
    Timestamp,
    TipRegressed,
)
from .verify import Verdict, process_indices_check
from .weights import compute_weights_hash, get_flat_params, get_state, process_finite_check, process_state_check


@dataclass(frozen=True)
class SegmentProof:
    """What a chain-bound miner submits. No W: the verifier computes it."""

    parent: Hash32  # the parent's link, as the contract stores it
    height: Height
    segment: Segment  # every training step since the parent's W', each strictly ascending
    indices: tuple[SampleIndex, ...]  # P, strictly ascending
    redraw: RedrawIndex  # j
    miner: Address


@dataclass(frozen=True)
class TipContext:
    """The chain facts a chain-bound verdict needs about the block it extends."""

    header: Header  # the parent block's header
    link: Hash32  # its link: keccak256(blockHash || prevrandao at inclusion)
    difficulty: Difficulty  # the k the contract requires of the next block
    time: Timestamp  # the parent's inclusion timestamp (the contract's tip time)
    chain_time: Timestamp  # the latest chain timestamp the verifier knows (redraws open with it)
    redraw_after: int  # genesis parameter: seconds per redraw index


def is_monotone_tip(parent_correct_after: CorrectCount, correct_after: CorrectCount) -> bool:
    """The tip's test count never decreases."""
    return correct_after >= parent_correct_after


def process_chain_bound_accuracy_rules(parent: Header, header: Header) -> None:
    # Algorithm 2: the verified step itself must improve accuracy.
    if not is_accuracy_improved(header.correct_before, header.correct_after):
        raise AccuracyNotImproved(
            f"correct after {header.correct_after} must exceed correct before {header.correct_before}")
    # Monotone tip: no block may leave the chain's model worse than its parent's W' (drift stops here).
    if not is_monotone_tip(parent.correct_after, header.correct_after):
        raise TipRegressed(f"correct after {header.correct_after} is below the parent's {parent.correct_after}")


def process_parent_state_check(task: Task, parent_state: Mapping[str, torch.Tensor], parent: Header) -> None:
    """The replay must start from the parent's canonical W' (the verifier's own store supplies it)."""
    try:
        process_state_check(task.genesis_state, parent_state)
    except InvalidWeights as e:
        raise ParentStateMismatch(f"parent state is malformed: {e}") from e
    actual = compute_weights_hash(parent_state)
    # A store that hands out the wrong model would make every verdict meaningless.
    if actual != parent.new_weights_hash:
        raise ParentStateMismatch(f"parent state hashes to 0x{actual.hex()}, the parent's W' is "
                                  f"0x{parent.new_weights_hash.hex()}")


def process_segment_proof_shape(task: Task, tip: TipContext, proof: SegmentProof) -> None:
    """Every check that needs no forward pass, cheapest first."""
    process_same_task(tip.header, task.spec_hash)
    # R derives from the parent's link, so the proof must name the tip's link, one height above it.
    process_chain_position(tip.link, tip.header.height, proof.parent, proof.height)
    process_redraw_check(RuleSet.CHAIN_BOUND, proof.redraw, tip.time, tip.chain_time, tip.redraw_after)
    process_indices_check(proof.indices, task.config.batch_size, task.train_size)
    process_ascending_check(proof.indices, "P", InvalidIndices)
    process_segment_check(proof.segment, SegmentBounds.for_task(task))


def compute_parent_known_count(tip: TipContext) -> KnownCount:
    """The count the rules vouch for: the parent's canonical W' (by hash) and its correctAfter on chain."""
    return KnownCount(tip.header.new_weights_hash, tip.header.correct_after)


def compute_chain_bound_verdict(
    task: Task,
    tip: TipContext,
    parent_state: Mapping[str, torch.Tensor],
    proof: SegmentProof,
    evaluator: Evaluator = evaluate_serial,
) -> Verdict:
    """Verify a chain-bound proof on CPU and build the header the verifier attests. `parent_state` is the
    parent's canonical W' (checked against its hash). Verdict.state is the replayed W.

    `evaluator` computes the correct counts (any evaluator gives the serial code's integers). W is not
    evaluated where it is, by hash, the parent's W' (an empty segment): its count is on chain."""
    t0 = time.perf_counter()
    process_rules_check(task.config.rules, RuleSet.CHAIN_BOUND)
    process_segment_proof_shape(task, tip, proof)
    process_parent_state_check(task, parent_state, tip.header)
    t_shape = time.perf_counter()

    model = task.scratch_model(parent_state)
    process_segment_replay(task, model, proof.segment)
    process_finite_check(model.state_dict(), "W (the replayed segment)")
    state = get_state(model)  # W: parameters and buffers follow from the replay, never from the miner
    t_replay = time.perf_counter()

    before = get_flat_params(model)
    x, y = task.batch(proof.indices)  # (S, C, H, W), (S,)
    process_step(model, x, y, task.config)
    process_finite_check(model.state_dict(), "W'")
    after = get_flat_params(model)
    reqs = compute_requirements(compute_seed(tip.link, proof.redraw), tip.difficulty, task.num_params)
    process_requirements_check(before, after, reqs, allow_equal=task.config.allow_equal)
    t_update = time.perf_counter()

    new_state = get_state(model)
    new_hash = compute_weights_hash(new_state)
    weights_hash = compute_weights_hash(state)
    t_hash = time.perf_counter()

    # W = the parent's W' (by hash): correctBefore is the parent's attested correctAfter, not recomputed.
    known = get_known_correct(compute_parent_known_count(tip), weights_hash)
    counts = evaluator(task, [new_state] if known is not None else [new_state, state])
    correct_after = counts[0]
    correct_before = known if known is not None else counts[1]
    t_eval = time.perf_counter()

    header = Header(
        parent=tip.link,
        height=proof.height,
        task_spec_hash=task.spec_hash,
        weights_hash=weights_hash,
        new_weights_hash=new_hash,
        indices=tuple(proof.indices),
        correct_before=CorrectCount(correct_before),
        correct_after=CorrectCount(correct_after),
        difficulty=tip.difficulty,
        miner=proof.miner,
        segment_root=compute_segment_root(proof.segment),
        redraw=proof.redraw,
    )
    process_chain_bound_accuracy_rules(tip.header, header)
    timings = {
        "shape": t_shape - t0,
        "replay": t_replay - t_shape,
        "update": t_update - t_replay,
        "hash": t_hash - t_update,
        "evaluate": t_eval - t_hash,
    }
    return Verdict(header=header, block_hash=compute_header_hash(header), new_state=new_state, timings=timings,
                   state=state)
