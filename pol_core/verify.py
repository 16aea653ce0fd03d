"""Algorithm 2 with the protocol's additions, cheapest check first: the paper rules' verdict.
The chain-bound verdict is pol_core.chainbound.compute_chain_bound_verdict."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from .evaluation import Evaluator, KnownCount, evaluate_serial, get_known_correct
from .header import Header, compute_header_hash
from .requirements import compute_requirements, process_requirements_check
from .rules import process_accuracy_rules, process_chain_position, process_same_task
from .rulesets import RuleSet, process_rules_check
from .step import compute_correct, process_step
from .tasks.spec import Task
from .types import (
    Address,
    CorrectCount,
    Difficulty,
    Hash32,
    Height,
    InvalidIndices,
    SampleIndex,
)
from .weights import (
    compute_weights_hash,
    get_flat_params,
    get_state,
    process_finite_check,
    process_state_check,
    process_weights_hash_check,
)


@dataclass(frozen=True)
class Proof:
    """What a miner submits: (P, W) from Algorithm 1, and where in the chain it claims to go."""

    parent_hash: Hash32
    height: Height
    indices: tuple[SampleIndex, ...]
    weights_hash: Hash32
    state: Mapping[str, torch.Tensor]
    miner: Address


@dataclass
class Verdict:
    header: Header
    block_hash: Hash32
    new_state: dict[str, torch.Tensor]
    timings: dict[str, float] = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None  # W, when the verifier computed it (chain-bound replay)


def compute_genesis_correct(task: Task) -> CorrectCount:
    """accuracy(W0, E) of the task's genesis weights: the count the genesis block records."""
    return CorrectCount(compute_correct(task.new_model(), task.test_x, task.test_y, task.config.eval_batch))


def process_indices_check(indices: Sequence[int], batch_size: int, train_size: int) -> None:
    # Algorithm 1 draws exactly S samples.
    if len(indices) != batch_size:
        raise InvalidIndices(f"P must hold S={batch_size} indices, got {len(indices)}")
    # An index outside the train set names no sample.
    bad = [i for i in indices if not 0 <= int(i) < train_size]
    if bad:
        raise InvalidIndices(f"index {bad[0]} is outside [0, {train_size})")
    # Algorithm 1 draws S *different* indices.
    if len(set(int(i) for i in indices)) != len(indices):
        raise InvalidIndices("indices in P must be distinct")


def process_proof_shape(task: Task, proof: Proof) -> None:
    """Step 1: the cheap checks that need no forward pass."""
    process_indices_check(proof.indices, task.config.batch_size, task.train_size)
    process_state_check(task.genesis_state, proof.state)
    process_weights_hash_check(proof.state, proof.weights_hash)


def compute_verdict(
    task: Task,
    parent: Header,
    parent_hash: Hash32,
    difficulty: Difficulty,
    proof: Proof,
    evaluator: Evaluator = evaluate_serial,
    known_before: KnownCount | None = None,
) -> Verdict:
    """Verify a proof against its parent on CPU and build the header the verifier attests (paper rules;
    `parent_hash` is the parent's link, which is its block hash under these rules).

    `evaluator` computes the correct counts (any evaluator gives the serial code's integers);
    `known_before` is a count the caller's rules vouch for, used only if W is exactly those weights.
    """
    t0 = time.perf_counter()
    process_rules_check(task.config.rules, RuleSet.PAPER)
    process_proof_shape(task, proof)
    process_chain_position(parent_hash, parent.height, proof.parent_hash, proof.height)
    process_same_task(parent, task.spec_hash)
    t_shape = time.perf_counter()

    model = task.scratch_model(proof.state)
    before = get_flat_params(model)
    x, y = task.batch(proof.indices)
    process_step(model, x, y, task.config)
    process_finite_check(model.state_dict(), "W'")
    after = get_flat_params(model)
    reqs = compute_requirements(parent_hash, difficulty, task.num_params)
    process_requirements_check(before, after, reqs, allow_equal=task.config.allow_equal)
    t_update = time.perf_counter()

    new_state = get_state(model)
    new_hash = compute_weights_hash(new_state)
    t_hash = time.perf_counter()

    # W is evaluated unless the rules already vouch for its count (W = the parent's canonical W').
    known = get_known_correct(known_before, proof.weights_hash)
    counts = evaluator(task, [new_state] if known is not None else [new_state, proof.state])
    correct_after = counts[0]
    correct_before = known if known is not None else counts[1]
    t_eval = time.perf_counter()

    header = Header(
        parent=parent_hash,
        height=proof.height,
        task_spec_hash=task.spec_hash,
        weights_hash=proof.weights_hash,
        new_weights_hash=new_hash,
        indices=tuple(proof.indices),
        correct_before=CorrectCount(correct_before),
        correct_after=CorrectCount(correct_after),
        difficulty=difficulty,
        miner=proof.miner,
    )
    process_accuracy_rules(parent, header, task.config.sabotage_tolerance)
    timings = {
        "shape": t_shape - t0,
        "update": t_update - t_shape,
        "hash": t_hash - t_update,
        "evaluate": t_eval - t_hash,
    }
    return Verdict(header=header, block_hash=compute_header_hash(header), new_state=new_state, timings=timings)
