"""Proofs built from the consensus rules alone (pol_core): no chain, no network, no web3, so that
benchmarks can use them on a machine that has only torch and numpy (bench/eval_shard.py)."""
from __future__ import annotations

from pol_core.requirements import compute_requirements
from pol_core.tasks import Task
from pol_core.weights import compute_weights_hash

MINER = bytes.fromhex("00000000000000000000000000000000000000aa")


def proof_from_genesis(task: Task, indices: tuple[int, ...] = (0, 1, 2, 3), miner: bytes = MINER,
                       genesis_correct: int | None = None):
    """(proof, parent header, parent hash, [W', W]): a proof from genesis whose one requirement (k = 1)
    the step on `indices` meets, found by choosing the parent rather than by mining (the genesis
    header's k field only changes the parent hash, hence R). The accuracy rule decides the rest.
    `genesis_correct` replaces the genesis header's count (default: evaluated, serially): benchmarks
    pass one to skip that evaluation; only acceptance can change, not the work a verdict does."""
    from pol_core.header import compute_genesis_header, compute_header_hash
    from pol_core.requirements import is_requirements_met
    from pol_core.step import compute_correct, process_step
    from pol_core.verify import Proof
    from pol_core.weights import get_flat_params, get_state

    state = task.genesis_state
    correct = genesis_correct if genesis_correct is not None else compute_correct(
        task.model_from_state(state), task.test_x, task.test_y, task.config.eval_batch)
    model = task.model_from_state(state)
    before = get_flat_params(model)
    process_step(model, *task.batch(indices), task.config)
    after = get_flat_params(model)
    for k_field in range(1, 200):
        parent = compute_genesis_header(task.spec_hash, task.genesis_hash, correct, k_field)
        parent_hash = compute_header_hash(parent)
        if is_requirements_met(before, after, compute_requirements(parent_hash, 1, task.num_params)):
            proof = Proof(parent_hash, 1, tuple(indices), compute_weights_hash(state), state, miner)
            return proof, parent, parent_hash, [get_state(model), dict(state)]
    raise RuntimeError("no parent hash whose requirement this step meets")
