"""The contract on a real anvil, through the Python bridge, under both rule sets."""
import random
import time
from dataclasses import replace

import pytest

from pol_chain import (
    AccuracyNotImproved,
    ChainClient,
    IndicesNotAscending,
    NotAttester,
    RedrawNotAllowed,
    RedrawTooEarly,
    SabotageGuard,
    SegmentNotAllowed,
    StaleParent,
    TipRegressed,
    WrongHeight,
)
from pol_chain.anvil import ANVIL_DEV_KEYS
from pol_chain.client import ChainUnavailable, ContractReverted
from pol_chain.deploy import load_abi
from pol_core.difficulty import compute_next_difficulty
from pol_core.header import Header, compute_genesis_header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.link import compute_link, compute_seed
from pol_core.requirements import compute_requirements
from pol_core.rulesets import RuleSet
from pol_core.segment import compute_segment_root

from .helpers import RpcFront

OTHER_KEY = ANVIL_DEV_KEYS[1]
DEV_KEY = ANVIL_DEV_KEYS[0]
MINER = b"\x11" * 20


@pytest.fixture(scope="module")
def deployed_cb(anvil, digits_cb):
    from eth_account import Account

    from pol.genesis import Genesis
    from pol_chain import deploy_chain
    from pol_core.verify import compute_genesis_correct

    me = Account.from_key(DEV_KEY).address
    genesis = Genesis.for_task(digits_cb, compute_genesis_correct(digits_cb), me, me, difficulty=4,
                               target_block_time=10, half_life=40, redraw_after=60, max_difficulty=16)
    return deploy_chain(anvil.url, DEV_KEY, "digits-cnn", genesis)


@pytest.fixture()
def chain_cb(deployed_cb):
    client = deployed_cb.client(DEV_KEY)
    snap = client.rpc("evm_snapshot")
    yield client
    client.rpc("evm_revert", [snap])


def next_header(chain: ChainClient, deployed, i: int = 0, gain: int = 1, before: int | None = None) -> Header:
    tip = chain.get_tip()
    correct = chain.get_tip_correct() if before is None else before
    chain_bound = deployed.genesis.rules is RuleSet.CHAIN_BOUND
    return Header(tip.link, tip.height + 1, deployed.genesis.task_spec_hash, tip.model_hash,
                  keccak256(b"w" + i.to_bytes(4, "big") + tip.link), (1, 2, 3, 4), correct, correct + gain,
                  tip.difficulty, MINER,
                  segment_root=compute_segment_root([[i, i + 1, i + 2, i + 3]]) if chain_bound else b"\x00" * 32)


def test_genesis_matches_the_core(chain, deployed, digits):
    g = deployed.genesis
    expected = compute_genesis_header(digits.spec_hash, digits.genesis_hash, g.correct, g.difficulty)
    assert chain.get_genesis_hash() == compute_header_hash(expected)
    tip = chain.get_tip()
    assert tip.height == 0 and tip.link == compute_header_hash(expected)  # paper: link = block hash
    assert chain.get_latest_model_hash() == digits.genesis_hash
    assert chain.get_rules() is RuleSet.PAPER


def test_chain_bound_genesis_link_mixes_prevrandao(chain_cb, deployed_cb, digits_cb):
    g = deployed_cb.genesis
    expected = compute_header_hash(compute_genesis_header(digits_cb.spec_hash, digits_cb.genesis_hash, g.correct,
                                                          g.difficulty))
    (genesis,) = chain_cb.get_blocks(deployed_cb.deploy_block)
    assert chain_cb.get_rules() is RuleSet.CHAIN_BOUND
    assert genesis.block_hash == expected == chain_cb.get_genesis_hash()
    assert genesis.randao != b"\x00" * 32
    assert chain_cb.get_tip().link == genesis.link == compute_link(RuleSet.CHAIN_BOUND, expected, genesis.randao)
    assert genesis.link != expected


@pytest.mark.parametrize("rules", ["paper", "chain-bound"])
def test_extend_and_rebuild_from_events(rules, request):
    client = request.getfixturevalue("chain" if rules == "paper" else "chain_cb")
    dep = request.getfixturevalue("deployed" if rules == "paper" else "deployed_cb")
    submitted, links = [], []
    for i in range(5):
        h = next_header(client, dep, i)
        r = client.submit_block(h)
        assert r.block_hash == compute_header_hash(h) and r.gas_used > 21_000
        submitted.append(h)
        links.append(r.link)
    tip = client.get_tip()
    assert tip.height == 5 and tip.link == links[-1]
    assert client.get_latest_model_hash() == submitted[-1].new_weights_hash
    blocks = client.get_blocks(dep.deploy_block)
    assert [b.header for b in blocks[1:]] == submitted
    assert all(b.block_hash == compute_header_hash(b.header) for b in blocks)
    # Every header names its parent's link; the links rebuild from the logs alone.
    assert all(blocks[i + 1].header.parent == blocks[i].link for i in range(len(blocks) - 1))
    assert [b.link for b in blocks[1:]] == links
    if rules == "paper":
        assert all(b.link == b.block_hash and b.randao == b"\x00" * 32 for b in blocks)
    else:
        # anvil draws a fresh prevrandao for every block, so every link is fresh randomness.
        assert len({b.randao for b in blocks}) == len(blocks)
        assert all(b.link == compute_link(RuleSet.CHAIN_BOUND, b.block_hash, b.randao) != b.block_hash for b in blocks)


@pytest.mark.parametrize("rules", ["paper", "chain-bound"])
def test_gas_per_block_is_at_most_50k(rules, request):
    client = request.getfixturevalue("chain" if rules == "paper" else "chain_cb")
    dep = request.getfixturevalue("deployed" if rules == "paper" else "deployed_cb")
    gas = [client.submit_block(next_header(client, dep, i)).gas_used for i in range(3)]
    assert max(gas) <= 50_000, gas


def test_paper_revert_paths_are_typed(chain, deployed):
    good = next_header(chain, deployed)
    with pytest.raises(StaleParent):
        chain.submit_block(replace(good, parent=keccak256(b"x")))  # refused before sending
    with pytest.raises(WrongHeight):
        chain.submit_block(replace(good, height=good.height + 1), check_tip=False)  # refused by the contract
    with pytest.raises(AccuracyNotImproved):
        chain.submit_block(replace(good, correct_after=good.correct_before))
    with pytest.raises(SabotageGuard):
        low = good.correct_before - deployed.genesis.sabotage_tolerance - 1
        chain.submit_block(replace(good, correct_before=low, correct_after=low + 1))
    with pytest.raises(SegmentNotAllowed):
        chain.submit_block(replace(good, segment_root=keccak256(b"segment")))
    with pytest.raises(RedrawNotAllowed):
        chain.submit_block(replace(good, redraw=1))
    with pytest.raises(ContractReverted) as e:
        chain.submit_block(replace(good, indices=(1, 2, 3)))
    assert e.value.name == "WrongBatchSize"
    stranger = ChainClient(deployed.rpc_url, deployed.address, load_abi(), OTHER_KEY)
    with pytest.raises(NotAttester):
        stranger.submit_block(good)
    chain.submit_block(good)
    with pytest.raises(WrongHeight):
        chain.submit_block(good, check_tip=False)  # the same block twice
    assert chain.get_tip().height == 1


def test_chain_bound_revert_paths_are_typed(chain_cb, deployed_cb):
    chain_cb.submit_block(next_header(chain_cb, deployed_cb, 9))  # a fresh tip: no redraw is open yet
    good = next_header(chain_cb, deployed_cb)
    tip_correct = chain_cb.get_tip_correct()
    with pytest.raises(TipRegressed):
        chain_cb.submit_block(replace(good, correct_before=tip_correct - 3, correct_after=tip_correct - 1))
    with pytest.raises(IndicesNotAscending):
        chain_cb.submit_block(replace(good, indices=(1, 3, 2, 4)))
    with pytest.raises(RedrawTooEarly):
        chain_cb.submit_block(replace(good, redraw=1))
    with pytest.raises(WrongHeight):
        chain_cb.submit_block(replace(good, height=5), check_tip=False)
    # Once the tip is redrawAfter seconds old, redraw index 1 opens; it is part of the hashed header.
    # (An empty block moves chain time: anvil's gas estimate ignores evm_setNextBlockTimestamp.)
    chain_cb.rpc("evm_mine", [chain_cb.get_tip().time + 60])
    r = chain_cb.submit_block(replace(good, redraw=1))
    assert r.block_hash == compute_header_hash(replace(good, redraw=1))


def test_tip_context_for_the_chain_bound_verdict(chain_cb, deployed_cb):
    h = next_header(chain_cb, deployed_cb)
    r = chain_cb.submit_block(h)
    ctx = chain_cb.get_tip_context(from_block=deployed_cb.deploy_block)
    tip = chain_cb.get_tip()
    assert ctx.header == h and ctx.link == r.link == tip.link
    assert (ctx.difficulty, ctx.time, ctx.redraw_after) == (tip.difficulty, tip.time, 60)
    assert ctx.chain_time >= ctx.time


def test_chain_time_is_the_next_blocks(chain_cb, deployed_cb):
    """anvil mines on demand: `latest` keeps the last transaction's time, while a transaction sent now lands
    at now. A redraw opens by the chain's time, so the verifier must read the time the next block will carry,
    or a quiet chain would keep every redraw closed (the quorum demo on a busy machine stalled on this)."""
    last = int(chain_cb.w3.eth.get_block("latest")["timestamp"])
    time.sleep(2.1)
    seen = chain_cb.get_timestamp()
    assert seen >= last + 2
    chain_cb.submit_block(next_header(chain_cb, deployed_cb))
    assert int(chain_cb.w3.eth.get_block("latest")["timestamp"]) >= seen


def test_a_redraw_lands_on_a_quiet_chain(chain_cb, deployed_cb):
    """No transaction for redrawAfter seconds: `latest` keeps the tip's time, and a gas estimate run
    there refuses redraw 1 (RedrawTooEarly) though the block that would carry it is past its opening;
    the estimate must run where the transaction will land, or a chain that needs a redraw halts (the
    demo hung on it)."""
    chain_cb.submit_block(next_header(chain_cb, deployed_cb, 9))
    tip = chain_cb.get_tip()
    chain_cb.rpc("evm_increaseTime", [61])  # the clock moves; no block is mined, so `latest` does not
    assert int(chain_cb.w3.eth.get_block("latest")["timestamp"]) == tip.time
    assert chain_cb.get_timestamp() >= tip.time + 60
    h = replace(next_header(chain_cb, deployed_cb), redraw=1)
    assert chain_cb.submit_block(h).block_hash == compute_header_hash(h)


def test_a_node_without_a_pending_block_still_takes_blocks(chain_cb, deployed_cb):
    """The gas estimate runs at `pending`; a node that refuses that tag is asked at `latest` rather
    than every block failing to send (and the chain's clock falls back the same way)."""
    from web3.exceptions import Web3Exception

    node = RpcFront(deployed_cb.rpc_url, refuse_pending=True)
    try:
        client = replace(deployed_cb, rpc_url=node.url).client(DEV_KEY)
        with pytest.raises(Web3Exception):
            client.w3.eth.get_block("pending")  # the front really refuses it
        assert client.get_timestamp() >= client.get_tip().time
        h = next_header(client, deployed_cb, 5)
        assert client.submit_block(h).block_hash == compute_header_hash(h)
    finally:
        node.close()


def test_redraw_requirements_use_the_redraw_seed(chain_cb, digits_cb):
    tip = chain_cb.get_tip()
    for j in (0, 1, 2, 77):
        want = compute_requirements(compute_seed(tip.link, j), tip.difficulty, digits_cb.num_params)
        assert chain_cb.get_redraw_requirements(j) == want
    assert chain_cb.get_next_requirements() == chain_cb.get_redraw_requirements(0)
    assert chain_cb.get_redraw_requirements(1) != chain_cb.get_redraw_requirements(0)


def mine(chain, deployed, blocks, seconds_per_block):
    for i in range(blocks):
        chain.rpc("evm_setNextBlockTimestamp", [chain.get_tip().time + seconds_per_block])
        chain.submit_block(next_header(chain, deployed, i))


def test_difficulty_rises_when_blocks_come_fast(chain, deployed):
    assert chain.get_difficulty() == 4
    mine(chain, deployed, 8, 1)  # 72 s ahead of schedule: rounds to two half-lives
    assert chain.get_difficulty() == 6


def test_difficulty_falls_when_blocks_come_slow(chain_cb, deployed_cb):
    mine(chain_cb, deployed_cb, 2, 50)  # 80 s behind after two blocks
    assert chain_cb.get_difficulty() == 2


def test_difficulty_is_the_python_rule(chain_cb, deployed_cb):
    params = chain_cb.get_difficulty_params()
    for seconds in (1, 3, 10, 17, 31):
        mine(chain_cb, deployed_cb, 1, seconds)
        tip = chain_cb.get_tip()
        assert tip.difficulty == compute_next_difficulty(params, tip.height, tip.time)


def test_python_and_contract_requirements_agree(chain, deployed, digits):
    rng = random.Random(1234)
    sizes = [digits.num_params, 11_173_962, 10, 2 * 255]
    for i in range(200):
        seed = rng.randbytes(32)
        n = sizes[i % len(sizes)]
        k = rng.randint(1, min(64, n // 2))
        assert chain.compute_requirements(seed, k, n) == compute_requirements(seed, k, n)
    tip = chain.get_tip()
    assert chain.get_next_requirements() == compute_requirements(tip.link, tip.difficulty, digits.num_params)
    assert chain.get_requirements(tip.link) == chain.get_next_requirements()


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
    r = run("deploy", "--rpc-url", anvil.url, "--key-env", "MY_DEPLOY_KEY", "--deployment", str(dep), "--difficulty", "3",
            "--rules", "chain-bound")
    assert r.returncode == 0, r.stderr
    assert ANVIL_DEV_KEYS[2][2:] not in r.stdout + r.stderr
    s = run("status", "--deployment", str(dep))
    assert s.returncode == 0 and "height             0" in s.stdout and "difficulty k       3" in s.stdout, s.stdout
    assert "rules              chain-bound" in s.stdout
    b = run("blocks", "--deployment", str(dep))
    assert b.returncode == 0 and b.stdout.count("\n") == 2  # the heading and genesis
