"""The contract on a real anvil, through the Python bridge."""
import random
from dataclasses import replace

import pytest

from pol_chain import AccuracyNotImproved, ChainClient, NotAttester, SabotageGuard, StaleParent, WrongDifficulty, WrongHeight
from pol_chain.client import ChainUnavailable, ContractReverted
from pol_chain.deploy import load_abi
from pol_core.header import Header, compute_genesis_header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.requirements import compute_requirements

from pol_chain.anvil import ANVIL_DEV_KEYS

OTHER_KEY = ANVIL_DEV_KEYS[1]

MINER = b"\x11" * 20


def next_header(chain: ChainClient, deployed, i: int = 0, gain: int = 1, before: int | None = None) -> Header:
    tip = chain.get_tip()
    correct = chain.get_tip_correct() if before is None else before
    return Header(tip.hash, tip.height + 1, deployed.genesis.task_spec_hash, tip.model_hash,
                  keccak256(b"w" + i.to_bytes(4, "big") + tip.hash), (1, 2, 3, 4), correct, correct + gain,
                  tip.difficulty, MINER)


def test_genesis_matches_the_core(chain, deployed, digits):
    g = deployed.genesis
    expected = compute_genesis_header(digits.spec_hash, digits.genesis_hash, g.correct, g.difficulty)
    assert chain.get_genesis_hash() == compute_header_hash(expected)
    tip = chain.get_tip()
    assert tip.height == 0 and tip.hash == compute_header_hash(expected)
    assert chain.get_latest_model_hash() == digits.genesis_hash


def test_extend_and_rebuild_from_events(chain, deployed):
    submitted = []
    for i in range(5):
        h = next_header(chain, deployed, i)
        r = chain.submit_block(h)
        assert r.block_hash == compute_header_hash(h) and r.gas_used > 21_000
        submitted.append(h)
    tip = chain.get_tip()
    assert tip.height == 5 and tip.hash == compute_header_hash(submitted[-1])
    assert chain.get_latest_model_hash() == submitted[-1].new_weights_hash
    blocks = chain.get_blocks(deployed.deploy_block)
    assert [b.header for b in blocks[1:]] == submitted
    assert all(b.block_hash == compute_header_hash(b.header) for b in blocks)
    assert all(blocks[i + 1].header.parent == blocks[i].block_hash for i in range(len(blocks) - 1))


def test_gas_per_block_is_at_most_50k(chain, deployed):
    gas = [chain.submit_block(next_header(chain, deployed, i)).gas_used for i in range(3)]
    assert max(gas) <= 50_000, gas


def test_revert_paths_are_typed(chain, deployed):
    good = next_header(chain, deployed)
    with pytest.raises(StaleParent):
        chain.submit_block(replace(good, parent=keccak256(b"x")))
    with pytest.raises(WrongHeight):
        chain.submit_block(replace(good, height=good.height + 1))
    with pytest.raises(WrongDifficulty):
        chain.submit_block(replace(good, difficulty=good.difficulty + 1))
    with pytest.raises(AccuracyNotImproved):
        chain.submit_block(replace(good, correct_after=good.correct_before))
    with pytest.raises(SabotageGuard):
        low = good.correct_before - deployed.genesis.sabotage_tolerance - 1
        chain.submit_block(replace(good, correct_before=low, correct_after=low + 1))
    with pytest.raises(ContractReverted) as e:
        chain.submit_block(replace(good, task_spec_hash=keccak256(b"other task")))
    assert e.value.name == "WrongTask"
    with pytest.raises(ContractReverted) as e:
        chain.submit_block(replace(good, indices=(1, 2, 3)))
    assert e.value.name == "WrongBatchSize"
    stranger = ChainClient(deployed.rpc_url, deployed.address, load_abi(), OTHER_KEY)
    with pytest.raises(NotAttester):
        stranger.submit_block(good)
    chain.submit_block(good)
    with pytest.raises(StaleParent):
        chain.submit_block(good)  # the same block twice
    assert chain.get_tip().height == 1


def mine_epoch(chain, deployed, seconds_per_block):
    for i in range(4):
        ts = chain.get_timestamp() + seconds_per_block
        chain.rpc("evm_setNextBlockTimestamp", [ts])
        chain.submit_block(next_header(chain, deployed, i))


def test_retarget_up_when_blocks_come_fast(chain, deployed):
    assert chain.get_difficulty() == 4
    mine_epoch(chain, deployed, 1)  # 4 s against 40 s expected
    assert chain.get_difficulty() == 6  # at most maxRetargetStep = 2


def test_retarget_down_when_blocks_come_slow(chain, deployed):
    mine_epoch(chain, deployed, 25)  # 100 s against 40 s: one halving
    assert chain.get_difficulty() == 3


def test_python_and_contract_requirements_agree(chain, deployed, digits):
    rng = random.Random(1234)
    sizes = [digits.num_params, 11_173_962, 10, 2 * 255]
    for i in range(200):
        seed = rng.randbytes(32)
        n = sizes[i % len(sizes)]
        k = rng.randint(1, min(64, n // 2))
        assert chain.compute_requirements(seed, k, n) == compute_requirements(seed, k, n)
    tip = chain.get_tip()
    assert chain.get_next_requirements() == compute_requirements(tip.hash, tip.difficulty, digits.num_params)
    assert chain.get_requirements(tip.hash) == chain.get_next_requirements()


def test_unreachable_node_is_a_typed_error(deployed):
    from pol_chain.anvil import find_free_port

    dead = ChainClient(f"http://127.0.0.1:{find_free_port()}", deployed.address, load_abi(), None, timeout=2)
    with pytest.raises(ChainUnavailable):
        dead.get_tip()


def test_owner_rotates_the_attester(chain, deployed):
    new = ChainClient(deployed.rpc_url, deployed.address, load_abi(), OTHER_KEY)
    chain.set_attester(new.account.address)
    with pytest.raises(NotAttester):
        chain.submit_block(next_header(chain, deployed))
    new.submit_block(next_header(chain, deployed))
    assert chain.get_tip().height == 1
    with pytest.raises(ContractReverted) as e:
        new.set_attester(new.account.address)  # only the owner may rotate
    assert e.value.name == "NotOwner"


def test_cli_deploy_status_and_blocks_against_an_rpc_url(anvil, tmp_path):
    """`pol chain deploy` takes the key from an environment variable, never from the command line."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "MY_DEPLOY_KEY": ANVIL_DEV_KEYS[2]}
    dep = tmp_path / "d.json"
    run = lambda *a: subprocess.run([sys.executable, "-m", "pol_cli.main", "chain", *a], capture_output=True,  # noqa: E731
                                    text=True, env=env, timeout=120)
    r = run("deploy", "--rpc-url", anvil.url, "--key-env", "MY_DEPLOY_KEY", "--deployment", str(dep), "--difficulty", "3")
    assert r.returncode == 0, r.stderr
    assert ANVIL_DEV_KEYS[2][2:] not in r.stdout + r.stderr
    s = run("status", "--deployment", str(dep))
    assert s.returncode == 0 and "height             0" in s.stdout and "difficulty k       3" in s.stdout
    b = run("blocks", "--deployment", str(dep))
    assert b.returncode == 0 and b.stdout.count("\n") == 2  # the heading and genesis
