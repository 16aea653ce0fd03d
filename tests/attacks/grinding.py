"""R grinding: choose the next block's requirements by varying free bytes of this one.

Once the attacker holds a valid block h, W'_h is fixed and does not depend on the miner address. It takes a
few candidate steps dW from W'_h, then tries miner addresses for block h: one header hash, one derivation of
R_{h+1} and an O(k) sign check per try, until some candidate meets R_{h+1}. It publishes h and h+1 back to
back: block h+1 for almost no work. Under the paper rules R_{h+1} = f(hash of h), so this works. Under
chain-bound rules R_{h+1} = f(keccak256(hash of h || prevrandao at inclusion)): while grinding, the attacker
does not know the prevrandao, so its pre-mined h+1 meets the real R_{h+1} only by chance.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from pol_core import link as link_rules
from pol_core.chainbound import SegmentProof, TipContext
from pol_core.header import Header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.requirements import compute_orientation, compute_requirements
from pol_core.rulesets import RuleSet
from pol_core.segment import EMPTY_SEGMENT
from pol_core.step import compute_correct, process_step
from pol_core.tasks import Task
from pol_core.types import Address, Difficulty, Hash32, Height, Timestamp
from pol_core.verify import Proof
from pol_core.weights import compute_weights_hash, get_flat_params

from .scenario import Scenario, State, count, find_step, sorted_batch

Candidate = tuple[tuple[int, ...], torch.Tensor]  # (P', sign of every weight's change under P')


@dataclass
class GrindAttack:
    block: Proof | SegmentProof  # block h, with the ground miner address
    header: Header  # its header
    next_indices: tuple[int, ...]  # P' of block h+1, chosen before h was published
    next_state: State  # W'_h, where block h+1 starts
    tries: int  # miner addresses tried
    seconds: float


def next_step_candidates(task: Task, state: State, gen: torch.Generator, n: int) -> list[Candidate]:
    """Steps from W'_h that would make a valid next block (they improve accuracy), with their signs."""
    out: list[Candidate] = []
    before = count(task, state)
    for _ in range(40 * n):
        p = sorted_batch(gen, task.train_size, task.config.batch_size)
        model = task.scratch_model(state)
        w0 = get_flat_params(model)
        process_step(model, *task.batch(p), task.config)
        signs = torch.sign(get_flat_params(model) - w0)  # (|W|,)
        if compute_correct(model, task.test_x, task.test_y, task.config.eval_batch) > before:
            out.append((p, signs))
            if len(out) == n:
                break
    return out


def grind(header: Header, link_of: Callable[[Hash32], Hash32], k: int, num_params: int,
          candidates: list[Candidate], max_tries: int) -> tuple[Address, tuple[int, ...], int]:
    """Vary the miner address of `header` until some candidate meets R(link_of(block hash))."""
    for n in range(1, max_tries + 1):
        miner = Address(keccak256(b"grind" + n.to_bytes(8, "big"))[:20])
        reqs = compute_requirements(link_of(compute_header_hash(replace(header, miner=miner))), Difficulty(k), num_params)
        idx = torch.tensor([r // 2 for r in reqs])
        want = compute_orientation(reqs)
        for p, signs in candidates:
            if bool((signs[idx].double() * want > 0).all()):
                return miner, p, n
    raise RuntimeError(f"no miner address in {max_tries} tries")


def grind_paper(sc: Scenario, gen: torch.Generator, candidates: int = 8, max_tries: int = 20_000) -> GrindAttack:
    tol = sc.paper.config.sabotage_tolerance
    p, _, _ = find_step(sc.paper, sc.parent_state, sc.paper_requirements(), gen,
                        lambda b, a: a > b and b + tol >= sc.parent_correct)
    honest = sc.paper_verdict(sc.paper_proof(sc.parent_state, p))
    cands = next_step_candidates(sc.paper, honest.new_state, gen, candidates)
    t0 = time.perf_counter()
    miner, p_next, tries = grind(honest.header, lambda h: h, sc.k, sc.paper.num_params, cands, max_tries)
    seconds = time.perf_counter() - t0
    block = sc.paper_proof(sc.parent_state, p, miner)
    return GrindAttack(block, replace(honest.header, miner=miner), p_next, honest.new_state, tries, seconds)


def paper_next_block(attack: GrindAttack) -> tuple[Proof, Header, Hash32]:
    """Block h+1 of the paper attack: (P', W'_h) on the ground block h."""
    h = attack.header
    parent_hash = compute_header_hash(h)
    proof = Proof(parent_hash, Height(h.height + 1), attack.next_indices, compute_weights_hash(attack.next_state),
                  attack.next_state, h.miner)
    return proof, h, parent_hash


def grind_chain_bound(sc: Scenario, gen: torch.Generator, guessed_randao: bytes, candidates: int = 8,
                      max_tries: int = 20_000) -> GrindAttack:
    """The same grind under chain-bound rules; the link needs a prevrandao, so the attacker guesses one."""
    p, _, _ = find_step(sc.chain_bound, sc.parent_state, sc.cb_requirements(), gen,
                        lambda b, a: a > b and a >= sc.parent_correct)
    honest = sc.cb_verdict(sc.cb_proof(EMPTY_SEGMENT, p))
    cands = next_step_candidates(sc.chain_bound, honest.new_state, gen, candidates)
    t0 = time.perf_counter()
    miner, p_next, tries = grind(
        honest.header, lambda h: link_rules.compute_link(RuleSet.CHAIN_BOUND, h, Hash32(guessed_randao)), sc.k,
        sc.chain_bound.num_params, cands, max_tries)
    seconds = time.perf_counter() - t0
    block = sc.cb_proof(EMPTY_SEGMENT, p, miner=miner)
    return GrindAttack(block, replace(honest.header, miner=miner), p_next, honest.new_state, tries, seconds)


def chain_bound_next_block(sc: Scenario, attack: GrindAttack, inclusion_randao: bytes) -> tuple[SegmentProof, TipContext]:
    """Block h+1 of the chain-bound attack, against the link block h actually got at inclusion."""
    h = attack.header
    link = link_rules.compute_link(RuleSet.CHAIN_BOUND, compute_header_hash(h), Hash32(inclusion_randao))
    tip = TipContext(h, link, Difficulty(sc.k), Timestamp(sc.tip.time + 10), Timestamp(sc.tip.time + 11),
                     sc.tip.redraw_after)
    return SegmentProof(link, Height(h.height + 1), EMPTY_SEGMENT, attack.next_indices, 0, h.miner), tip


def measure_grinding_rate(header: Header, k: int, num_params: int, seconds: float, rules: RuleSet,
                          actual_randao: bytes = b"\x00" * 32) -> dict[str, float]:
    """Next-R values an attacker can derive per second by varying the miner address of a finished block.
    Under chain-bound rules it must guess the prevrandao; `usable` counts guesses that match the real one."""
    guess = keccak256(b"attacker's guess")
    seeds, usable, n = set(), 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += 1
        h = compute_header_hash(replace(header, miner=Address(keccak256(n.to_bytes(8, "big"))[:20])))
        link = h if rules is RuleSet.PAPER else link_rules.compute_link(rules, h, Hash32(guess))
        compute_requirements(link, Difficulty(k), num_params)
        seeds.add(link)
        if rules is RuleSet.PAPER or guess == actual_randao:
            usable += 1
    elapsed = time.perf_counter() - t0
    return {"tries_per_s": n / elapsed, "distinct_per_s": len(seeds) / elapsed, "usable_per_s": usable / elapsed}
