"""Conformance vectors: whole-block cases for digits-cnn under both rule sets, in the manner of
consensus-spec-tests. docs/PROTOCOL.md §19 describes the format for an outside implementation.

    python -m pol_core.conformance --write tests/vectors/conformance   # regenerate (mines; ~1 min)
    python -m pol_core.conformance --check tests/vectors/conformance   # run every case, exit 1 on a mismatch

Each case gives the verdict's inputs (parent header and link, k, R, the proof; W or the parent's W' by
hash from the file's state table) and the expected outcome: the header, block hash, W and W' hashes and
counts of a valid block, or the Reason of an invalid one. A state is the §3 serialization (the bytes the
weights hash covers), zlib-compressed and base64-encoded; `"genesis"` names the task's portable genesis,
which the implementation rebuilds from pol-genesis-init/1 itself.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import zlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .chainbound import SegmentProof, TipContext, compute_chain_bound_verdict
from .header import Header, compute_genesis_header, compute_header_hash
from .keccak import keccak256
from .link import compute_link, compute_seed
from .requirements import compute_requirements, is_requirements_met
from .rulesets import RuleSet
from .segment import Segment
from .step import compute_correct, process_step
from .tasks import load_task
from .tasks.spec import Task
from .types import (
    Address,
    ConsensusError,
    CorrectCount,
    Difficulty,
    Hash32,
    Height,
    RedrawIndex,
    SampleIndex,
    Timestamp,
)
from .verify import Proof, compute_genesis_correct, compute_verdict
from .weights import DTYPE_CODES, compute_entry_prefix, compute_tensor_bytes, compute_weights_hash, get_flat_params, get_state

FORMAT = "pol-conformance/1"
TASK = "digits-cnn"
K = 2  # two bits per block: proofs are found in a few dozen attempts
MINER = Address(bytes.fromhex("00000000000000000000000000000000c0ffee01"))
TIP_TIME = 1_700_000_000
REDRAW_AFTER = 100
GENESIS = "genesis"
State = Mapping[str, torch.Tensor]
DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}


def hx(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def unhex(s: str) -> bytes:
    return bytes.fromhex(s.removeprefix("0x"))


# ---- states: the §3 serialization, compressed ----

def encode_state(state: State) -> str:
    raw = b"".join(compute_entry_prefix(n, t) + compute_tensor_bytes(t) for n, t in state.items())
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode_state(text: str) -> "OrderedDict[str, torch.Tensor]":
    """The inverse of encode_state: u32be name length, name, u8 dtype, u8 ndim, u32be dims, data (LE)."""
    raw, pos, out = zlib.decompress(base64.b64decode(text)), 0, OrderedDict()
    while pos < len(raw):
        n = int.from_bytes(raw[pos : pos + 4], "big")
        name = raw[pos + 4 : pos + 4 + n].decode("utf-8")
        dtype, ndim = DTYPES[raw[pos + 4 + n]], raw[pos + 5 + n]
        pos += 6 + n
        shape = [int.from_bytes(raw[pos + 4 * i : pos + 4 * i + 4], "big") for i in range(ndim)]
        pos += 4 * ndim
        size = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        out[name] = torch.frombuffer(bytearray(raw[pos : pos + size]), dtype=dtype).reshape(shape).clone()
        pos += size
    return out


def header_from_json(d: Mapping[str, Any]) -> Header:
    return Header(parent=Hash32(unhex(d["parent"])), height=Height(d["height"]),
                  task_spec_hash=Hash32(unhex(d["taskSpecHash"])), weights_hash=Hash32(unhex(d["weightsHash"])),
                  new_weights_hash=Hash32(unhex(d["newWeightsHash"])),
                  indices=tuple(SampleIndex(i) for i in d["indices"]),
                  correct_before=CorrectCount(d["correctBefore"]), correct_after=CorrectCount(d["correctAfter"]),
                  difficulty=Difficulty(d["difficulty"]), miner=Address(unhex(d["miner"])),
                  segment_root=Hash32(unhex(d["segmentRoot"])), redraw=RedrawIndex(d["redraw"]))


# ---- running a case: what pytest (and an outside implementation) repeats ----

def get_state_ref(task: Task, states: Mapping[str, Any], ref: str) -> State:
    if ref == GENESIS:
        return task.genesis_state
    return decode_state(states[ref]["data"])


def run_case(task: Task, states: Mapping[str, Any], case: Mapping[str, Any]) -> dict[str, Any]:
    """The reference verdict on one case's inputs, as the `expected` object of the format."""
    parent = header_from_json(case["parent"])
    link = Hash32(unhex(case["parentLink"]))
    p = case["proof"]
    k = Difficulty(case["difficulty"])
    try:
        if task.config.rules == RuleSet.PAPER.value:
            state = get_state_ref(task, states, p["weights"])
            proof = Proof(Hash32(unhex(p["parent"])), Height(p["height"]), tuple(SampleIndex(i) for i in p["indices"]),
                          Hash32(unhex(p["weightsHash"])), state, Address(unhex(p["miner"])))
            v = compute_verdict(task, parent, link, k, proof)
        else:
            t = case["tip"]
            tip = TipContext(parent, link, k, Timestamp(t["time"]), Timestamp(t["chainTime"]), t["redrawAfter"])
            proof_cb = SegmentProof(Hash32(unhex(p["parent"])), Height(p["height"]),
                                    tuple(tuple(SampleIndex(i) for i in s) for s in p["segment"]),
                                    tuple(SampleIndex(i) for i in p["indices"]), RedrawIndex(p["redraw"]),
                                    Address(unhex(p["miner"])))
            v = compute_chain_bound_verdict(task, tip, get_state_ref(task, states, case["parentState"]), proof_cb)
    except ConsensusError as e:
        return {"valid": False, "reason": e.reason.value}
    h = v.header
    return {"valid": True, "weightsHash": hx(h.weights_hash), "newWeightsHash": hx(h.new_weights_hash),
            "correctBefore": int(h.correct_before), "correctAfter": int(h.correct_after),
            "header": h.to_json(), "blockHash": hx(v.block_hash)}


def check_file(path: Path) -> list[str]:
    """Every mismatch between a file's expectations and the reference verdict (empty: conformant)."""
    doc = json.loads(path.read_text())
    task = load_task(doc["task"], rules=doc["rules"])
    problems = []
    # The task's identity comes first: the spec hash covers genesis, data and every parameter.
    for key, actual in (("taskSpecHash", hx(task.spec_hash)), ("genesisWeightsHash", hx(task.genesis_hash)),
                        ("numParams", task.num_params)):
        if doc[key] != actual:
            problems.append(f"{path.name}: {key} is {actual}, the file says {doc[key]}")
    for ref, s in doc["states"].items():
        if hx(compute_weights_hash(decode_state(s["data"]))) != ref:
            problems.append(f"{path.name}: state {ref[:10]}... does not hash to its name")
    for case in doc["cases"]:
        seed = compute_seed(Hash32(unhex(case["parentLink"])), RedrawIndex(case["proof"].get("redraw", 0)))
        if case["requirements"] != compute_requirements(seed, Difficulty(case["difficulty"]), task.num_params):
            problems.append(f"{path.name} {case['name']}: R differs")
        got = run_case(task, doc["states"], case)
        if got != case["expected"]:
            problems.append(f"{path.name} {case['name']}: expected {case['expected']}, got {got}")
    return problems


# ---- generating the cases ----

@dataclass
class Builder:
    """Collects one file: the states it references and its cases, each checked against its intent."""

    task: Task
    states: dict[str, Any]
    cases: list[dict[str, Any]]

    def ref(self, state: State, origin: str) -> str:
        h = hx(compute_weights_hash(state))
        if state is self.task.genesis_state:
            return GENESIS
        self.states.setdefault(h, {"origin": origin, "data": encode_state(state)})
        return h

    def add(self, name: str, intent: str, case: dict[str, Any]) -> dict[str, Any]:
        case = {"name": name, **case}
        seed = compute_seed(Hash32(unhex(case["parentLink"])), RedrawIndex(case["proof"].get("redraw", 0)))
        case["requirements"] = compute_requirements(seed, Difficulty(case["difficulty"]), self.task.num_params)
        case["expected"] = run_case(self.task, self.states, case)
        got = "VALID" if case["expected"]["valid"] else case["expected"]["reason"]
        # A case that fails for another reason than the one it was built for tests nothing it claims.
        if got != intent:
            raise RuntimeError(f"case {name}: built for {intent}, the verdict is {got}")
        self.cases.append(case)
        return case


def search_indices(task: Task, state: State, seed: Hash32, k: int, rng: torch.Generator, ascending: bool,
                   want: Callable[[bool, int, int], bool], evaluate: bool = True, tries: int = 4000) -> list[int]:
    """A P (S distinct training indices) whose step from `state` satisfies want(R met, before, after)."""
    reqs = compute_requirements(seed, Difficulty(k), task.num_params)
    model = task.model_from_state(state)
    cfg = task.config
    before_count = compute_correct(model, task.test_x, task.test_y, cfg.eval_batch) if evaluate else 0
    for _ in range(tries):
        idx = torch.randperm(task.train_size, generator=rng)[: cfg.batch_size].tolist()
        if ascending:
            idx.sort()
        model.load_state_dict(state)
        before = get_flat_params(model)
        process_step(model, *task.batch(idx), cfg)
        met = is_requirements_met(before, get_flat_params(model), reqs)
        after_count = compute_correct(model, task.test_x, task.test_y, cfg.eval_batch) if evaluate and met else -1
        if want(met, before_count, after_count):
            return idx
    raise RuntimeError("no batch found")


def train(task: Task, state: State, steps: list[list[int]]) -> "OrderedDict[str, torch.Tensor]":
    model = task.model_from_state(state)
    for s in steps:
        process_step(model, *task.batch(s), task.config)
    return get_state(model)


def random_steps(task: Task, rng: torch.Generator, sizes: list[int]) -> list[list[int]]:
    return [sorted(torch.randperm(task.train_size, generator=rng)[:b].tolist()) for b in sizes]


def edited(state: State, name: str, value: float, index: int | None = None) -> "OrderedDict[str, torch.Tensor]":
    out = OrderedDict((n, t.clone()) for n, t in state.items())
    if index is None:
        out[name].fill_(value)
    else:
        out[name].view(-1)[index] = value
    return out


def improves(met: bool, before: int, after: int) -> bool:
    return met and after > before


def build_paper() -> dict[str, Any]:
    task = load_task(TASK, rules="paper")
    b = Builder(task, {}, [])
    rng = torch.Generator().manual_seed(11)
    g = compute_genesis_header(task.spec_hash, task.genesis_hash, compute_genesis_correct(task), Difficulty(K))
    gh = compute_header_hash(g)
    warmup = random_steps(task, rng, [4] * 8)
    w = train(task, task.genesis_state, warmup)
    w_ref = b.ref(w, f"genesis after 8 SGD steps of S=4 samples: {warmup}")

    def case(parent: Header, w_state: State, w_hash_ref: str, idx: list[int], height: int | None = None,
             claimed: bytes | None = None, parent_link: bytes | None = None) -> dict[str, Any]:
        link = parent_link or compute_header_hash(parent)
        return {"parent": parent.to_json(), "parentLink": hx(compute_header_hash(parent)), "difficulty": K,
                "proof": {"parent": hx(link), "height": height if height is not None else parent.height + 1,
                          "indices": idx, "weights": w_hash_ref,
                          "weightsHash": hx(claimed or compute_weights_hash(w_state)), "miner": hx(MINER)}}

    p_ok = search_indices(task, w, gh, K, rng, False,
                          lambda m, cb, ca: improves(m, cb, ca) and cb + task.config.sabotage_tolerance >= g.correct_after)
    first = b.add("valid_genesis_child", "VALID", case(g, w, w_ref, p_ok))
    h1 = header_from_json(first["expected"]["header"])
    w1 = train(task, w, [p_ok])
    w1_ref = b.ref(w1, f"{w_ref} after the step on P = {p_ok} (the previous case's W')")
    p2 = search_indices(task, w1, compute_header_hash(h1), K, rng, False, improves)
    b.add("valid_height_2", "VALID", case(h1, w1, w1_ref, p2))
    b.add("requirements_not_met", "REQUIREMENTS_NOT_MET",
          case(g, w, w_ref, search_indices(task, w, gh, K, rng, False, lambda m, cb, ca: not m, evaluate=False)))
    b.add("accuracy_not_improved", "ACCURACY_NOT_IMPROVED",
          case(g, w, w_ref, search_indices(task, w, gh, K, rng, False, lambda m, cb, ca: m and ca <= cb)))
    strong = replace(g, correct_before=CorrectCount(300), correct_after=CorrectCount(300))  # W scores far below
    b.add("sabotage_guard", "SABOTAGE_GUARD",
          case(strong, w, w_ref, search_indices(task, w, compute_header_hash(strong), K, rng, False, improves)))
    b.add("stale_parent", "STALE", case(g, w, w_ref, p_ok, parent_link=keccak256(b"another parent")))
    b.add("wrong_height", "WRONG_HEIGHT", case(g, w, w_ref, p_ok, height=2))
    b.add("indices_repeated", "INVALID_INDICES", case(g, w, w_ref, [p_ok[0]] * 2 + p_ok[2:]))
    b.add("index_outside_train_set", "INVALID_INDICES", case(g, w, w_ref, p_ok[:3] + [task.train_size]))
    b.add("too_many_indices", "INVALID_INDICES", case(g, w, w_ref, p_ok + [(p_ok[0] + 1) % task.train_size]))
    b.add("weights_hash_mismatch", "WEIGHTS_HASH_MISMATCH", case(g, w, w_ref, p_ok, claimed=keccak256(b"not W")))
    nan = edited(w, "8.bias", float("nan"), 0)
    b.add("weights_not_finite", "INVALID_WEIGHTS", case(g, nan, b.ref(nan, f"{w_ref} with 8.bias[0] = NaN"), p_ok))
    other = replace(g, task_spec_hash=load_task(TASK, rules="chain-bound").spec_hash)
    b.add("parent_of_another_task", "INVALID_HEADER", case(other, w, w_ref, p_ok))
    huge = edited(w, "8.weight", 3e38, 0)  # the forward pass overflows, the loss and W' are NaN
    b.add("new_weights_not_finite", "NON_FINITE", case(g, huge, b.ref(huge, f"{w_ref} with 8.weight[0] = 3e38"), p_ok))
    shifted = edited(w, "1.running_mean", -3e38)  # train mode ignores it: same step; eval overflows
    b.add("logits_not_finite", "NON_FINITE",
          case(g, shifted, b.ref(shifted, f"{w_ref} with every 1.running_mean = -3e38"), p_ok))
    return document(task, b)


def build_chain_bound() -> dict[str, Any]:
    task = load_task(TASK, rules="chain-bound")
    b = Builder(task, {}, [])
    rng = torch.Generator().manual_seed(12)
    cb = RuleSet.CHAIN_BOUND
    g = compute_genesis_header(task.spec_hash, task.genesis_hash, compute_genesis_correct(task), Difficulty(K))
    randao = keccak256(b"conformance randao 0")
    link0 = compute_link(cb, compute_header_hash(g), randao)
    tip_ok = {"time": TIP_TIME, "chainTime": TIP_TIME + 5, "redrawAfter": REDRAW_AFTER}
    s = task.config.batch_size
    segment = random_steps(task, rng, [s, 4 * s, s, 16 * s])
    w = train(task, task.genesis_state, segment)

    def case(parent: Header, link: bytes, parent_state_ref: str, seg: list[list[int]], idx: list[int],
             redraw: int = 0, tip: dict[str, int] | None = None, height: int | None = None,
             named: bytes | None = None) -> dict[str, Any]:
        return {"parent": parent.to_json(), "parentLink": hx(link), "difficulty": K, "tip": tip or tip_ok,
                "parentState": parent_state_ref,
                "proof": {"parent": hx(named or link), "height": height if height is not None else parent.height + 1,
                          "segment": seg, "indices": idx, "redraw": redraw, "miner": hx(MINER)}}

    def good(m: bool, before: int, after: int) -> bool:
        return improves(m, before, after) and after >= g.correct_after

    p_ok = search_indices(task, w, compute_seed(link0, RedrawIndex(0)), K, rng, True, good)
    first = b.add("valid_genesis_child", "VALID", case(g, link0, GENESIS, segment, p_ok))
    h1 = header_from_json(first["expected"]["header"])
    link1 = compute_link(cb, compute_header_hash(h1), keccak256(b"conformance randao 1"))
    w1 = train(task, w, [p_ok])
    w1_ref = b.ref(w1, f"genesis after the segment {segment} and the step on P = {p_ok} (the previous case's W')")
    p2 = search_indices(task, w1, link1, K, rng, True, lambda m, bc, ac: improves(m, bc, ac) and ac >= h1.correct_after)
    b.add("valid_height_2_empty_segment", "VALID",
          case(h1, link1, w1_ref, [], p2, tip={**tip_ok, "time": TIP_TIME + 30, "chainTime": TIP_TIME + 31}))
    p_redraw = search_indices(task, w, compute_seed(link0, RedrawIndex(1)), K, rng, True, good)
    b.add("valid_redraw_1", "VALID",
          case(g, link0, GENESIS, segment, p_redraw, redraw=1, tip={**tip_ok, "chainTime": TIP_TIME + REDRAW_AFTER}))
    b.add("redraw_too_early", "REDRAW_TOO_EARLY",
          case(g, link0, GENESIS, segment, p_redraw, redraw=1,
               tip={**tip_ok, "chainTime": TIP_TIME + REDRAW_AFTER - 1}))
    b.add("requirements_not_met", "REQUIREMENTS_NOT_MET",
          case(g, link0, GENESIS, segment,
               search_indices(task, w, link0, K, rng, True, lambda m, bc, ac: not m, evaluate=False)))
    b.add("accuracy_not_improved", "ACCURACY_NOT_IMPROVED",
          case(g, link0, GENESIS, segment, search_indices(task, w, link0, K, rng, True, lambda m, bc, ac: m and ac <= bc)))
    strong = replace(g, correct_before=CorrectCount(300), correct_after=CorrectCount(300))  # far above W'
    link_s = compute_link(cb, compute_header_hash(strong), randao)
    b.add("tip_regressed", "TIP_REGRESSED",
          case(strong, link_s, GENESIS, segment, search_indices(task, w, link_s, K, rng, True, improves)))
    b.add("segment_batch_not_4j_s", "INVALID_SEGMENT", case(g, link0, GENESIS, segment + [segment[0][:3]], p_ok))
    b.add("segment_step_not_ascending", "INVALID_SEGMENT",
          case(g, link0, GENESIS, [segment[0][::-1]] + segment[1:], p_ok))
    b.add("segment_on_test_index", "INVALID_SEGMENT",
          case(g, link0, GENESIS, [segment[0][:3] + [task.train_size]] + segment[1:], p_ok))
    b.add("segment_too_long", "INVALID_SEGMENT",
          case(g, link0, GENESIS, [segment[0]] * (task.config.max_segment_steps + 1), p_ok))
    b.add("indices_not_ascending", "INVALID_INDICES", case(g, link0, GENESIS, segment, p_ok[::-1]))
    b.add("parent_state_mismatch", "PARENT_STATE_MISMATCH", case(g, link0, w1_ref, segment, p_ok))
    b.add("stale_parent", "STALE", case(g, link0, GENESIS, segment, p_ok, named=keccak256(b"another link")))
    b.add("wrong_height", "WRONG_HEIGHT", case(g, link0, GENESIS, segment, p_ok, height=2))
    b.add("parent_of_another_task", "INVALID_HEADER",
          case(replace(g, task_spec_hash=load_task(TASK, rules="paper").spec_hash), link0, GENESIS, segment, p_ok))
    # Train mode ignores running means, so the step is genesis's; eval mode overflows.
    shifted = edited(edited(task.genesis_state, "1.running_mean", -3e38), "4.running_mean", -3e38)
    odd = replace(g, weights_hash=compute_weights_hash(shifted), new_weights_hash=compute_weights_hash(shifted))
    link_o = compute_link(cb, compute_header_hash(odd), randao)
    b.add("logits_not_finite", "NON_FINITE",
          case(odd, link_o, b.ref(shifted, "genesis with every 1.running_mean and 4.running_mean = -3e38"), [],
               search_indices(task, shifted, link_o, K, rng, True, lambda m, bc, ac: m, evaluate=False)))
    return document(task, b)


def document(task: Task, b: Builder) -> dict[str, Any]:
    return {"format": FORMAT, "task": task.name, "rules": task.config.rules, "taskSpecHash": hx(task.spec_hash),
            "genesisWeightsHash": hx(task.genesis_hash), "numParams": task.num_params,
            "states": b.states, "cases": b.cases}


FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "digits-cnn_paper.json": build_paper,
    "digits-cnn_chain-bound.json": build_chain_bound,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="DIR")
    mode.add_argument("--check", metavar="DIR")
    args = ap.parse_args(argv)
    from .portable import pin_cpu_dispatch
    from .step import enable_deterministic_mode

    pin_cpu_dispatch()  # the vectors are consensus values: the pinned kernels compute them
    enable_deterministic_mode()
    if args.write:
        Path(args.write).mkdir(parents=True, exist_ok=True)
        for name, build in FILES.items():
            (Path(args.write) / name).write_text(json.dumps(build(), indent=1) + "\n")
        return 0
    problems = [p for name in FILES for p in check_file(Path(args.check) / name)]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
