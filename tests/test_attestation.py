"""Quorum attestation rules (pol_core.attestation): EIP-712 digests, compact signatures, signer sets and the
packed `signatures` argument, against eth_account's own EIP-712 encoder and the golden vectors forge checks."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from pol_core.attestation import (
    HALF_ORDER,
    SECP256K1_ORDER,
    Domain,
    InvalidSignature,
    InvalidSignerSet,
    QuorumNotMet,
    SignerSet,
    compute_block_digest,
    compute_compact_signature,
    compute_domain_separator,
    compute_quorum_signatures,
    compute_signature,
    compute_signer_set_commitment,
    compute_signer_set_update_digest,
    decode_compact_signature,
    is_equivocation,
    make_signer_set,
    pack_quorum_signatures,
    process_signer_set_check,
    recover_signer,
)
from pol_core.header import Header
from pol_core.keccak import keccak256
from pol_core.vectors import build_quorum_vectors

VECTORS = Path(__file__).parent / "vectors" / "quorum.json"
KEYS = [keccak256(b"attestation-test-key" + bytes([i])) for i in range(4)]
ADDRESSES = [bytes.fromhex(Account.from_key(k).address[2:]) for k in KEYS]
KEY_OF = dict(zip(ADDRESSES, KEYS))
DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))


def eip712(domain: Domain, types: dict, primary: str, message: dict) -> bytes:
    """The digest as eth_account's general EIP-712 encoder computes it (an independent implementation)."""
    full = {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"},
                                   {"name": "verifyingContract", "type": "address"}], **types},
        "primaryType": primary,
        "domain": {"name": domain.name, "version": domain.version, "chainId": domain.chain_id,
                   "verifyingContract": "0x" + domain.verifying_contract.hex()},
        "message": message,
    }
    signable = encode_typed_data(full_message=full)
    return keccak256(b"\x19" + signable.version + signable.header + signable.body)


def test_block_digest_is_eip712():
    block_hash = keccak256(b"a block")
    want = eip712(DOMAIN, {"Block": [{"name": "blockHash", "type": "bytes32"}]}, "Block", {"blockHash": block_hash})
    assert compute_block_digest(DOMAIN, block_hash) == want


def test_signer_set_update_digest_is_eip712():
    s = make_signer_set(ADDRESSES[:3], 2)
    types = {"SignerSetUpdate": [{"name": "signers", "type": "address[]"}, {"name": "threshold", "type": "uint8"},
                                 {"name": "nonce", "type": "uint256"}]}
    message = {"signers": ["0x" + a.hex() for a in s.signers], "threshold": 2, "nonce": 7}
    assert compute_signer_set_update_digest(DOMAIN, s, 7) == eip712(DOMAIN, types, "SignerSetUpdate", message)


def test_domain_binds_chain_id_and_contract():
    base = compute_domain_separator(DOMAIN)
    assert compute_domain_separator(replace(DOMAIN, chain_id=1)) != base
    assert compute_domain_separator(replace(DOMAIN, verifying_contract=b"\x01" * 20)) != base
    h = keccak256(b"x")
    assert compute_block_digest(replace(DOMAIN, chain_id=1), h) != compute_block_digest(DOMAIN, h)


def test_signature_round_trip_and_compact_form():
    digest = compute_block_digest(DOMAIN, keccak256(b"b"))
    for key, address in zip(KEYS, ADDRESSES):
        sig = compute_signature(key, digest)
        assert len(sig) == 64 and recover_signer(digest, sig) == address
        v, r, s = decode_compact_signature(sig)
        signed = Account.unsafe_sign_hash(digest, key)
        assert (v, r, s) == (signed.v, signed.r, signed.s)
        assert compute_compact_signature(v, r, s) == sig


@pytest.mark.parametrize("v", [0, 1, 26, 29, 35])
def test_v_outside_27_28_is_refused(v):
    with pytest.raises(InvalidSignature, match="v must be 27 or 28"):
        compute_compact_signature(v, 1, 1)


def test_malleable_s_is_refused():
    digest = compute_block_digest(DOMAIN, keccak256(b"m"))
    v, r, s = decode_compact_signature(compute_signature(KEYS[0], digest))
    with pytest.raises(InvalidSignature):
        compute_compact_signature(55 - v, r, SECP256K1_ORDER - s)  # the twin: n - s, other parity
    high = r.to_bytes(32, "big") + (HALF_ORDER + 1).to_bytes(32, "big")
    with pytest.raises(InvalidSignature, match="upper half"):
        decode_compact_signature(high)
    with pytest.raises(InvalidSignature, match="64 bytes"):
        decode_compact_signature(b"\x01" * 65)


def test_signer_sets_are_checked():
    s = make_signer_set(list(reversed(ADDRESSES)), 3)
    assert list(s.signers) == sorted(ADDRESSES) and s.threshold == 3
    with pytest.raises(InvalidSignerSet, match="threshold"):
        make_signer_set(ADDRESSES, 0)
    with pytest.raises(InvalidSignerSet, match="threshold"):
        make_signer_set(ADDRESSES, 5)
    with pytest.raises(InvalidSignerSet, match="ascending"):
        make_signer_set(ADDRESSES + ADDRESSES[:1], 1)  # a member twice
    with pytest.raises(InvalidSignerSet, match="ascending"):
        make_signer_set([b"\x00" * 20, ADDRESSES[0]], 1)  # the zero address
    with pytest.raises(InvalidSignerSet, match="1 to 32"):
        make_signer_set([i.to_bytes(20, "big") for i in range(1, 34)], 1)
    with pytest.raises(InvalidSignerSet, match="ascending"):
        process_signer_set_check(SignerSet(tuple(reversed(sorted(ADDRESSES))), 1))


def test_packed_signatures_layout():
    s = make_signer_set(ADDRESSES[:3], 2)
    digest = compute_block_digest(DOMAIN, keccak256(b"p"))
    sigs = {a: compute_signature(KEY_OF[a], digest) for a in (s.signers[0], s.signers[2])}
    packed = compute_quorum_signatures(s, sigs)
    # threshold, bitmap 0b101, member 0's signature, member 1's address, member 2's signature
    assert packed == bytes([2]) + (5).to_bytes(4, "big") + sigs[s.signers[0]] + s.signers[1] + sigs[s.signers[2]]
    assert packed == pack_quorum_signatures(2, 5, [sigs[s.signers[0]], s.signers[1], sigs[s.signers[2]]])


def test_packing_refuses_outsiders_and_too_few():
    s = make_signer_set(ADDRESSES[:3], 2)
    digest = compute_block_digest(DOMAIN, keccak256(b"q"))
    with pytest.raises(QuorumNotMet, match="threshold is 2"):
        compute_quorum_signatures(s, {s.signers[0]: compute_signature(KEY_OF[s.signers[0]], digest)})
    outsider = ADDRESSES[3]
    with pytest.raises(QuorumNotMet, match="not members"):
        compute_quorum_signatures(s, {a: compute_signature(KEY_OF[a], digest) for a in (s.signers[0], outsider)})


def test_commitment_depends_on_members_and_threshold():
    a = compute_signer_set_commitment(make_signer_set(ADDRESSES[:3], 2))
    assert len(a) == 20
    assert a != compute_signer_set_commitment(make_signer_set(ADDRESSES[:3], 3))
    assert a != compute_signer_set_commitment(make_signer_set(ADDRESSES[1:4], 2))


def header(w: bytes, height: int = 5, redraw: int = 0) -> Header:
    return Header(keccak256(b"parent"), height, keccak256(b"task"), keccak256(b"w"), keccak256(w), (1, 2, 3, 4), 10, 11,
                  4, b"\x11" * 20, segment_root=keccak256(b"seg"), redraw=redraw)


def test_equivocation_is_one_height_one_redraw_two_blocks():
    assert is_equivocation(header(b"a"), header(b"b"))
    assert not is_equivocation(header(b"a"), header(b"a"))  # the same block twice
    assert not is_equivocation(header(b"a"), header(b"b", height=6))
    assert not is_equivocation(header(b"a"), header(b"b", redraw=1))  # a timed redraw is a new round


def test_golden_vectors_are_the_rules():
    """tests/vectors/quorum.json (which forge also checks) is what this module computes."""
    doc = json.loads(VECTORS.read_text())
    assert doc == json.loads(json.dumps(build_quorum_vectors()))
    keys = [bytes.fromhex(k[2:]) for k in doc["keys"]]
    assert [Account.from_key(k).address.lower() for k in keys] == doc["addresses"]
    for block in doc["blocks"]:
        d = doc["domains"][block["domain"]]
        domain = Domain(d["chainId"], bytes.fromhex(d["verifyingContract"][2:]))
        assert "0x" + compute_domain_separator(domain).hex() == d["separator"]
        digest = compute_block_digest(domain, bytes.fromhex(block["blockHash"][2:]))
        assert "0x" + digest.hex() == block["digest"]
        for addr, sig in zip(doc["addresses"], block["signatures"]):
            assert "0x" + recover_signer(digest, bytes.fromhex(sig[2:])).hex() == addr
