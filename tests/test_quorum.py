"""A 2-of-3 quorum deployment on a real anvil, through the Python bridge: blocks relayed by a non-member,
every refusal typed, equivocation evidence, signed and owner set changes."""
from dataclasses import replace

import pytest
from eth_account import Account

from pol_chain import (
    NO_ATTESTER,
    BootstrapOver,
    ChainClient,
    DuplicateSigner,
    InvalidSigner,
    NotOwner,
    QuorumMode,
    QuorumRefused,
    SignersNotAscending,
    SingleAttesterMode,
    TipRegressed,
    TooFewSignatures,
    WrongHeight,
    WrongNonce,
    Deployment,
    deploy_chain,
)
from pol.genesis import Genesis
from pol_chain.anvil import ANVIL_DEV_KEYS
from pol_core.attestation import (
    Domain,
    QuorumNotMet,
    compute_block_digest,
    compute_quorum_signatures,
    compute_signature,
    compute_signer_set_commitment,
    compute_signer_set_update_digest,
    make_signer_set,
    pack_quorum_signatures,
)
from pol_core.header import Header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.segment import compute_segment_root
from pol_core.verify import compute_genesis_correct

OWNER_KEY = ANVIL_DEV_KEYS[0]
RELAYER_KEY = ANVIL_DEV_KEYS[1]  # not a member: any account may relay
MEMBER_KEYS = [keccak256(b"pol-quorum-member" + bytes([i])) for i in range(3)]
OUTSIDER_KEY = keccak256(b"pol-quorum-outsider")


def address_of(key: bytes) -> bytes:
    return bytes.fromhex(Account.from_key(key).address[2:])


KEY_OF = {address_of(k): k for k in MEMBER_KEYS + [OUTSIDER_KEY]}
SET = make_signer_set([address_of(k) for k in MEMBER_KEYS], 2)


@pytest.fixture(scope="module")
def deployed_q(anvil, digits_cb):
    owner = Account.from_key(OWNER_KEY).address
    genesis = Genesis.for_task(digits_cb, compute_genesis_correct(digits_cb), NO_ATTESTER, owner, difficulty=4,
                               target_block_time=10, half_life=40, redraw_after=60, max_difficulty=16)
    return deploy_chain(anvil.url, OWNER_KEY, "digits-cnn", genesis, quorum=SET)


@pytest.fixture()
def relayer(deployed_q):
    client = deployed_q.client(RELAYER_KEY)
    snap = client.rpc("evm_snapshot")
    yield client
    client.rpc("evm_revert", [snap])


def next_header(chain: ChainClient, deployed, i: int = 0) -> Header:
    tip = chain.get_tip()
    correct = chain.get_tip_correct()
    return Header(tip.link, tip.height + 1, deployed.genesis.task_spec_hash, tip.model_hash,
                  keccak256(b"w" + i.to_bytes(4, "big") + tip.link), (1, 2, 3, 4), correct, correct + 1,
                  tip.difficulty, b"\x11" * 20, segment_root=compute_segment_root([[i, i + 1, i + 2, i + 3]]))


def signatures(digest: bytes, members) -> dict[bytes, bytes]:
    return {a: compute_signature(KEY_OF[a], digest) for a in members}


def test_deployment_is_in_quorum_mode(relayer, deployed_q, tmp_path):
    assert relayer.is_quorum()
    info = relayer.get_signer_set()
    assert info.signer_set == SET and info.nonce == 0 and info.bootstrap
    assert deployed_q.quorum == SET
    deployed_q.save(tmp_path / "deployment.json")  # the genesis set survives the deployment file
    assert Deployment.load(tmp_path / "deployment.json") == deployed_q
    assert relayer.get_domain() == Domain(31337, bytes.fromhex(deployed_q.address[2:]))
    commitment = relayer.contract.functions.signerSetCommitment().call()
    assert commitment.to_bytes(20, "big") == compute_signer_set_commitment(SET)
    h = next_header(relayer, deployed_q)
    on_chain = relayer.contract.functions.blockDigest(compute_header_hash(h)).call()
    assert bytes(on_chain) == relayer.get_block_digest(h)


def test_two_of_three_block_lands_relayed_by_a_non_member(relayer, deployed_q):
    assert address_of(RELAYER_KEY) not in SET.signers
    for i, members in enumerate([SET.signers[:2], SET.signers[1:], (SET.signers[0], SET.signers[2]), SET.signers]):
        h = next_header(relayer, deployed_q, i)
        r = relayer.submit_block_signed(h, signatures(relayer.get_block_digest(h), members))
        assert r.block_hash == compute_header_hash(h)
    tip = relayer.get_tip()
    assert tip.height == 4
    blocks = relayer.get_blocks(deployed_q.deploy_block)
    assert [b.block_hash for b in blocks[1:]] == [compute_header_hash(b.header) for b in blocks[1:]]


def test_every_refusal_is_typed(relayer, deployed_q):
    h = next_header(relayer, deployed_q)
    digest = relayer.get_block_digest(h)
    a, b, c = SET.signers
    sig = signatures(digest, SET.signers)
    with pytest.raises(TooFewSignatures) as e:  # one signature
        relayer.submit_block_packed(h, pack_quorum_signatures(2, 0b001, [sig[a], b, c]))
    assert e.value.args_decoded == (1, 2)
    with pytest.raises(DuplicateSigner) as e:  # member a's signature counted twice
        relayer.submit_block_packed(h, pack_quorum_signatures(2, 0b011, [sig[a], sig[a], c]))
    assert e.value.args_decoded == (1, "0x" + a.hex())
    with pytest.raises(SignersNotAscending):  # b's signature before a's
        relayer.submit_block_packed(h, pack_quorum_signatures(2, 0b011, [sig[b], sig[a], c]))
    other_chain = compute_block_digest(replace(relayer.get_domain(), chain_id=1), compute_header_hash(h))
    with pytest.raises(InvalidSigner):  # signed for chain id 1
        relayer.submit_block_signed(h, signatures(other_chain, (a, b)))
    other_contract = compute_block_digest(replace(relayer.get_domain(), verifying_contract=b"\x42" * 20),
                                          compute_header_hash(h))
    with pytest.raises(InvalidSigner):  # signed for another contract
        relayer.submit_block_signed(h, signatures(other_contract, (a, b)))
    outsider = address_of(OUTSIDER_KEY)
    forged = compute_signature(OUTSIDER_KEY, digest)
    with pytest.raises(InvalidSigner) as e:  # an outsider's signature in a member's place
        relayer.submit_block_packed(h, pack_quorum_signatures(2, 0b011, [sig[a], forged, c]))
    assert e.value.args_decoded == (1, "0x" + outsider.hex())
    assert all(issubclass(t, QuorumRefused) for t in (TooFewSignatures, DuplicateSigner, SignersNotAscending,
                                                      InvalidSigner))
    # The block rules still apply to a signed block.
    low = replace(h, correct_before=h.correct_before - 3, correct_after=h.correct_before - 1)
    with pytest.raises(TipRegressed):
        relayer.submit_block_signed(low, signatures(relayer.get_block_digest(low), (a, b)))
    assert relayer.get_tip().height == 0
    relayer.submit_block_signed(h, signatures(digest, (a, c)))
    with pytest.raises(WrongHeight):  # the same signed block again
        relayer.submit_block_signed(h, signatures(digest, (a, c)), check_tip=False)


def test_single_attester_calls_are_refused_in_each_mode(relayer, deployed_q, chain, deployed):
    owner = deployed_q.client(OWNER_KEY)
    with pytest.raises(QuorumMode):
        owner.submit_block(next_header(relayer, deployed_q))
    with pytest.raises(QuorumMode):
        owner.set_attester(Account.from_key(RELAYER_KEY).address)
    assert not chain.is_quorum()
    h = next_header(relayer, deployed_q)
    with pytest.raises(SingleAttesterMode):  # the paper-rules, single-attester deployment
        chain.submit_block_packed(replace(h, parent=chain.get_tip().link, task_spec_hash=chain.get_task_spec_hash(),
                                          difficulty=chain.get_difficulty()), b"\x02\x00\x00\x00\x03")


def test_equivocation_removes_the_signer(relayer, deployed_q):
    h = next_header(relayer, deployed_q)
    conflicting = replace(h, new_weights_hash=keccak256(b"another W'"))
    m = SET.signers[1]
    sa = compute_signature(KEY_OF[m], relayer.get_block_digest(h))
    sb = compute_signature(KEY_OF[m], relayer.get_block_digest(conflicting))
    relayer.report_equivocation(h, sa, conflicting, sb)  # any account may report
    info = relayer.get_signer_set()
    assert m not in info.signer_set.signers and info.signer_set.threshold == 2 and info.nonce == 1
    events = relayer.contract.events.Equivocation().get_logs(from_block=deployed_q.deploy_block)
    assert len(events) == 1 and events[0]["args"]["removed"] and events[0]["args"]["height"] == h.height
    # The remaining two still attest; the removed member's signature no longer counts, on chain (packed
    # against the old set) or already in the client.
    sig = signatures(relayer.get_block_digest(h), SET.signers)
    with pytest.raises(InvalidSigner) as e:
        relayer.submit_block_packed(h, pack_quorum_signatures(2, 0b011, [sig[SET.signers[0]], sig[m], SET.signers[2]]))
    assert e.value.args_decoded == (1, "0x" + m.hex())
    with pytest.raises(QuorumNotMet):
        relayer.submit_block_signed(h, signatures(relayer.get_block_digest(h), (SET.signers[0], m)))
    relayer.submit_block_signed(h, signatures(relayer.get_block_digest(h), (SET.signers[0], SET.signers[2])))
    # At n = t the evidence is logged and the member kept: the set never falls below t.
    m = SET.signers[0]
    nxt = next_header(relayer, deployed_q, 1)
    other = replace(nxt, miner=b"\x22" * 20)
    relayer.report_equivocation(nxt, compute_signature(KEY_OF[m], relayer.get_block_digest(nxt)), other,
                                compute_signature(KEY_OF[m], relayer.get_block_digest(other)))
    assert m in relayer.get_signer_set().signer_set.signers


def test_signed_set_update_and_its_replay(relayer, deployed_q):
    new = make_signer_set([address_of(k) for k in MEMBER_KEYS[:2]] + [address_of(OUTSIDER_KEY)], 3)
    digest = compute_signer_set_update_digest(relayer.get_domain(), new, 0)
    relayer.update_signer_set(new, signatures(digest, SET.signers[:2]))  # packed against the chain's set and nonce
    consent = compute_quorum_signatures(SET, signatures(digest, SET.signers[:2]))
    info = relayer.get_signer_set()
    assert info.signer_set == new and info.nonce == 1
    with pytest.raises(WrongNonce) as e:  # the same signed update again
        relayer.update_signer_set_packed(new, 0, consent)
    assert e.value.args_decoded == (1, 0)
    # One member's consent is not the quorum's.
    again = make_signer_set(SET.signers, 1)
    digest = compute_signer_set_update_digest(relayer.get_domain(), again, 1)
    with pytest.raises(TooFewSignatures):
        relayer.update_signer_set_packed(again, 1, pack_quorum_signatures(
            3, 0b001, [compute_signature(KEY_OF[new.signers[0]], digest), new.signers[1], new.signers[2]]))
    # Three of the new set attest now.
    h = next_header(relayer, deployed_q)
    relayer.submit_block_signed(h, signatures(relayer.get_block_digest(h), new.signers))
    assert relayer.get_tip().height == 1


def test_owner_bootstrap_ends_for_good(relayer, deployed_q):
    owner = deployed_q.client(OWNER_KEY)
    with pytest.raises(NotOwner):
        relayer.set_signer_set(make_signer_set(SET.signers, 1))
    owner.set_signer_set(make_signer_set(SET.signers, 3))
    assert relayer.get_signer_set().signer_set.threshold == 3
    owner.end_bootstrap()
    assert not relayer.get_signer_set().bootstrap
    with pytest.raises(BootstrapOver):
        owner.set_signer_set(make_signer_set(SET.signers, 1))
    h = next_header(relayer, deployed_q)
    sig = signatures(relayer.get_block_digest(h), SET.signers)
    with pytest.raises(TooFewSignatures):  # t is 3 now
        relayer.submit_block_packed(h, pack_quorum_signatures(3, 0b011, [sig[SET.signers[0]], sig[SET.signers[1]],
                                                                         SET.signers[2]]))
    relayer.submit_block_signed(h, sig)
