"""Dead-weight halt: a tip whose W' has weights that can never move, and an R that lands on one.

A BatchNorm channel with zero gamma and beta whose outgoing weights are zero is dead: every weight feeding
or leaving it has a gradient of exactly zero, for every batch, so a requirement on it can never be met
under the strict rule. Under the paper rules the attacker writes such a W itself, grinds the miner address
until R_{h+1} lands on the dead channel, and the chain halts for honest miners (there is no redraw). Under
chain-bound rules W cannot be written and R cannot be ground; and where a dead unit occurs anyway (ReLU
networks have them), redraw index j opens a fresh R once the tip is j * redrawAfter seconds old.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from pol_core.header import Header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.requirements import compute_requirements
from pol_core.tasks import Task
from pol_core.types import Address, Difficulty, Requirement
from pol_core.verify import Proof

from .scenario import Scenario, State, count, find_step, make_scenario, meets, sorted_batch, train, with_randao

LAYER, FEATURES_PER_CHANNEL = "4", 16  # digits-cnn: BatchNorm2d(16) after the second conv; 4x4 pooled features


def param_offsets(task: Task) -> dict[str, int]:
    out, start = {}, 0
    for name, p in task.new_model().named_parameters():
        out[name] = start
        start += p.numel()
    return out


def incoming_weights(task: Task, channel: int) -> set[int]:
    fan_in = 8 * 3 * 3  # conv 8 -> 16, 3x3
    start = param_offsets(task)["3.weight"] + channel * fan_in
    return set(range(start, start + fan_in))


def dead_weights(task: Task, channel: int) -> set[int]:
    """Flat indices whose gradient is identically zero once `channel` is killed."""
    off = param_offsets(task)
    conv = incoming_weights(task, channel)
    linear = (off["8.weight"] + row * 256 + channel * FEATURES_PER_CHANNEL + f
              for row in range(10) for f in range(FEATURES_PER_CHANNEL))
    return {*conv, off[f"{LAYER}.weight"] + channel, off[f"{LAYER}.bias"] + channel, *linear}


def kill_channel(state: State, channel: int) -> State:
    out = {n: t.clone() for n, t in state.items()}
    out[f"{LAYER}.weight"][channel] = 0.0
    out[f"{LAYER}.bias"][channel] = 0.0
    out["8.weight"][:, channel * FEATURES_PER_CHANNEL : (channel + 1) * FEATURES_PER_CHANNEL] = 0.0
    return out


def hits(reqs: list[Requirement], dead: set[int]) -> bool:
    return any(r // 2 in dead for r in reqs)


def is_halted(task: Task, state: State, reqs: list[Requirement], gen: torch.Generator, tries: int) -> bool:
    """No batch among `tries` random ones meets R from `state`."""
    return all(meets(task, state, sorted_batch(gen, task.train_size, task.config.batch_size), reqs) is None
               for _ in range(tries))


@dataclass
class DeadWeightAttack:
    block: Proof  # block h: W with a dead channel, and a miner address ground for R_{h+1}
    header: Header
    next_requirements: list[Requirement]  # R_{h+1}: lands on the dead channel
    next_state: State  # W'_h, from which honest miners must continue
    dead: set[int]
    conv_in: set[int]  # the dead channel's incoming conv weights: frozen, but not zero
    tries: int


def least_harmful_channel(task: Task, state: State, floor: int) -> int:
    scores = [(count(task, kill_channel(state, c)), c) for c in range(16)]
    best, c = max(scores)
    if best < floor:
        raise RuntimeError(f"every channel costs more than the tolerance (best {best} < {floor})")
    return c


def dead_channel_block_paper(sc: Scenario, gen: torch.Generator, max_tries: int = 5000,
                             warm_steps: int = 0) -> DeadWeightAttack:
    """`warm_steps`: W is free under the paper rules, so the attacker may first train the parent's W' a few
    steps it never shows (64 samples each), for a model a single step can still improve."""
    tol = sc.paper.config.sabotage_tolerance
    base = train(sc.paper, sc.parent_state, [sorted_batch(gen, sc.paper.train_size, 64) for _ in range(warm_steps)])
    channel = least_harmful_channel(sc.paper, base, sc.parent_correct - tol)
    dead = dead_weights(sc.paper, channel)
    w = kill_channel(base, channel)
    p, _, _ = find_step(sc.paper, w, sc.paper_requirements(), gen, lambda b, a: a > b and b + tol >= sc.parent_correct)
    verdict = sc.paper_verdict(sc.paper_proof(w, p))
    for n in range(1, max_tries + 1):
        miner = Address(keccak256(b"halt" + n.to_bytes(8, "big"))[:20])
        header = replace(verdict.header, miner=miner)
        nxt = compute_requirements(compute_header_hash(header), Difficulty(sc.k), sc.paper.num_params)
        if hits(nxt, dead):
            return DeadWeightAttack(sc.paper_proof(w, p, miner), header, nxt, verdict.new_state, dead,
                                    incoming_weights(sc.paper, channel), n)
    raise RuntimeError("no miner address put R_{h+1} on the dead channel")


def dead_tip_scenario(paper: Task, chain_bound: Task, parent_state: State, k: int,
                      max_tries: int = 5000) -> tuple[Scenario, set[int]]:
    """A chain-bound tip whose W' has a dead channel and whose R (j = 0) lands on it, while R for j = 1
    does not: the situation a ReLU network reaches without any attacker."""
    channel = least_harmful_channel(chain_bound, parent_state, 0)
    dead = dead_weights(chain_bound, channel)
    base = make_scenario(paper, chain_bound, kill_channel(parent_state, channel), k)
    for n in range(max_tries):
        sc = with_randao(base, keccak256(b"dead tip" + n.to_bytes(4, "big")))
        if hits(sc.cb_requirements(0), dead) and not hits(sc.cb_requirements(1), dead):
            return sc, dead
    raise RuntimeError("no link put R on the dead channel")
