"""keccak256, the one hash function of the protocol (the EVM's, not NIST SHA3-256)."""
from __future__ import annotations

from Crypto.Hash import keccak as _keccak

from .types import Hash32


def keccak256(data: bytes) -> Hash32:
    return Hash32(_keccak.new(data=data, digest_bits=256).digest())


def new_keccak256() -> _keccak.Keccak_Hash:
    """An incremental hasher, for large weight blobs hashed without one big copy."""
    return _keccak.new(digest_bits=256)
