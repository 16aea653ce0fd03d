"""The prover: both modes against a real verifier and anvil, tip switching, Ctrl-C, sign agreement."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from pol_core.keccak import keccak256
from pol_core.requirements import compute_requirements
from pol.client import Rejected, VerifierClient
from pol.reasons import ServiceReason
from pol_core.step import process_step
from pol_core.types import InvalidBatchSize
from pol_core.verify import Proof, compute_verdict
from pol_core.weights import compute_weights_hash, get_flat_params, get_state
from prover.fast import BatchedSearch
from prover.miner import Miner, MinerConfig
from prover.search import FastSearcher, draw_round

from .helpers import deploy_fresh, mine_on, start_verifier_process, submit_found


@pytest.fixture()
def network(anvil, digits, tmp_path):
    # k = 3: at k >= S + 1 = 5 a tip can draw R that no batch of 4 meets (for example five "increase"
    # requirements on five different rows of the last linear layer, whose inputs are mostly
    # positive, need five different labels among four samples), and these tests would hang on it.
    dep = deploy_fresh(anvil.url, digits, tmp_path / "d.json", difficulty=3)
    vp = start_verifier_process(tmp_path / "d.json", tmp_path / "v")
    yield dep, vp, tmp_path
    vp.stop()


@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_both_modes_mine_blocks_the_verifier_accepts(network, digits, mode):
    dep, vp, _ = network
    miner = Miner(digits, MinerConfig(target=f"127.0.0.1:{vp.port}", miner=b"\x0a" * 20, mode=mode, candidates=64,
                                      max_blocks=2, seed=3))
    stats = miner.run()
    assert stats.blocks_won == 2 and not stats.rejected
    blocks = dep.client().get_blocks(dep.deploy_block)
    assert [b.header.height for b in blocks] == [0, 1, 2]
    assert all(b.header.miner == b"\x0a" * 20 for b in blocks[1:])


def land_a_block_and_drop_its_model(network, digits) -> tuple[Path, bytes]:
    """Block 1 lands through the verifier; then its W' file leaves the verifier's store, so GetModel of
    the tip answers UNKNOWN_MODEL. Returns the file's path and bytes, to put it back."""
    _, vp, tmp = network
    with VerifierClient(f"127.0.0.1:{vp.port}") as client:
        tip = client.get_tip()
        r1 = submit_found(client, digits, tip, mine_on(digits, tip))
    stored = tmp / "v" / "models" / f"{bytes(r1.new_weights_hash).hex()}.safetensors"
    held = stored.read_bytes()
    stored.unlink()
    return stored, held


def test_a_miner_waits_for_a_tip_model_the_verifier_does_not_serve_yet(network, digits):
    """GetModel answers UNKNOWN_MODEL for the tip's W' (a rollback, a member still catching up): the miner
    keeps asking instead of exiting, and mines on once the model is served."""
    dep, vp, _ = network
    stored, held = land_a_block_and_drop_its_model(network, digits)
    miner = Miner(digits, MinerConfig(target=f"127.0.0.1:{vp.port}", miner=b"\x0d" * 20, mode="fast", candidates=64,
                                      max_blocks=1, seed=4))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            miner.run()
        except BaseException as e:  # noqa: BLE001 - the assertion below reports it
            failures.append(e)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while not miner.stats.retries.get("UNKNOWN_MODEL") and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.5)  # and asked again after its 2 s wait
    assert t.is_alive() and not failures, failures
    assert miner.stats.retries.get("UNKNOWN_MODEL", 0) >= 2
    spare = stored.with_suffix(".back")
    spare.write_bytes(held)
    os.replace(spare, stored)  # whole, as the store itself writes
    t.join(120)
    assert not t.is_alive() and not failures, failures
    assert miner.stats.blocks_won == 1 and dep.client().get_tip().height == 2


def test_a_miner_gives_up_on_a_tip_model_that_never_comes(network, digits):
    """A verifier that never serves the tip's W' (it did not attest it, or lost it): after model_wait_s
    the miner ends with the refusal instead of asking for ever."""
    _, vp, _ = network
    land_a_block_and_drop_its_model(network, digits)
    miner = Miner(digits, MinerConfig(target=f"127.0.0.1:{vp.port}", miner=b"\x0d" * 20, mode="fast",
                                      max_blocks=1, model_wait_s=3.0))
    with pytest.raises(Rejected) as e:
        miner.run()
    assert e.value.reason == ServiceReason.UNKNOWN_MODEL and miner.stats.retries["UNKNOWN_MODEL"] >= 2


def test_fast_proof_verifies_with_the_core(digits):
    from pol_core.header import compute_genesis_header, compute_header_hash
    from pol_core.step import compute_correct

    correct = compute_correct(digits.new_model(), digits.test_x, digits.test_y, digits.config.eval_batch)
    genesis = compute_genesis_header(digits.spec_hash, digits.genesis_hash, correct, 5)
    parent = compute_header_hash(genesis)
    reqs = compute_requirements(parent, 5, digits.num_params)
    model = digits.new_model()
    s = FastSearcher(digits, model, reqs, torch.Generator().manual_seed(1), torch.device("cpu"), candidates=64)
    found = None
    for _ in range(200):
        found = s.round()
        if found:
            break
    assert found is not None
    proof = Proof(parent, 1, found.indices, compute_weights_hash(found.state), found.state, b"\x01" * 20)
    v = compute_verdict(digits, genesis, parent, 5, proof)
    assert v.header.correct_after > v.header.correct_before


def test_fast_and_faithful_agree_on_every_sign(digits):
    reqs = compute_requirements(keccak256(b"agree"), 32, digits.num_params)
    model = digits.new_model()
    gen = torch.Generator().manual_seed(5)
    for _ in range(30):  # away from genesis, where gradients are larger
        process_step(model, *digits.batch(torch.randperm(digits.train_size, generator=gen)[:4].tolist()), digits.config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    c = 48
    idx = torch.stack([torch.randperm(digits.train_size, generator=gen)[:4] for _ in range(c)])  # (C, S)
    oriented = BatchedSearch(digits, model, reqs, c).oriented_deltas(*digits.batch(idx.flatten().tolist()))
    # The search only looks: W, BatchNorm buffers included, is exactly as it was.
    assert compute_weights_hash(get_state(model)) == compute_weights_hash(state)
    where = torch.tensor([r // 2 for r in reqs])
    sign = torch.tensor([-1.0 if r % 2 else 1.0 for r in reqs], dtype=torch.float64)
    for i in range(c):
        m = digits.model_from_state(state)
        before = get_flat_params(m)
        process_step(m, *digits.batch(idx[i].tolist()), digits.config)
        plain = (get_flat_params(m) - before).double()[where] * sign
        decided = plain.abs() > 1e-7  # float32 rounding of w + dw can hide smaller changes
        assert torch.equal((plain > 0)[decided], (oriented[i] > 0)[decided]), f"candidate {i}"
        assert torch.allclose(plain.float(), oriented[i], atol=1e-7, rtol=1e-4)


def test_fast_round_trains_with_the_core_step(digits):
    """Between rounds the fast searcher takes exactly pol_core's step on a prefix of the round."""
    reqs = compute_requirements(keccak256(b"never met"), 64, digits.num_params)
    model, ref = digits.new_model(), digits.new_model()
    s = FastSearcher(digits, model, reqs, torch.Generator().manual_seed(3), torch.device("cpu"), candidates=64,
                     train_batch=64)
    assert s.round() is None
    idx = draw_round(torch.Generator().manual_seed(3), digits.train_size, 64, digits.config.batch_size)
    batch = [i for cand in idx for i in cand][:64]
    assert len(set(batch)) == 64  # one permutation per round: no sample twice in a step
    process_step(ref, *digits.batch(batch), digits.config)  # B = 16 S, so lr * 4
    assert compute_weights_hash(get_state(model)) == compute_weights_hash(get_state(ref))
    assert compute_weights_hash(get_state(model)) != digits.genesis_hash
    every = FastSearcher(digits, digits.new_model(), reqs, torch.Generator(), torch.device("cpu"), candidates=16,
                         train_every=2)
    every.round()
    assert compute_weights_hash(get_state(every.model)) == digits.genesis_hash  # round 1: search only
    every.round()
    assert compute_weights_hash(get_state(every.model)) != digits.genesis_hash  # round 2: and a step
    for bad in (8, 32, 6):  # not S times a power of four
        with pytest.raises(InvalidBatchSize):
            FastSearcher(digits, model, reqs, torch.Generator(), torch.device("cpu"), candidates=64, train_batch=bad)


def test_prover_switches_to_a_new_tip_when_another_wins(network, digits):
    dep, vp, _ = network
    slow = Miner(digits, MinerConfig(target=f"127.0.0.1:{vp.port}", miner=b"\x0b" * 20, mode="faithful", seed=9))
    heights = []
    original = slow._mine_on

    def spy(tip):
        heights.append(tip.height)
        return original(tip)

    slow._mine_on = spy
    t = threading.Thread(target=slow.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not heights and time.monotonic() < deadline:
        time.sleep(0.05)
    fast = Miner(digits, MinerConfig(target=f"127.0.0.1:{vp.port}", miner=b"\x0c" * 20, mode="fast", candidates=128,
                                     max_blocks=2, seed=4))
    fast.run()
    deadline = time.monotonic() + 20
    while max(heights) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    slow.stop()
    t.join(10)
    tip = dep.client().get_tip()
    assert tip.height >= 2
    # The slow prover dropped its work on each new tip and restarted there.
    assert heights[0] == 0 and max(heights) >= 2 and sorted(heights) == heights


def test_ctrl_c_leaves_nothing_half_submitted(network, digits):
    dep, vp, tmp = network
    proc = subprocess.Popen([sys.executable, "-m", "pol_cli.main", "mine", "--verifier", f"127.0.0.1:{vp.port}",
                             "--miner", "0x" + "0d" * 20, "--candidates", "64"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = VerifierClient(f"127.0.0.1:{vp.port}")
    deadline = time.monotonic() + 60
    while client.get_tip().height < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "mined for" in out
    time.sleep(1)
    tip = client.get_tip()
    # Every accepted block is attested; no block is left pending and the chain agrees with the service.
    assert tip.pending_attestations == 0 and not tip.degraded
    blocks = dep.client().get_blocks(dep.deploy_block)
    assert blocks[-1].block_hash == bytes(tip.block_hash)
    assert [b.header.height for b in blocks] == list(range(len(blocks)))
    client.close()
