"""One parent block seen under both rule sets, and the honest moves every attack is built from.

A Scenario holds the parent's canonical W' and a parent header for each rule set (paper: linked by block
hash; chain-bound: by keccak256(blockHash || randao)). Attacks return proofs for both verdicts; tests feed
them to `paper_verdict` and `cb_verdict`. Part B builds the same Scenario from a live chain instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

from pol_core.chainbound import SegmentProof, TipContext, compute_chain_bound_verdict
from pol_core.header import Header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.link import compute_link, compute_seed
from pol_core.requirements import compute_requirements, is_requirements_met
from pol_core.rulesets import RuleSet
from pol_core.segment import EMPTY_SEGMENT, Segment, compute_segment_root
from pol_core.step import compute_correct, process_step
from pol_core.tasks import Task
from pol_core.types import Address, CorrectCount, Difficulty, Hash32, Height, RedrawIndex, Requirement, Timestamp
from pol_core.verify import Proof, Verdict, compute_verdict
from pol_core.weights import compute_weights_hash, get_flat_params, get_state

State = dict[str, torch.Tensor]
ATTACKER = Address(b"\xa7" * 20)
TIP_TIME = Timestamp(1_700_000_000)
REDRAW_AFTER = 60


@dataclass
class Scenario:
    paper: Task
    chain_bound: Task
    parent_state: State  # the parent's canonical W'
    parent_correct: int
    k: int
    paper_parent: Header
    paper_link: Hash32  # the paper parent's block hash
    cb_parent: Header
    tip: TipContext  # the chain-bound parent, its link and the chain's clock
    notes: dict = field(default_factory=dict)

    @property
    def height(self) -> Height:
        return Height(self.paper_parent.height + 1)

    def paper_requirements(self) -> list[Requirement]:
        return compute_requirements(self.paper_link, Difficulty(self.k), self.paper.num_params)

    def cb_requirements(self, redraw: int = 0) -> list[Requirement]:
        return compute_requirements(compute_seed(self.tip.link, RedrawIndex(redraw)), Difficulty(self.k),
                                    self.chain_bound.num_params)

    def paper_proof(self, state: Mapping[str, torch.Tensor], indices: Sequence[int], miner: Address = ATTACKER) -> Proof:
        return Proof(self.paper_link, self.height, tuple(indices), compute_weights_hash(state), state, miner)

    def cb_proof(self, segment: Segment, indices: Sequence[int], redraw: int = 0, miner: Address = ATTACKER) -> SegmentProof:
        return SegmentProof(self.tip.link, self.height, segment, tuple(indices), RedrawIndex(redraw), miner)

    def paper_verdict(self, proof: Proof) -> Verdict:
        return compute_verdict(self.paper, self.paper_parent, self.paper_link, Difficulty(self.k), proof)

    def cb_verdict(self, proof: SegmentProof, chain_time: int | None = None) -> Verdict:
        tip = self.tip if chain_time is None else TipContext(self.tip.header, self.tip.link, self.tip.difficulty,
                                                              self.tip.time, Timestamp(chain_time), self.tip.redraw_after)
        return compute_chain_bound_verdict(self.chain_bound, tip, self.parent_state, proof)


def make_scenario(paper: Task, chain_bound: Task, parent_state: State, k: int, randao: bytes = keccak256(b"randao"),
                  height: int = 7) -> Scenario:
    """Parent headers of height `height` whose W' is `parent_state`, one per rule set."""
    state = {n: t.clone() for n, t in parent_state.items()}
    w = compute_weights_hash(state)
    correct = count(paper, state)

    def parent(task: Task, root: Hash32) -> Header:
        return Header(keccak256(b"grandparent"), Height(height), task.spec_hash, keccak256(b"w"), w, (0, 1, 2, 3),
                      CorrectCount(correct - 1), CorrectCount(correct), Difficulty(k), Address(b"\x01" * 20),
                      segment_root=root)

    paper_parent = parent(paper, Hash32(bytes(32)))
    cb_parent = parent(chain_bound, compute_segment_root(EMPTY_SEGMENT))
    link = compute_link(RuleSet.CHAIN_BOUND, compute_header_hash(cb_parent), Hash32(randao))
    tip = TipContext(cb_parent, link, Difficulty(k), TIP_TIME, Timestamp(TIP_TIME + 1), REDRAW_AFTER)
    return Scenario(paper, chain_bound, state, correct, k, paper_parent, compute_header_hash(paper_parent), cb_parent, tip)


def with_randao(sc: Scenario, randao: bytes) -> Scenario:
    """The same scenario, its chain-bound parent included with another prevrandao (hence another link)."""
    from dataclasses import replace

    link = compute_link(RuleSet.CHAIN_BOUND, compute_header_hash(sc.cb_parent), Hash32(randao))
    return replace(sc, tip=replace(sc.tip, link=link))


# ── honest moves ──

def count(task: Task, state: Mapping[str, torch.Tensor]) -> int:
    model = task.scratch_model(state)
    return compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)


def sorted_batch(gen: torch.Generator, pool: int, size: int) -> tuple[int, ...]:
    """`size` distinct indices in [0, pool), strictly ascending (the chain-bound canonical order)."""
    return tuple(int(i) for i in torch.randperm(pool, generator=gen)[:size].sort().values)


def train(task: Task, state: Mapping[str, torch.Tensor], steps: Sequence[Sequence[int]],
          data: tuple[torch.Tensor, torch.Tensor] | None = None) -> State:
    """The task's update on each batch in turn (lr scaled for 4^j * S), from `state`, on `data`
    (default: the training set). With the default data this is exactly a segment replay."""
    x_all, y_all = data if data is not None else (task.train_x, task.train_y)
    model = task.scratch_model(state)
    for step in steps:
        idx = torch.tensor(list(step), dtype=torch.long)
        process_step(model, x_all[idx], y_all[idx], task.config)
    return get_state(model)


def meets(task: Task, state: Mapping[str, torch.Tensor], indices: Sequence[int], reqs: Sequence[Requirement]) -> State | None:
    """W' when one step on `indices` from `state` meets R (the strict rule), else None."""
    model = task.scratch_model(state)
    before = get_flat_params(model)
    x, y = task.batch(indices)
    process_step(model, x, y, task.config)
    return get_state(model) if is_requirements_met(before, get_flat_params(model), reqs) else None


def find_step(task: Task, state: Mapping[str, torch.Tensor], reqs: Sequence[Requirement], gen: torch.Generator,
              accept: Callable[[int, int], bool], tries: int = 4000) -> tuple[tuple[int, ...], int, int]:
    """A strictly ascending P whose step from `state` meets R and whose counts (before, after) pass
    `accept`. Raises when `tries` draws find none."""
    before = count(task, state)
    for _ in range(tries):
        p = sorted_batch(gen, task.train_size, task.config.batch_size)
        after_state = meets(task, state, p, reqs)
        if after_state is None:
            continue
        after = count(task, after_state)
        if accept(before, after):
            return p, before, after
    raise RuntimeError(f"no batch in {tries} draws met R and the count condition")


def trained_parent(task: Task, gen: torch.Generator, steps: int = 30, batch: int = 64) -> State:
    """Genesis trained honestly for a while: a parent with room both to drift down and to improve."""
    return train(task, task.genesis_state, [sorted_batch(gen, task.train_size, batch) for _ in range(steps)])


def honest_chain_bound_block(paper: Task, chain_bound: Task, seed: int = 21) -> tuple[Scenario, SegmentProof]:
    """A scenario at k = 3 and an honest chain-bound proof on it: one segment step of 16 samples, then
    a step that meets R and improves on the parent."""
    gen = torch.Generator().manual_seed(seed)
    sc = make_scenario(paper, chain_bound, trained_parent(chain_bound, gen, steps=10), 3)
    segment = (sorted_batch(gen, chain_bound.train_size, 16),)
    w = train(chain_bound, sc.parent_state, segment)
    p, _, _ = find_step(chain_bound, w, sc.cb_requirements(), gen, lambda b, a: a > b and a >= sc.parent_correct)
    return sc, sc.cb_proof(segment, p)
