"""Golden vectors: written by the core, checked by pytest and by the contract's forge tests.

    python -m pol_core.vectors --write tests/vectors    # regenerate
    python -m pol_core.vectors --check tests/vectors    # exit 1 if the committed files differ
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from eth_account import Account
from torch import nn

from .attestation import (
    SECP256K1_ORDER,
    Domain,
    compute_block_digest,
    compute_domain_separator,
    compute_quorum_signatures,
    compute_signature,
    compute_signer_set_commitment,
    compute_signer_set_update_digest,
    make_signer_set,
)
from .difficulty import DifficultyParams, compute_next_difficulty
from .header import Header, compute_header_encoding, compute_header_hash
from .keccak import keccak256
from .link import compute_link, compute_seed
from .requirements import compute_requirements
from .rulesets import RuleSet
from .segment import compute_segment_encoding, compute_segment_root
from .tasks.published import PUBLISHED
from .types import Address, CorrectCount, Difficulty, Hash32, Height, RedrawIndex, SampleIndex, Timestamp
from .weights import compute_weights_hash

DIGITS_NUM_PARAMS = PUBLISHED["digits-cnn"].num_params  # |W| of digits-cnn/v2
RESNET18_NUM_PARAMS = PUBLISHED["cifar10-resnet18"].num_params
REQUIREMENT_CASES = [(1, 2), (4, DIGITS_NUM_PARAMS), (8, DIGITS_NUM_PARAMS), (16, RESNET18_NUM_PARAMS), (32, 100),
                     (50, 100), (64, RESNET18_NUM_PARAMS)]


def seed_for(i: int) -> Hash32:
    return keccak256(b"pol-vector-seed" + i.to_bytes(4, "big"))


def build_requirement_vectors() -> list[dict[str, Any]]:
    out = []
    for i, (k, n) in enumerate(REQUIREMENT_CASES):
        seed = seed_for(i)
        out.append({"seed": "0x" + seed.hex(), "k": k, "numParams": n, "requirements": compute_requirements(seed, Difficulty(k), n)})
    return out


HEADER_CASES = 6


def build_header(i: int) -> Header:
    """Paper-style headers (zero segment root, j = 0) at even i, chain-bound ones at odd i."""
    chain_bound = i % 2 == 1
    return Header(
        parent=seed_for(100 + i),
        height=Height([1, 2, 77, 2**40, 5, 2**64 - 1][i % 6]),
        task_spec_hash=seed_for(200 + i),
        weights_hash=seed_for(300 + i),
        new_weights_hash=seed_for(400 + i),
        indices=tuple(SampleIndex(v) for v in
                      [[0, 1, 2, 3], [7, 99, 1000, 1436], [4294967295, 5, 6, 8], [3], [], [0, 1, 2, 4294967295]][i % 6]),
        correct_before=CorrectCount([0, 350, 9999, 12, 7, 0][i % 6]),
        correct_after=CorrectCount([1, 351, 10000, 4294967295, 8, 4294967295][i % 6]),
        difficulty=Difficulty([1, 4, 16, 255, 0, 255][i % 6]),
        miner=Address(seed_for(500 + i)[:20]),
        segment_root=seed_for(600 + i) if chain_bound else Hash32(bytes(32)),
        redraw=RedrawIndex([0, 0, 0, 3, 0, 4294967295][i % 6]),
    )


def build_header_vectors() -> list[dict[str, Any]]:
    out = []
    for i in range(HEADER_CASES):
        h = build_header(i)
        case = h.to_json()
        case["encoding"] = "0x" + compute_header_encoding(h).hex()
        case["hash"] = "0x" + compute_header_hash(h).hex()
        out.append(case)
    return out


SEGMENT_CASES: list[list[list[int]]] = [
    [],  # the empty segment: root keccak256(b""), never zero
    [[0, 1, 2, 3]],
    [[3, 77, 1000, 1436], list(range(0, 32, 2))],
    [[0, 1, 2, 3], list(range(16)), list(range(100, 164)), [4294967292, 4294967293, 4294967294, 4294967295]],
]


def build_segment_vectors() -> list[dict[str, Any]]:
    return [{"steps": seg, "encoding": "0x" + compute_segment_encoding(seg).hex(),
             "root": "0x" + compute_segment_root(seg).hex()} for seg in SEGMENT_CASES]


def build_link_vectors() -> list[dict[str, Any]]:
    """link = keccak256(blockHash || randao) (chain-bound) or blockHash (paper); seed(link, j)."""
    out = []
    for i, randao in enumerate([bytes(32), seed_for(700), (2**256 - 1).to_bytes(32, "big"), seed_for(701)]):
        block_hash = seed_for(800 + i)
        link = compute_link(RuleSet.CHAIN_BOUND, block_hash, Hash32(randao))
        assert compute_link(RuleSet.PAPER, block_hash, Hash32(randao)) == block_hash
        js = [0, 1, 2, 4294967295]
        out.append({"blockHash": "0x" + block_hash.hex(), "randao": "0x" + randao.hex(), "link": "0x" + link.hex(),
                    "redraws": js, "seeds": ["0x" + compute_seed(link, RedrawIndex(j)).hex() for j in js]})
    return out


# (k0, kMin, kMax, T, tau, t0, tipHeight, tipTime): edges of the rounding, the clamps and large drifts.
DIFFICULTY_CASES = [
    (8, 1, 32, 10, 40, 1_000_000, 0, 1_000_000),  # genesis: on schedule
    (8, 1, 32, 10, 40, 1_000_000, 1, 1_000_010),  # one block, on schedule
    (8, 1, 32, 10, 40, 1_000_000, 4, 1_000_020),  # 20 s ahead = tau/2: rounds up to +1
    (8, 1, 32, 10, 40, 1_000_000, 4, 1_000_021),  # 19 s ahead: stays
    (8, 1, 32, 10, 40, 1_000_000, 4, 1_000_060),  # 20 s behind = -tau/2: rounds up to 0
    (8, 1, 32, 10, 40, 1_000_000, 4, 1_000_061),  # 21 s behind: -1
    (8, 1, 64, 10, 40, 1_000_000, 100, 1_000_000),  # 1000 s ahead: +25
    (8, 1, 32, 10, 40, 1_000_000, 1000, 1_000_000),  # far ahead: clamped to kMax
    (8, 1, 32, 10, 40, 1_000_000, 3, 1_500_000),  # far behind: clamped to kMin
    (4, 2, 16, 5, 7, 1_700_000_000, 12, 1_700_000_033),  # odd tau
    (4, 2, 16, 5, 7, 1_700_000_000, 12, 1_700_000_091),
    (255, 1, 255, 1, 1, 0, 2**32 - 1, 2**32 - 1),  # extremes of the uint32 fields
    (1, 1, 255, 2**32 - 1, 2**32 - 1, 0, 2**32 - 1, 0),
]


def build_difficulty_vectors() -> list[dict[str, Any]]:
    out = []
    for k0, lo, hi, t, tau, t0, h, tt in DIFFICULTY_CASES:
        p = DifficultyParams(k0, lo, hi, t, tau, Timestamp(t0))
        out.append({"initial": k0, "minimum": lo, "maximum": hi, "targetBlockTime": t, "halfLife": tau,
                    "genesisTime": t0, "tipHeight": h, "tipTime": tt,
                    "difficulty": compute_next_difficulty(p, Height(h), Timestamp(tt))})
    return out


QUORUM_KEYS = 5
# (chain id, contract): anvil's first deployment, the same contract on another chain, another contract.
QUORUM_DOMAINS = [(31337, "5fbdb2315678afecb367f032d93f642f64180aa3"), (1, "5fbdb2315678afecb367f032d93f642f64180aa3"),
                  (31337, "e7f1725e7734ce288f8367e1bb143e90bb3f0512")]


def quorum_key(i: int) -> bytes:
    key = keccak256(b"pol-quorum-vector-key" + i.to_bytes(4, "big"))
    # A keccak word is a valid secp256k1 key unless it is 0 or >= n (odds about 2^-128); never silently.
    if not 0 < int.from_bytes(key, "big") < SECP256K1_ORDER:
        raise ValueError(f"vector key {i} is not a secp256k1 private key")
    return key


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def build_quorum_vectors() -> dict[str, Any]:
    """EIP-712 domains and digests, compact signatures from fixed keys, set commitments, packed quorums."""
    keys = [quorum_key(i) for i in range(QUORUM_KEYS)]
    addresses = [Address(bytes.fromhex(Account.from_key(k).address[2:])) for k in keys]
    domains = [Domain(c, Address(bytes.fromhex(a))) for c, a in QUORUM_DOMAINS]
    blocks = []
    for i in range(4):
        d = domains[i % len(domains)]
        block_hash = seed_for(900 + i)
        digest = compute_block_digest(d, block_hash)
        blocks.append({"domain": i % len(domains), "blockHash": _hex(block_hash), "digest": _hex(digest),
                       "signatures": [_hex(compute_signature(k, digest)) for k in keys]})
    sets = [make_signer_set(addresses[:3], 2), make_signer_set(addresses, 3), make_signer_set(addresses[1:2], 1),
            make_signer_set(addresses, 5)]
    updates = []
    for i, (s, nonce) in enumerate(zip(sets, [0, 1, 7, 2**64 - 1])):
        d = domains[i % len(domains)]
        digest = compute_signer_set_update_digest(d, s, nonce)
        updates.append({"domain": i % len(domains), "signers": [_hex(a) for a in s.signers], "threshold": s.threshold,
                        "nonce": nonce, "digest": _hex(digest), "signatures": [_hex(compute_signature(k, digest)) for k in keys]})
    commitments = [{"signers": [_hex(a) for a in s.signers], "threshold": s.threshold,
                    "commitment": _hex(compute_signer_set_commitment(s))} for s in sets]
    # Packed quorums for block 0: which members sign, by position in the set.
    packed = []
    block0 = compute_block_digest(domains[0], seed_for(900))
    key_of: dict[bytes, bytes] = dict(zip(addresses, keys))
    for s, positions in [(sets[0], [0, 1]), (sets[0], [0, 2]), (sets[1], [1, 3, 4]), (sets[1], [0, 1, 2, 3, 4]),
                         (sets[2], [0])]:
        sigs: dict[bytes, bytes] = {s.signers[p]: compute_signature(key_of[s.signers[p]], block0) for p in positions}
        packed.append({"signers": [_hex(a) for a in s.signers], "threshold": s.threshold, "signedBy": positions,
                       "packed": _hex(compute_quorum_signatures(s, sigs))})
    return {
        "keys": [_hex(k) for k in keys], "addresses": [_hex(a) for a in addresses],
        "domainCount": len(domains),
        "domains": [{"chainId": d.chain_id, "verifyingContract": _hex(d.verifying_contract),
                     "separator": _hex(compute_domain_separator(d))} for d in domains],
        "blockCount": len(blocks), "blocks": blocks,
        "updateCount": len(updates), "updates": updates,
        "commitmentCount": len(commitments), "commitments": commitments,
        "packedCount": len(packed), "packed": packed,
    }


def build_weights_vectors() -> list[dict[str, Any]]:
    """Tiny models with fixed values, so the hash depends only on the serialization rule."""
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.25, 3.0], [0.0, -0.0, 1e-8]]))
        lin.bias.copy_(torch.tensor([1.0, -2.0]))
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():
        bn.get_buffer("running_mean").copy_(torch.tensor([0.25, -0.75]))
        bn.get_buffer("num_batches_tracked").fill_(3)
    out = []
    for name, model in (("linear-3-2", lin), ("batchnorm-2", bn), ("sequential", nn.Sequential(lin, bn))):
        state = model.state_dict()
        out.append({
            "name": name,
            "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape), "values": v.reshape(-1).tolist()} for k, v in state.items()},
            "weightsHash": "0x" + compute_weights_hash(state).hex(),
        })
    return out


def build_all() -> dict[str, Any]:
    return {
        "requirements.json": {"count": len(REQUIREMENT_CASES), "cases": build_requirement_vectors()},
        "headers.json": {"count": HEADER_CASES, "cases": build_header_vectors()},
        "segments.json": {"count": len(SEGMENT_CASES), "cases": build_segment_vectors()},
        "links.json": {"count": 4, "cases": build_link_vectors()},
        "difficulty.json": {"count": len(DIFFICULTY_CASES), "cases": build_difficulty_vectors()},
        "weights.json": {"count": 3, "cases": build_weights_vectors()},
        "quorum.json": build_quorum_vectors(),
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="DIR")
    mode.add_argument("--check", metavar="DIR")
    args = ap.parse_args(argv)
    from .portable import pin_cpu_dispatch

    pin_cpu_dispatch()
    files = build_all()
    if args.write:
        Path(args.write).mkdir(parents=True, exist_ok=True)
        for name, doc in files.items():
            (Path(args.write) / name).write_text(render(doc))
        return 0
    stale = [n for n, doc in files.items() if (Path(args.check) / n).read_text() != render(doc)]
    for n in stale:
        print(f"golden vector {n} differs from what the core computes", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
