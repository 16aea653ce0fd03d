"""Weight crafting: meet R by editing W directly instead of searching mini-batches.

For a fixed P, the step's change at a required weight is -lr * g_i(W). The attacker descends on W itself
(a second-order gradient through the loss) until every required g_i has the sign R asks for, then keeps the
edit small so the accuracy rules still pass. Under the paper rules W is a claim, so this is a valid block at
a cost that grows slowly with k, where honest search costs 2^k steps. Under chain-bound rules W is the replay
of the parent's W' and the segment, so the edit cannot be expressed; the attacker's P, tuned for the edited
W, meets R on the canonical W only by chance (2^-k).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from pol_core.chainbound import SegmentProof
from pol_core.requirements import compute_orientation
from pol_core.segment import EMPTY_SEGMENT
from pol_core.tasks import Task
from pol_core.types import Requirement
from pol_core.verify import Proof

from .scenario import Scenario, State, count, meets, sorted_batch, train


@dataclass
class CraftAttack:
    paper: Proof
    chain_bound: SegmentProof
    paper_state: State  # the crafted W for the paper rules' R
    cb_state: State  # the crafted W the attacker would need for the chain-bound R
    seconds: float  # wall time of both crafts
    iterations: int


def locate(model: torch.nn.Module, reqs: Sequence[Requirement]) -> list[tuple[int, int]]:
    """(parameter number, offset inside it) of each required weight."""
    sizes = [p.numel() for p in model.parameters()]
    out = []
    for r in reqs:
        idx, n = r // 2, 0
        while idx >= sizes[n]:
            idx -= sizes[n]
            n += 1
        out.append((n, idx))
    return out


def least_violated(task: Task, model: torch.nn.Module, where: list[tuple[int, int]], sign: torch.Tensor,
                   gen: torch.Generator, candidates: int = 16) -> tuple[int, ...]:
    """Of a few random batches, the one whose step already has the most required signs right: the edit
    then has fewer signs to flip, and costs less accuracy."""
    params = list(model.parameters())
    best, best_bad = None, None
    for _ in range(candidates):
        p = sorted_batch(gen, task.train_size, task.config.batch_size)
        model.train()
        grads = torch.autograd.grad(F.cross_entropy(model(task.batch(p)[0]), task.batch(p)[1]), params)
        g = torch.stack([grads[n].reshape(-1)[o] for n, o in where])  # (k,)
        bad = int((sign * g >= 0).sum())
        if best_bad is None or bad < best_bad:
            best, best_bad = p, bad
    return best


def craft_for(task: Task, parent: State, reqs: Sequence[Requirement], gen: torch.Generator,
              accept: Callable[[int, int], bool], tries: int = 30, iters: int = 400,
              eta: float = 0.01, keep: float = 1.0) -> tuple[State, tuple[int, ...], int]:
    """Edit the parameters of `parent` (buffers untouched) until one step on some P meets R and the
    counts pass `accept`. Returns (W, P, iterations used)."""
    sign = compute_orientation(reqs).float()  # (k,): +1 increase, -1 decrease
    margin = 1e-4
    used = 0
    with torch.no_grad():
        reference = task.model_from_state(parent).eval()(task.test_x)  # (N, classes): logits to keep in place
    for _ in range(tries):
        model = task.model_from_state(parent)
        params = list(model.parameters())
        where = locate(model, reqs)
        p = least_violated(task, model, where, sign, gen)
        x, y = task.batch(p)
        for _ in range(iters):
            used += 1
            model.train()
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            g = torch.stack([grads[n].reshape(-1)[o] for n, o in where])  # (k,)
            # The step moves weight i by -lr * g_i; R wants sign_i * (-g_i) > 0.
            violation = torch.relu(sign * g + margin)
            if float(violation.detach().sum()) == 0.0:
                break
            model.eval()
            drift = ((model(task.test_x) - reference) ** 2).mean()  # the public test set's logits stay put
            edit = torch.autograd.grad(violation.sum() / margin + keep * drift, params)
            norm = torch.sqrt(sum((e * e).sum() for e in edit)) + 1e-12
            with torch.no_grad():
                for q, e in zip(params, edit):
                    q.sub_(eta * e / norm)
        crafted = {n: t.detach().clone() for n, t in model.state_dict().items()}
        for n, t in parent.items():
            if not t.is_floating_point() or "running" in n:
                crafted[n] = t.clone()  # the train-mode forwards above moved the buffers; put them back
        after = meets(task, crafted, p, reqs)
        if after is not None and accept(count(task, crafted), count(task, after)):
            return crafted, p, used
    raise RuntimeError("crafting did not produce a block")


def craft_weights(sc: Scenario, gen: torch.Generator, warm_steps: int = 10) -> CraftAttack:
    """W is free, so the attacker starts from a stronger model than the parent's (a few extra training
    steps it never has to show), which leaves room for the accuracy the edit costs."""
    t0 = time.perf_counter()
    tol = sc.paper.config.sabotage_tolerance
    start = train(sc.chain_bound, sc.parent_state,
                  [sorted_batch(gen, sc.chain_bound.train_size, 64) for _ in range(warm_steps)])
    paper_w, paper_p, n1 = craft_for(sc.paper, start, sc.paper_requirements(), gen,
                                     lambda b, a: a > b and b + tol >= sc.parent_correct)
    # For chain-bound R the attacker crafts the same way, and would also need a monotone tip.
    cb_w, cb_p, n2 = craft_for(sc.chain_bound, start, sc.cb_requirements(), gen,
                               lambda b, a: a > b and a >= sc.parent_correct)
    seconds = time.perf_counter() - t0
    # The best chain-bound proof it can send: no segment reaches the edit, so P on the canonical W'.
    return CraftAttack(sc.paper_proof(paper_w, paper_p), sc.cb_proof(EMPTY_SEGMENT, cb_p), paper_w, cb_w, seconds, n1 + n2)
