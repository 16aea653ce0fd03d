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
from pol_core.vectors import HEADER_CASES, build_header


def test_hash_is_keccak_of_abi_encode():
    h = build_header(1)
    enc = compute_header_encoding(h)
    assert enc == encode([HEADER_ABI_TYPE], [h.as_abi_tuple()])
    assert enc[:32] == (32).to_bytes(32, "big")  # offset word of the dynamic tuple
    assert compute_header_hash(h) == keccak256(enc)


def test_decode_roundtrip():
    for i in range(HEADER_CASES):
        h = build_header(i)
        assert decode_header(compute_header_encoding(h)) == h


FIELDS = ["parent", "height", "task_spec_hash", "weights_hash", "new_weights_hash", "indices", "correct_before",
          "correct_after", "difficulty", "miner", "segment_root", "redraw"]


def test_the_test_covers_every_field():
    assert sorted(FIELDS) == sorted(Header.__dataclass_fields__)


@pytest.mark.parametrize("field", FIELDS)
def test_every_field_is_bound_by_the_hash(field):
    h = build_header(1)
    changed = {
        "parent": keccak256(b"x"),
        "height": h.height + 1,
        "task_spec_hash": keccak256(b"t"),
        "weights_hash": keccak256(b"w"),
        "new_weights_hash": keccak256(b"y"),
        "indices": h.indices[:-1] + (h.indices[-1] + 1,),
        "correct_before": h.correct_before + 1,
        "correct_after": h.correct_after + 1,
        "difficulty": h.difficulty + 1,
        "miner": b"\x22" * 20,
        "segment_root": keccak256(b"s"),
        "redraw": h.redraw + 1,
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
    with pytest.raises(InvalidHeader):
        compute_header_encoding(Header(**{**h.__dict__, "redraw": 2**32}))
    with pytest.raises(InvalidHeader):
        compute_header_encoding(Header(**{**h.__dict__, "segment_root": b"\x01" * 31}))


def test_genesis_header_shape():
    g = compute_genesis_header(keccak256(b"t"), keccak256(b"w"), 10, 4)
    assert g.height == 0 and g.indices == () and g.weights_hash == g.new_weights_hash
    assert g.parent == b"\x00" * 32 and g.miner == b"\x00" * 20
    assert g.segment_root == b"\x00" * 32 and g.redraw == 0


def test_paper_and_chain_bound_headers_use_one_layout():
    paper, chain_bound = build_header(0), build_header(1)
    assert paper.segment_root == b"\x00" * 32 and chain_bound.segment_root != b"\x00" * 32
    for h in (paper, chain_bound):
        enc = compute_header_encoding(h)
        assert len(enc) == 32 * (14 + len(h.indices))
        assert enc == encode([HEADER_ABI_TYPE], [h.as_abi_tuple()])
