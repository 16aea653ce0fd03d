"""Quorum mode on real processes: a real anvil, three `pol verifier serve` processes (t = 2 of 3,
chain-bound digits-cnn), proofs mined in-process. Each test names the rule it breaks when removed."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from eth_account import Account
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pol.client import Rejected
from pol.genesis import Genesis
from pol.quorum_client import QuorumClient
from pol.reasons import ServiceReason
from pol_chain import NO_ATTESTER, InvalidSigner, deploy_chain
from pol_chain.anvil import ANVIL_DEV_KEYS
from pol_chain.process import terminate
from pol_core.attestation import compute_block_digest, compute_signature, make_signer_set
from pol_core.chainbound import SegmentProof, compute_chain_bound_verdict
from pol_core.header import compute_header_hash, decode_header
from pol_core.types import Address, ConsensusError, Height, RedrawIndex, SampleIndex
from pol_core.verify import compute_genesis_correct
from verifier_service.quorum import Signed, proof_message

from .helpers import KEY, MINER, mine_segment_on, submit_segment_found, wait_health

# anvil's dev accounts 1 to 3 (funded: a member relays its blocks and pays the gas)
MEMBER_KEYS = [*ANVIL_DEV_KEYS[1:3], "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"]
ADDRESS = {k: bytes.fromhex(Account.from_key(k).address[2:]) for k in MEMBER_KEYS}
SET = make_signer_set(list(ADDRESS.values()), 2)
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    key: str
    port: int
    root: Path
    deployment: Path
    peers: list[int]
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        self.log = self.root.parent / f"{self.root.name}-{time.time_ns()}.log"
        log = open(self.log, "w")
        env = os.environ | {"POL_MEMBER_KEY": self.key}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pol_cli.main", "verifier", "serve", "--deployment", str(self.deployment),
             "--data-root", str(self.root), "--listen", self.addr, "--key-env", "POL_MEMBER_KEY", "--eval-workers", "0",
             "--receipt-wait-s", "30", "--peers", ",".join(f"127.0.0.1:{p}" for p in self.peers), *self.extra],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "listening on port" in line:
                return
            if self.proc.poll() is not None:
                break
        terminate(self.proc)
        raise RuntimeError(f"verifier did not start; see {self.log}")

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None

    def client(self) -> QuorumClient:
        return QuorumClient(self.addr, connect_timeout=60)

    def own_signatures(self) -> list[tuple[bytes, int, int, bytes]]:
        """(signer, height, redraw, hash) of every signature this verifier made, from its journal."""
        db = sqlite3.connect(f"file:{self.root / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            return [(bytes(a), h, r, bytes(x)) for a, h, r, x in
                    db.execute("SELECT signer, height, redraw, hash FROM signatures WHERE signer=?",
                               (ADDRESS[self.key],))]
        finally:
            db.close()


class Network:
    def __init__(self, anvil, task, tmp: Path, faulty: int | None = None):
        owner = Account.from_key(KEY).address
        genesis = Genesis.for_task(task, compute_genesis_correct(task), NO_ATTESTER, owner, difficulty=3)
        self.dep = deploy_chain(anvil.url, KEY, task.name, genesis, quorum=SET)
        path = tmp / "deployment.json"
        self.dep.save(path)
        self.path = path
        self.task = task
        self.chain = self.dep.client()
        ports = [free_port() for _ in MEMBER_KEYS]
        self.members = [Member(k, ports[i], tmp / f"v{i}", path, [p for j, p in enumerate(ports) if j != i],
                               ("--fault-sign-blindly",) if i == faulty else ()) for i, k in enumerate(MEMBER_KEYS)]
        for m in self.members:  # in parallel: each loads torch and the task
            m.launch()
        for m in self.members:
            m.wait_ready()
        # Each one counts its peers once a second: serving once it sees t - 1 of them.
        assert all(wait_until(lambda: not degraded(m), timeout=10) for m in self.members)

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def mine(self, via: Member, seed: int):
        with via.client() as c:
            height = self.chain.get_tip().height
            assert wait_until(lambda: c.get_tip().height == height)  # a co-signer follows the chain in ~1 s
            tip = c.get_tip()
            state = c.get_model(bytes(tip.model_hash), list(self.task.genesis_state))
        return tip, mine_segment_on(self.task, tip, state, seed=seed)

    def land(self, via: Member, seed: int):
        tip, found = self.mine(via, seed)
        with via.client() as c:
            resp = submit_segment_found(c, self.task, tip, found)
        assert resp.attested, resp
        assert self.chain.get_tip().height == tip.height + 1
        return resp


def wait_until(predicate, timeout: float = 15.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def sees_answering(observer: Member, peer: Member, since: float) -> bool:
    """Whether `observer`'s last word on `peer`, logged after `since` (time.time()), is that it answers.
    A relayer asks a peer it last saw down without waiting for its channel, so a member that has just
    restarted is skipped until the observer's next health round."""
    assert observer.log is not None
    said = None
    for line in observer.log.read_text().splitlines():
        rec = json.loads(line) if line.startswith("{") else {}
        if rec.get("peer") == peer.addr and rec.get("ts", 0) >= since:
            said = rec.get("msg")
    return said == "peer answers"


def degraded(m: Member) -> bool:
    with m.client() as c:
        return c.get_tip(timeout=5).degraded


def cosign_as(requester_key: str, target: Member, net: Network, proof: SegmentProof, header):
    """A CoSign request built by hand, signed with a member's key: as that member's verifier would send it."""
    block_hash = compute_header_hash(header)
    sig = compute_signature(requester_key, compute_block_digest(net.chain.get_domain(), block_hash))
    requester = Signed(header, Address(ADDRESS[requester_key]), sig).message()
    with target.client() as c:
        return c.cosign(proof_message(net.task.name, proof), block_hash, requester, timeout=60)


def verdict_of(net: Network, found) -> tuple[SegmentProof, object]:
    """The proof and the header an honest verifier computes for it, on the chain's current tip."""
    ctx = net.chain.get_tip_context(from_block=net.dep.deploy_block)
    proof = SegmentProof(ctx.link, Height(ctx.header.height + 1), found.segment, tuple(found.indices),
                         RedrawIndex(0), Address(MINER))
    with net.members[0].client() as c:
        assert wait_until(lambda: c.get_tip().height == ctx.header.height)
        state = c.get_model(ctx.header.new_weights_hash, list(net.task.genesis_state))
    return proof, compute_chain_bound_verdict(net.task, ctx, state, proof).header


def no_member_signed_twice(members: list[Member]) -> None:
    seen: dict[tuple[bytes, int, int], set[bytes]] = {}
    for m in members:
        for signer, height, redraw, block in m.own_signatures():
            seen.setdefault((signer, height, redraw), set()).add(block)
    doubled = {k: v for k, v in seen.items() if len(v) > 1}
    assert not doubled, doubled


@pytest.fixture(scope="module")
def net(anvil, digits_cb, tmp_path_factory):
    n = Network(anvil, digits_cb, tmp_path_factory.mktemp("quorum"))
    yield n
    n.stop()


def test_blocks_keep_landing_with_one_verifier_killed(net):
    """Rule: t of n signatures suffice; co-signers keep the block (segment) so any verifier serves it."""
    v0, v1, v2 = net.members
    r = net.land(v0, seed=1)
    # A co-signer learns through the chain that the block landed, and serves its models.
    with v2.client() as c:
        assert wait_until(lambda: c.get_tip().height == 1)
        b = c.get_block(height=1)
        assert b.attested and bytes(b.block_hash) == bytes(r.block_hash)
        assert len(c.get_model_bytes(bytes(r.new_weights_hash))) > 0
    v2.kill9()
    assert not degraded(v0)  # one peer answers: t - 1 = 1 is enough
    net.land(v0, seed=2)
    net.land(v1, seed=3)
    assert net.chain.get_tip().height == 3
    no_member_signed_twice(net.members)


def test_two_killed_stop_the_chain_and_it_resumes(net, digits_cb):
    """Rules: fewer than t - 1 reachable peers is degraded (no work spent, nothing signed); one signature per
    (height, redraw), durable across kill -9; a verifier that missed blocks catches up from its peers."""
    v0, v1, v2 = net.members
    if v2.proc is None:
        v2.start()  # same port and data root; it missed heights 2 and 3
    height = net.chain.get_tip().height
    _, x = net.mine(v0, seed=11)
    _, y = net.mine(v0, seed=12)
    proof_x, header_x = verdict_of(net, x)
    proof_y, header_y = verdict_of(net, y)
    assert compute_header_hash(header_x) != compute_header_hash(header_y)
    # v1 co-signs X at (height + 1, 0) for v2's key (v2 is a member); nobody relays it.
    resp = cosign_as(v2.key, v1, net, proof_x, header_x)
    assert bytes(resp.signature.signer) == ADDRESS[v1.key]
    v1.kill9()
    v2.kill9()
    assert wait_until(lambda: degraded(v0), timeout=10)
    with v0.client() as c:
        assert wait_health(health_pb2_grpc.HealthStub(c.channel), NOT_SERVING, timeout=10)
        tip = c.get_tip()
        with pytest.raises(Rejected) as e:
            submit_segment_found(c, digits_cb, tip, y)
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.UNAVAILABLE, ServiceReason.DEGRADED)
    assert net.chain.get_tip().height == height
    assert all(h != height + 1 for _, h, _, _ in v0.own_signatures())  # no work spent: nothing signed
    v1.launch()
    v2.launch()
    v1.wait_ready()
    v2.wait_ready()
    assert wait_until(lambda: not degraded(v0), timeout=15)
    # The restarted v1 still refuses to sign Y where it signed X.
    with v1.client() as c:
        with pytest.raises(Rejected) as e:
            submit_segment_found(c, digits_cb, c.get_tip(), y)
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.FAILED_PRECONDITION, ServiceReason.ALREADY_SIGNED)
    # X lands through v2, which first fetches the blocks it missed from its peers.
    with v2.client() as c:
        resp_x = submit_segment_found(c, digits_cb, c.get_tip(), x)
    assert resp_x.attested and bytes(resp_x.block_hash) == compute_header_hash(header_x)
    net.land(v1, seed=13)
    assert net.chain.get_tip().height == height + 2
    with v2.client() as c:
        assert wait_until(lambda: c.get_tip().height == height + 2)
        for h in range(1, height + 3):
            assert c.get_block(height=h).attested
    no_member_signed_twice(net.members)


def bad_proof(net: Network, found, tries: int = 50):
    """The honest segment with another P: a proof that breaks a rule (checked here, in-process)."""
    import random

    rng = random.Random(5)
    proof, _ = verdict_of(net, found)
    ctx = net.chain.get_tip_context(from_block=net.dep.deploy_block)
    with net.members[0].client() as c:
        state = c.get_model(ctx.header.new_weights_hash, list(net.task.genesis_state))
    for _ in range(tries):
        indices = tuple(SampleIndex(i) for i in sorted(rng.sample(range(net.task.train_size), len(found.indices))))
        bad = replace(proof, indices=indices)
        try:
            compute_chain_bound_verdict(net.task, ctx, state, bad)
        except ConsensusError:
            return bad
    raise RuntimeError("no rule-breaking P found")


def test_a_hung_member_does_not_hold_up_blocks(net):
    """Rule: the relayer sends as soon as it holds t signatures. A member that keeps its connections open
    but never answers (SIGSTOP) would otherwise delay every block by the CoSign deadline (20 s)."""
    v0, v1, v2 = net.members
    assert v2.proc is not None
    os.kill(v2.proc.pid, signal.SIGSTOP)
    try:
        tip, found = net.mine(v0, seed=31)
        t0 = time.monotonic()
        with v0.client() as c:
            resp = submit_segment_found(c, net.task, tip, found)
        waited = time.monotonic() - t0
        assert resp.attested, resp
        assert waited < 15, f"the block waited {waited:.1f}s for a member that never answers"
    finally:
        os.kill(v2.proc.pid, signal.SIGCONT)
    assert wait_until(lambda: not degraded(v2), timeout=30)


def test_a_member_signing_blindly_is_caught_and_removed(net, digits_cb):
    """Rules: a co-signer signs only its own verdict (a bad block never gets t signatures); every member's
    signature seen is kept, and two over one (height, redraw) are evidence that removes the signer."""
    v0, v1, v2 = net.members
    stopped = time.time()
    v2.stop()
    v2.extra = ("--fault-sign-blindly",)  # the same member, its key and data, now faulty
    v2.start()
    assert wait_until(lambda: sees_answering(v0, v2, stopped))  # else v0 skips it and no third answer comes
    height = net.chain.get_tip().height
    _, found = net.mine(v0, seed=21)
    bad = bad_proof(net, found)
    with v2.client() as c:
        assert wait_until(lambda: c.get_tip().height == height)
        with pytest.raises(Rejected) as e:
            c.submit_segment(digits_cb.name, bad.parent, bad.height, bad.segment, bad.indices, MINER)
    # The faulty member signed it; both honest ones refused: 1 of 2.
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.UNAVAILABLE, ServiceReason.QUORUM_UNAVAILABLE), e.value
    assert "1 of 2 signatures" in e.value.message
    assert net.chain.get_tip().height == height
    # The honest block at the same (height, redraw): the faulty member co-signs it too.
    with v0.client() as c:
        resp = submit_segment_found(c, digits_cb, c.get_tip(), found)
        assert resp.attested
        # The relayer stops waiting once it holds t signatures; the third answer, and the evidence it
        # carries, may come just after.
        assert wait_until(lambda: len(c.list_evidence()) == 1)
        evidence = c.list_evidence()
    assert len(evidence) == 1
    a, b = (decode_header(bytes(x.header)) for x in (evidence[0].a, evidence[0].b))
    assert bytes(evidence[0].a.signer) == bytes(evidence[0].b.signer) == ADDRESS[v2.key]
    assert (a.height, a.redraw) == (b.height, b.redraw) == (height + 1, 0)
    assert {compute_header_hash(a), compute_header_hash(b)} >= {bytes(resp.block_hash)}
    out = subprocess.run([sys.executable, "-m", "pol_cli.main", "quorum", "report", "--verifier", v0.addr,
                          "--deployment", str(net.path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"reported 0x{ADDRESS[v2.key].hex()} at height {height + 1}, redraw 0" in out.stdout
    assert "removed; set now 2 of 2" in out.stdout, out.stdout
    info = net.chain.get_signer_set().signer_set
    assert ADDRESS[v2.key] not in info.signers and info.threshold == 2
    events = net.chain.contract.events.Equivocation().get_logs(from_block=net.dep.deploy_block)
    assert len(events) == 1 and events[0]["args"]["removed"]
    # Reported once: the second run finds the signer gone.
    again = subprocess.run([sys.executable, "-m", "pol_cli.main", "quorum", "report", "--verifier", v0.addr,
                            "--deployment", str(net.path)], capture_output=True, text=True, timeout=120)
    assert "no longer a member" in again.stdout, again.stdout
    # The two honest members go on: the removed member's signature no longer counts.
    net.land(v0, seed=22)
    no_member_signed_twice([v0, v1])


def test_a_signature_for_another_chain_id_is_refused(net, digits_cb):
    """Rule: a signature binds the chain id (EIP-712 domain). The members' real signatures over the next
    block are refused once the node's chain id changes (a fork), and accepted under the original id."""
    v0, v1, _ = net.members
    _, found = net.mine(v0, seed=31)
    proof, header = verdict_of(net, found)
    resp = cosign_as(v0.key, v1, net, proof, header)  # v1 verifies and signs; v0's signature is built here
    digest = compute_block_digest(net.chain.get_domain(), compute_header_hash(header))
    signatures = {ADDRESS[v0.key]: compute_signature(v0.key, digest),
                  bytes(resp.signature.signer): bytes(resp.signature.signature)}
    for m in net.members:
        m.stop()  # no verifier sends anything while the chain id is changed
    relayer = net.dep.client(KEY)
    relayer.rpc("anvil_setChainId", [4242])
    try:
        forked = net.dep.client(KEY)
        with pytest.raises(InvalidSigner):
            forked.submit_block_signed(header, signatures)
    finally:
        relayer.rpc("anvil_setChainId", [31337])
    r = net.dep.client(KEY).submit_block_signed(header, signatures)
    assert r.block_hash == compute_header_hash(header)


def test_serve_refuses_a_key_outside_the_set_and_missing_peers(net, tmp_path):
    """Rule: in quorum mode the key must be a member of the set on chain (not "the attester"), and a
    member needs peers to reach t; each refusal is one line, before the task loads."""
    base = [sys.executable, "-m", "pol_cli.main", "verifier", "serve", "--deployment", str(net.path),
            "--data-root", str(tmp_path / "x"), "--listen", "127.0.0.1:0", "--key-env", "POL_MEMBER_KEY"]
    peers = ["--peers", ",".join(m.addr for m in net.members[:2])]
    outsider = subprocess.run(base + peers, capture_output=True, text=True, timeout=60,
                              env=os.environ | {"POL_MEMBER_KEY": KEY})
    assert outsider.returncode == 2
    assert outsider.stderr.count("\n") == 1 and "is not a member of the contract's signer set" in outsider.stderr
    alone = subprocess.run(base, capture_output=True, text=True, timeout=60,
                           env=os.environ | {"POL_MEMBER_KEY": MEMBER_KEYS[0]})
    assert alone.returncode == 2 and "--peers" in alone.stderr, alone.stderr


def test_the_journal_keeps_one_signature_per_height_and_redraw(tmp_path):
    """Rule: one signature per (signer, height, redraw), durable (a reopened journal still refuses);
    the same header again is no conflict; another redraw is a new round; others' pairs are evidence."""
    from pol_core.header import Header
    from pol_core.keccak import keccak256
    from verifier_service.journal import Journal

    me, other = ADDRESS[MEMBER_KEYS[0]], ADDRESS[MEMBER_KEYS[1]]
    h = Header(keccak256(b"p"), 5, keccak256(b"t"), keccak256(b"w"), keccak256(b"w'"), (1, 2, 3, 4), 10, 11, 3,
               b"\x11" * 20, segment_root=keccak256(b"s"))
    h2, h_redraw = replace(h, new_weights_hash=keccak256(b"other")), replace(h, redraw=1)
    j = Journal(tmp_path / "j.sqlite")
    assert j.claim_signature(me, h, compute_header_hash(h), b"a" * 64) is None
    assert j.claim_signature(me, h, compute_header_hash(h), b"a" * 64) is None  # a retry
    j.close()
    j = Journal(tmp_path / "j.sqlite")
    assert j.claim_signature(me, h2, compute_header_hash(h2), b"b" * 64) == compute_header_hash(h)
    assert j.claim_signature(me, h_redraw, compute_header_hash(h_redraw), b"c" * 64) is None
    assert [r.block_hash for r in j.signatures_at(5, 0, me)] == [compute_header_hash(h)]
    assert j.equivocations() == []
    assert j.record_signature(other, h, compute_header_hash(h), b"d" * 64)
    assert j.record_signature(other, h2, compute_header_hash(h2), b"e" * 64)
    [(a, b)] = j.equivocations()
    assert a.signer == b.signer == other
    assert {a.block_hash, b.block_hash} == {compute_header_hash(h), compute_header_hash(h2)}
    j.close()
