"""The shared wire layer: genesis against the compiled ABI, the weights codec, the status map, the
client's exceptions, and the layering rule (prover -> pol <- verifier_service)."""
from __future__ import annotations

import ast
import contextlib
import typing
from dataclasses import fields, replace
from pathlib import Path

import grpc
import pytest
import torch

from pol.client import Rejected
from pol.genesis import Genesis, GenesisError, to_camel
from pol.reasons import Refused, ServiceReason, parse_reason
from pol.status import STATUS, status_for
from pol.wire import MalformedWeights, decode_state, encode_state, iter_chunks
from pol_chain.deploy import load_abi
from pol_core.rulesets import RuleSet
from pol_core.types import Reason

ROOT = Path(__file__).resolve().parent.parent
SOLIDITY_TO_PYTHON = {"bytes32": bytes, "address": str}


def genesis_example(**over) -> Genesis:
    g = Genesis(task_spec_hash=b"\x01" * 32, weights_hash=b"\x02" * 32, num_params=3842, batch_size=4, correct=53,
                rules=RuleSet.PAPER, sabotage_tolerance=5, difficulty=4, min_difficulty=1, max_difficulty=32,
                target_block_time=5, half_life=50, redraw_after=100, attester="0x" + "aa" * 20, owner="0x" + "bb" * 20)
    return replace(g, **over)


def test_genesis_follows_the_contract_constructor_field_by_field():
    """The ABI tuple's order comes from the dataclass; this pins the dataclass to the compiled struct."""
    ctor = next(item for item in load_abi() if item["type"] == "constructor")
    (arg,) = ctor["inputs"]
    assert arg["internalType"] == "struct PoLChain.Genesis"
    components = arg["components"]
    assert [to_camel(f.name) for f in fields(Genesis)] == [c["name"] for c in components]
    hints = typing.get_type_hints(Genesis)
    for f, c in zip(fields(Genesis), components):
        want = SOLIDITY_TO_PYTHON.get(c["type"], int if c["type"].startswith("uint") else None)
        if c["internalType"] == "enum PoLChain.Rules":
            want = RuleSet  # a uint8 on the wire (its .code), named in JSON
        got = getattr(hints[f.name], "__supertype__", hints[f.name])  # NewType -> its base
        assert got is want, (f.name, c["type"], got)
    values = genesis_example().as_abi_tuple()
    assert [type(v) for v in values] == [SOLIDITY_TO_PYTHON.get(c["type"], int) for c in components]


def test_genesis_json_round_trip_and_refusals():
    g = genesis_example()
    doc = g.to_json()
    assert doc["taskSpecHash"] == "0x" + "01" * 32 and doc["rules"] == "paper" and doc["halfLife"] == 50
    assert Genesis.from_json(doc) == g
    assert Genesis.from_json({**doc, "rules": "chain-bound"}).as_abi_tuple()[5] == RuleSet.CHAIN_BOUND.code == 1
    with pytest.raises(GenesisError, match="missing"):
        Genesis.from_json({k: v for k, v in doc.items() if k != "owner"})
    with pytest.raises(GenesisError, match="unknown"):
        Genesis.from_json({**doc, "retargetInterval": 10})  # a field of the retired contract
    with pytest.raises(GenesisError, match="rules"):
        Genesis.from_json({**doc, "rules": "chainbound"})
    with pytest.raises(GenesisError, match="taskSpecHash"):
        Genesis.from_json({**doc, "taskSpecHash": "0x1234"})
    with pytest.raises(GenesisError, match="numParams"):
        genesis_example(num_params=-1)
    with pytest.raises(GenesisError, match="attester"):
        genesis_example(attester="0x1234")


def test_weights_codec_restores_the_canonical_order(digits):
    state = digits.genesis_state
    order = list(state)
    back = decode_state(encode_state(state), order)
    assert list(back) == order  # safetensors sorts names; "1.bias" < "0.weight" would break the hash
    assert all(torch.equal(back[k], state[k]) for k in order)
    assert sorted(order) != order  # the test would be vacuous if sorting kept the order
    for junk in (b"", b"\x00garbage" * 10, encode_state(state)[:-5]):
        with pytest.raises(MalformedWeights):
            decode_state(junk, order)


def test_chunks_cover_the_blob_exactly():
    blob = bytes(range(256)) * 41
    for size in (1, 100, 4096, len(blob), 1 << 20):
        parts = list(iter_chunks(blob, size))
        assert b"".join(parts) == blob and all(0 < len(p) <= size for p in parts)
    assert list(iter_chunks(b"", 10)) == [b""]


def test_every_reason_has_one_status():
    every = [*Reason, *ServiceReason]
    assert set(STATUS) == set(every)
    assert len({r.value for r in every}) == len(every)  # no wire string means two things
    assert status_for(Reason.STALE) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(ServiceReason.RATE_LIMITED) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert all(parse_reason(r.value) is r for r in every) and parse_reason("NO_SUCH_REASON") is None


def test_errors_pass_through_context_managers():
    """A frozen-dataclass exception turns into FrozenInstanceError when a context manager
    re-raises it (it sets __traceback__); the client's and the node's errors are plain classes."""

    @contextlib.contextmanager
    def passthrough():
        yield

    for err in (Rejected(grpc.StatusCode.FAILED_PRECONDITION, Reason.STALE, "moved on"),
                Refused(ServiceReason.DUPLICATE, "again")):
        with pytest.raises(type(err)) as e:
            with passthrough():
                raise err
        assert e.value.reason == err.reason


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


# Who may import whom (our top-level packages only); pol_cli, tests and bench may import anything.
ALLOWED = {
    "pol_core": {"pol_core"},
    "pol_chain": {"pol_core", "pol_chain", "pol"},
    "pol": {"pol_core", "pol"},
    "prover": {"pol_core", "pol_chain", "pol", "prover"},
    "verifier_service": {"pol_core", "pol_chain", "pol", "verifier_service"},
}


def test_layers_import_only_what_they_may():
    ours = set(ALLOWED) | {"pol_cli"}
    bad = []
    for package, allowed in ALLOWED.items():
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, package
        for path in files:
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue  # generated; imports only pol.v1 itself
            for used in (imports_of(path) & ours) - allowed:
                bad.append(f"{path.relative_to(ROOT)} imports {used}")
    assert not bad, bad
    # The rule the issue names: the two sides meet only in the shared layers.
    assert "verifier_service" not in ALLOWED["prover"] and "prover" not in ALLOWED["verifier_service"]


def test_the_import_walk_sees_a_forbidden_import(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("import os\nfrom verifier_service.node import VerifierNode\ndef f():\n    import prover.miner\n")
    assert {"verifier_service", "prover"} <= imports_of(p)
