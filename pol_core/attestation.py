"""Quorum attestation: the EIP-712 messages a t-of-n signer set signs, and the bytes PoLChain.sol checks.

- Domain: EIP712Domain(name "PoLChain", version "1", chainId, verifyingContract), so a signature is valid on
  one deployment of one chain only.
- A block: Block(bytes32 blockHash), blockHash = compute_header_hash(header) (it binds parent link, task, k).
- A set change: SignerSetUpdate(address[] signers, uint8 threshold, uint256 nonce).
- Signatures are EIP-2098 compact: r || (yParity << 255 | s), 64 bytes, s in the lower half of the order.
- The contract's `signatures` argument: threshold (1 byte) || bitmap (4 bytes, bit i = member i signed) ||
  for each member in the set's ascending order, its signature (64 bytes) if it signed, else its address.
- The chain keeps the low 160 bits of keccak256(abi.encode(uint256 threshold, address[] signers)).
- Equivocation: one member's signatures over two different headers at one height and one redraw index.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NewType

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_keys import keys as eth_keys
from eth_keys.exceptions import BadSignature

from .header import Header, compute_header_hash
from .keccak import keccak256
from .types import Address, ConsensusError, Hash32, Reason

Signature = NewType("Signature", bytes)  # 64 bytes, EIP-2098 compact
Commitment = NewType("Commitment", bytes)  # 20 bytes: the chain's 160-bit commitment to a signer set

DOMAIN_NAME = "PoLChain"
DOMAIN_VERSION = "1"
MAX_SIGNERS = 32
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_ORDER = SECP256K1_ORDER // 2
DOMAIN_TYPEHASH = keccak256(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
BLOCK_TYPEHASH = keccak256(b"Block(bytes32 blockHash)")
SIGNER_SET_UPDATE_TYPEHASH = keccak256(b"SignerSetUpdate(address[] signers,uint8 threshold,uint256 nonce)")


class InvalidSignature(ConsensusError):
    reason = Reason.INVALID_SIGNATURE


class InvalidSignerSet(ConsensusError):
    reason = Reason.INVALID_SIGNER_SET


class QuorumNotMet(ConsensusError):
    reason = Reason.QUORUM_NOT_MET


@dataclass(frozen=True)
class Domain:
    """Where a signature is valid: one contract on one chain."""

    chain_id: int
    verifying_contract: Address
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION


@dataclass(frozen=True)
class SignerSet:
    """Members strictly ascending (as 160-bit numbers), and t, the number that must sign."""

    signers: tuple[Address, ...]
    threshold: int


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def compute_domain_separator(domain: Domain) -> Hash32:
    # The contract address is a 20-byte account, as EIP-712 encodes it: left-padded to a word.
    if len(domain.verifying_contract) != 20:
        raise InvalidSignature("verifying contract must be 20 bytes")
    return keccak256(DOMAIN_TYPEHASH + keccak256(domain.name.encode()) + keccak256(domain.version.encode())
                     + word(domain.chain_id) + bytes(12) + bytes(domain.verifying_contract))


def compute_typed_digest(domain: Domain, struct_hash: Hash32) -> Hash32:
    return keccak256(b"\x19\x01" + compute_domain_separator(domain) + struct_hash)


def compute_block_digest(domain: Domain, block_hash: Hash32) -> Hash32:
    """What a member signs to attest the block with this hash on this deployment."""
    # A block hash is a keccak256 word.
    if len(block_hash) != 32:
        raise InvalidSignature("block hash must be 32 bytes")
    return compute_typed_digest(domain, keccak256(BLOCK_TYPEHASH + block_hash))


def compute_signer_set_update_digest(domain: Domain, update: SignerSet, nonce: int) -> Hash32:
    """What a member signs to consent to replacing the set by `update`, with the chain's current nonce."""
    # EIP-712 hashes an address[] as keccak256 of the members' 32-byte encodings.
    members = keccak256(b"".join(bytes(12) + bytes(a) for a in update.signers))
    return compute_typed_digest(domain, keccak256(SIGNER_SET_UPDATE_TYPEHASH + members + word(update.threshold)
                                                  + word(nonce)))


def make_signer_set(signers: Sequence[bytes | str], threshold: int) -> SignerSet:
    """A checked set from members in any order (hex strings or 20-byte values)."""
    members = tuple(sorted(Address(bytes.fromhex(a[2:]) if isinstance(a, str) else bytes(a)) for a in signers))
    s = SignerSet(members, threshold)
    process_signer_set_check(s)
    return s


def process_signer_set_check(s: SignerSet) -> None:
    # The contract's bitmap has 32 bits, and an empty set could never sign anything.
    if not 1 <= len(s.signers) <= MAX_SIGNERS:
        raise InvalidSignerSet(f"a signer set has 1 to {MAX_SIGNERS} members, not {len(s.signers)}")
    # t = 0 would accept unsigned blocks; t > n none at all.
    if not 1 <= s.threshold <= len(s.signers):
        raise InvalidSignerSet(f"threshold {s.threshold} is outside [1, {len(s.signers)}]")
    # Every member is an account.
    if any(len(a) != 20 for a in s.signers):
        raise InvalidSignerSet("every member must be a 20-byte address")
    # Strictly ascending from above zero: no member twice, and not the address ecrecover returns on failure.
    previous = bytes(20)
    for i, a in enumerate(s.signers):
        if a <= previous:
            raise InvalidSignerSet(f"members must be strictly ascending and non-zero (position {i})")
        previous = a


def compute_signer_set_commitment(s: SignerSet) -> Commitment:
    """The low 160 bits of keccak256(abi.encode(uint256 threshold, address[] signers))."""
    encoded = abi_encode(["uint256", "address[]"], [s.threshold, ["0x" + bytes(a).hex() for a in s.signers]])
    return Commitment(keccak256(encoded)[12:])


def compute_compact_signature(v: int, r: int, s: int) -> Signature:
    """EIP-2098: r || (yParity << 255 | s). Refuses v outside {27, 28} and the malleable high-s twin."""
    # Only the two recovery ids exist for an Ethereum signature.
    if v not in (27, 28):
        raise InvalidSignature(f"v must be 27 or 28, not {v}")
    # The high-s twin verifies too; the contract accepts only the low one.
    if not (0 < r < SECP256K1_ORDER and 0 < s <= HALF_ORDER):
        raise InvalidSignature("r must be in (0, n) and s in (0, n/2]")
    return Signature(word(r) + word(s | ((v - 27) << 255)))


def decode_compact_signature(signature: bytes) -> tuple[int, int, int]:
    """(v, r, s) of a compact signature; refuses the malleable twin."""
    # The contract reads exactly two words.
    if len(signature) != 64:
        raise InvalidSignature(f"a compact signature is 64 bytes, not {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    vs = int.from_bytes(signature[32:], "big")
    s = vs & ((1 << 255) - 1)
    # The contract refuses the high-s twin (MalleableSignature).
    if s > HALF_ORDER:
        raise InvalidSignature("s is in the upper half of the curve order")
    return 27 + (vs >> 255), r, s


def compute_signature(private_key: str | bytes, digest: Hash32) -> Signature:
    """Sign a digest (RFC 6979, low s) and compact the signature."""
    signed = Account.unsafe_sign_hash(digest, private_key)
    return compute_compact_signature(signed.v, signed.r, signed.s)


def recover_signer(digest: Hash32, signature: bytes) -> Address:
    v, r, s = decode_compact_signature(signature)
    try:
        public = eth_keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except BadSignature as e:
        raise InvalidSignature(f"signature does not recover: {e}") from e
    return Address(public.to_canonical_address())


def pack_quorum_signatures(threshold: int, bitmap: int, entries: Sequence[bytes]) -> bytes:
    """The contract's `signatures` argument from its parts, unchecked (tests build malformed ones with it):
    `entries` holds, member by member, a 64-byte signature where the bitmap's bit is set, else an address."""
    return bytes([threshold]) + bitmap.to_bytes(4, "big") + b"".join(entries)


def compute_quorum_signatures(s: SignerSet, signatures: Mapping[bytes, bytes]) -> bytes:
    """The contract's `signatures` argument: members' signatures in the set's order, the others listed.

    `signatures` maps a member's address to its compact signature; every one must be a member's, and
    there must be at least t."""
    process_signer_set_check(s)
    by_member = {bytes(a): sig for a, sig in signatures.items()}
    # An outsider's signature would fail on chain; say so here, naming it.
    strangers = [a for a in by_member if a not in s.signers]
    if strangers:
        raise QuorumNotMet(f"not members of the signer set: {', '.join('0x' + a.hex() for a in strangers)}")
    # Fewer than t would fail on chain with TooFewSignatures.
    if len(by_member) < s.threshold:
        raise QuorumNotMet(f"{len(by_member)} signatures, the threshold is {s.threshold}")
    bitmap = sum(1 << i for i, a in enumerate(s.signers) if a in by_member)
    return pack_quorum_signatures(s.threshold, bitmap, [by_member.get(a, a) for a in s.signers])


def is_equivocation(a: Header, b: Header) -> bool:
    """Two headers a member may not both sign: one height, one redraw index, different blocks."""
    return a.height == b.height and a.redraw == b.redraw and compute_header_hash(a) != compute_header_hash(b)
