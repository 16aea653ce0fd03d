import pytest
from eth_abi import encode

from pol_core.header import (
    HEADER_ABI_TYPE,
    Header,
    compute_genesis_header,
    compute_header_encoding,
    compute_header_hash,
    decode_header,
)
from pol_core.keccak import keccak256
from pol_core.types import InvalidHeader
from pol_core.vectors import build_header


def test_hash_is_keccak_of_abi_encode():
    h = build_header(1)
    enc = compute_header_encoding(h)
    assert enc == encode([HEADER_ABI_TYPE], [h.as_abi_tuple()])
    assert enc[:32] == (32).to_bytes(32, "big")  # offset word of the dynamic tuple
    assert compute_header_hash(h) == keccak256(enc)


def test_decode_roundtrip():
    for i in range(4):
        h = build_header(i)
        assert decode_header(compute_header_encoding(h)) == h


@pytest.mark.parametrize("field", ["parent", "height", "indices", "correct_before", "correct_after", "difficulty", "miner", "new_weights_hash"])
def test_every_field_is_bound_by_the_hash(field):
    h = build_header(1)
    changed = {
        "parent": keccak256(b"x"),
        "height": h.height + 1,
        "indices": h.indices[:-1] + (h.indices[-1] + 1,),
        "correct_before": h.correct_before + 1,
        "correct_after": h.correct_after + 1,
        "difficulty": h.difficulty + 1,
        "miner": b"\x22" * 20,
        "new_weights_hash": keccak256(b"y"),
    }[field]
    other = Header(**{**h.__dict__, field: changed})
    assert compute_header_hash(other) != compute_header_hash(h)


def test_out_of_range_fields_are_refused():
    h = build_header(0)
    with pytest.raises(InvalidHeader):
        compute_header_encoding(Header(**{**h.__dict__, "difficulty": 256}))
    with pytest.raises(InvalidHeader):
        compute_header_encoding(Header(**{**h.__dict__, "parent": b"\x00" * 31}))
    with pytest.raises(InvalidHeader):
        compute_header_encoding(Header(**{**h.__dict__, "indices": (2**32,)}))


def test_genesis_header_shape():
    g = compute_genesis_header(keccak256(b"t"), keccak256(b"w"), 10, 4)
    assert g.height == 0 and g.indices == () and g.weights_hash == g.new_weights_hash
    assert g.parent == b"\x00" * 32 and g.miner == b"\x00" * 20
