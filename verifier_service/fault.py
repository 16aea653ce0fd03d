"""Test-only fault of `pol verifier serve --fault-sign-blindly`: a member that signs without verifying.

It builds the header a chain-bound proof claims by replaying the segment and stepping on P, and checks no
rule: not the requirements, not the accuracy. The fault tests use it to show that a bad block needs t
honest-looking signatures to land, and that a member signing two headers at one height is caught.
"""
from __future__ import annotations

from typing import Mapping

import torch

from pol_core.chainbound import SegmentProof, TipContext
from pol_core.evaluation import evaluate_serial
from pol_core.header import Header, compute_header_hash
from pol_core.segment import compute_segment_root, process_segment_replay
from pol_core.step import process_step
from pol_core.tasks import Task
from pol_core.types import CorrectCount
from pol_core.verify import Verdict
from pol_core.weights import compute_weights_hash, get_state


def compute_blind_verdict(task: Task, tip: TipContext, parent_state: Mapping[str, torch.Tensor],
                          proof: SegmentProof) -> Verdict:
    model = task.scratch_model(parent_state)
    process_segment_replay(task, model, proof.segment)
    state = get_state(model)
    process_step(model, *task.batch(proof.indices), task.config)
    new_state = get_state(model)
    after, before = evaluate_serial(task, [new_state, state])
    header = Header(parent=tip.link, height=proof.height, task_spec_hash=task.spec_hash,
                  weights_hash=compute_weights_hash(state), new_weights_hash=compute_weights_hash(new_state),
                  indices=tuple(proof.indices), correct_before=CorrectCount(before), correct_after=CorrectCount(after),
                  difficulty=tip.difficulty, miner=proof.miner, segment_root=compute_segment_root(proof.segment),
                  redraw=proof.redraw)
    return Verdict(header=header, block_hash=compute_header_hash(header), new_state=new_state, state=state)
