"""Replay of a segment from another parent: work done on one model, claimed on top of another.

The attacker trained a segment from the W' of a different block A (a sibling it mined on, or any model it
prefers) and found P on the result, then submits it to extend the tip B. Under the paper rules W is a
claim, so the block passes as long as W is within the tolerance of B: the chain's model silently forks
away from B's lineage and B's training is lost. Under chain-bound rules the verifier replays the segment
from B's canonical W', which gives another W, on which the attacker's P is no proof.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pol_core.chainbound import SegmentProof
from pol_core.segment import Segment
from pol_core.verify import Proof

from .scenario import Scenario, State, find_step, sorted_batch, train


@dataclass
class ReplayAttack:
    paper: Proof
    chain_bound: SegmentProof
    other_parent: State  # W'_A, where the segment really starts
    segment: Segment
    replayed: State  # replay(W'_A, segment): the W the attacker's P was found on


def replay_from_other_parent(sc: Scenario, other_parent: State, gen: torch.Generator, steps: int = 3) -> ReplayAttack:
    task = sc.chain_bound
    segment = tuple(sorted_batch(gen, task.train_size, 16) for _ in range(steps))
    w = train(task, other_parent, segment)
    tol = sc.paper.config.sabotage_tolerance
    p_paper, _, _ = find_step(sc.paper, w, sc.paper_requirements(), gen,
                              lambda b, a: a > b and b + tol >= sc.parent_correct)
    p_cb, _, _ = find_step(sc.chain_bound, w, sc.cb_requirements(), gen, lambda b, a: a > b and a >= sc.parent_correct)
    return ReplayAttack(sc.paper_proof(w, p_paper), sc.cb_proof(segment, p_cb), other_parent, segment, w)
