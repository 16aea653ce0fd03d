"""The verifier service over real gRPC (127.0.0.1, port 0) against a real anvil."""
from __future__ import annotations

import threading
import time

import grpc
import pytest
import torch

from pol.client import Rejected, VerifierClient
from pol.reasons import ServiceReason
from pol.v1 import verifier_pb2 as pb
from pol.wire import encode_state
from pol_chain import AnvilProcess
from pol_core.requirements import compute_requirements, is_requirements_met
from pol_core.step import compute_correct, process_step
from pol_core.types import Reason
from pol_core.weights import compute_weights_hash, get_flat_params
from verifier_service.config import VerifierConfig
from verifier_service.factory import build_node
from verifier_service.journal import Journal, ModelStore
from verifier_service.metrics import Metrics
from verifier_service.node import VerifierNode
from verifier_service.server import create_server
from verifier_service.verdicts import TaskRef, VerdictPool

from .helpers import KEY, MINER, deploy_fresh, mine_on, start_verifier_process, submit_found, wait_health


@pytest.fixture()
def service(anvil, digits, tmp_path, request):
    dep = deploy_fresh(anvil.url, digits, tmp_path / "deployment.json")
    # Verdicts on the verify thread, or (param "workers") in a verdict worker process as `pol verifier serve` has.
    verdicts = (VerdictPool(digits, TaskRef("digits-cnn", None, None, "paper"), 1)
                if getattr(request, "param", None) == "workers" else None)
    # Assembled from its collaborators, as any embedding of the node would.
    node = VerifierNode(task=digits, deployment=dep, chain=dep.client(KEY), journal=Journal(tmp_path / "v" / "j.sqlite"),
                        models=ModelStore(tmp_path / "v" / "models"), metrics=Metrics(),
                        cfg=VerifierConfig(receipt_wait_s=20), verdicts=verdicts)
    server, port = create_server(node, "127.0.0.1:0")
    node.start()
    server.start()
    client = VerifierClient(f"127.0.0.1:{port}")
    yield node, client
    client.close()
    server.stop(0)
    node.stop()


def test_accepts_a_real_proof_end_to_end(service, digits):
    node, client = service
    tip = client.get_tip()
    assert tip.height == 0 and not tip.degraded and tip.num_params == digits.num_params
    found = mine_on(digits, tip)
    resp = submit_found(client, digits, tip, found)
    assert resp.attested and resp.tx_hash.startswith("0x") and resp.height == 1
    assert 21_000 < resp.gas_used <= 50_000
    chain_tip = node.chain.get_tip()
    assert chain_tip.link == resp.block_hash and chain_tip.height == 1
    assert node.chain.get_latest_model_hash() == resp.new_weights_hash
    assert (resp.correct_before, resp.correct_after) == (found.correct_before, found.correct_after)
    # Provers sync to the canonical W' through GetModel.
    state = client.get_model(resp.new_weights_hash, list(digits.genesis_state))
    assert compute_weights_hash(state) == resp.new_weights_hash
    block = client.get_block(height=1)
    assert block.block_hash == resp.block_hash and block.attested and list(block.indices) == list(found.indices)
    new_tip = client.get_tip()
    assert new_tip.block_hash == resp.block_hash and new_tip.model_hash == resp.new_weights_hash
    # Prometheus metrics count what happened.
    import urllib.request

    port = node.serve_metrics(0)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "pol_proofs_accepted_total 1.0" in text and "pol_tip_height 1.0" in text
    assert 'pol_verification_seconds_count{phase="update"} 1.0' in text


def find_failing_candidate(task, tip, want_requirements: bool):
    """Indices whose step misses R (or meets R but does not improve accuracy)."""
    reqs = compute_requirements(bytes(tip.block_hash), tip.difficulty, task.num_params)
    gen = torch.Generator().manual_seed(99)
    base = compute_correct(task.new_model(), task.test_x, task.test_y, task.config.eval_batch)
    for _ in range(5000):
        idx = tuple(torch.randperm(task.train_size, generator=gen)[:4].tolist())
        m = task.new_model()
        before = get_flat_params(m)
        process_step(m, *task.batch(idx), task.config)
        met = is_requirements_met(before, get_flat_params(m), reqs)
        if not want_requirements and not met:
            return idx
        if want_requirements and met and compute_correct(m, task.test_x, task.test_y, task.config.eval_batch) <= base:
            return idx
    raise RuntimeError("no such candidate")


def header_for(the_task, tip, state, **over):
    blob = encode_state(state)
    fields = dict(task=the_task.name, parent_hash=bytes(tip.block_hash), height=tip.height + 1, indices=[0, 1, 2, 3],
                  weights_hash=compute_weights_hash(state), miner=MINER, weights_size=len(blob))
    fields.update(over)
    return pb.ProofHeader(**fields), blob


@pytest.mark.parametrize("service", ["thread", "workers"], indirect=True)
def test_bad_inputs_get_specific_statuses(service, digits):
    node, client = service
    tip = client.get_tip()
    g = digits.genesis_state
    nan_state = {k: v.clone() for k, v in g.items()}
    nan_state["1.weight"][0] = float("nan")
    shape_state = {**g, "8.bias": torch.zeros(11)}
    miss_r = find_failing_candidate(digits, tip, want_requirements=False)
    no_gain = find_failing_candidate(digits, tip, want_requirements=True)
    cap = node.max_weights_bytes()
    cases = [
        ("unknown task", dict(task="mnist"), g, None, grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_TASK"),
        ("stale parent", dict(parent_hash=b"\x01" * 32), g, None, grpc.StatusCode.FAILED_PRECONDITION, "STALE"),
        ("wrong height", dict(height=5), g, None, grpc.StatusCode.INVALID_ARGUMENT, "WRONG_HEIGHT"),
        ("three indices", dict(indices=[1, 2, 3]), g, None, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INDICES"),
        ("repeated index", dict(indices=[1, 1, 2, 3]), g, None, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INDICES"),
        ("index out of range", dict(indices=[1, 2, 3, 100000]), g, None, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INDICES"),
        ("short hash", dict(weights_hash=b"\x00" * 31), g, None, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HASH"),
        ("hash mismatch", dict(weights_hash=b"\x02" * 32), g, None, grpc.StatusCode.INVALID_ARGUMENT, "WEIGHTS_HASH_MISMATCH"),
        ("bad miner", dict(miner=b"\x01" * 19), g, None, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_MINER"),
        ("NaN weights", {}, nan_state, None, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WEIGHTS"),
        ("wrong shape", {}, shape_state, None, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WEIGHTS"),
        ("not safetensors", {}, g, b"\x00garbage" * 100, grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_WEIGHTS"),
        ("announced too large", dict(weights_size=cap + 1), g, None, grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_LARGE"),
        ("sent too much", {}, g, b"\x00" * (cap + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_LARGE"),
        ("size mismatch", dict(weights_size=10), g, None, grpc.StatusCode.INVALID_ARGUMENT, "SIZE_MISMATCH"),
        ("misses R", dict(indices=list(miss_r)), g, None, grpc.StatusCode.INVALID_ARGUMENT, "REQUIREMENTS_NOT_MET"),
        ("no accuracy gain", dict(indices=list(no_gain)), g, None, grpc.StatusCode.INVALID_ARGUMENT, "ACCURACY_NOT_IMPROVED"),
    ]
    for name, over, state, raw, code, reason in cases:
        header, blob = header_for(digits, tip, state, **over)
        if raw is not None:
            blob = raw
            if "weights_size" not in over:
                header.weights_size = len(raw)
        with pytest.raises(Rejected) as e:
            client.submit_raw(header, blob)
        assert (e.value.code, e.value.reason) == (code, reason), name
        assert e.value.message, name
    with pytest.raises(grpc.RpcError) as e:  # a stream with no header at all
        client.stub.SubmitProof(iter([pb.SubmitProofRequest(weights_chunk=b"x")]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "MISSING_HEADER" in e.value.details()
    assert client.get_tip().height == 0  # nothing was accepted, and the service still answers
    found = mine_on(digits, tip)
    submit_found(client, digits, tip, found)
    with pytest.raises(Rejected) as e:
        submit_found(client, digits, tip, found)  # the same proof again
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE")
    with pytest.raises(Rejected) as e:
        client.get_model(b"\x09" * 32, [])
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.NOT_FOUND, ServiceReason.UNKNOWN_MODEL)
    # GetModel is a generator: its checks run while the stream is iterated, through the same map.
    with pytest.raises(Rejected) as e:
        client.get_model(b"\x09" * 31, [])
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_HASH)


def test_errors_inside_watch_tip_are_mapped(service, monkeypatch):
    """A failure after the stream started still ends it with the service's status and reason."""
    node, client = service
    calls = [0]
    real = node.tip_view

    def flaky():
        calls[0] += 1
        if calls[0] > 1:
            raise RuntimeError("disk on fire")
        return real()

    monkeypatch.setattr(node, "tip_view", flaky)
    stream = client.watch_tip()
    first = next(stream)
    assert first.height == 0
    node._after_attest_pass(None)  # wake the stream, which then fails
    with pytest.raises(grpc.RpcError) as e:
        next(stream)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert dict(e.value.trailing_metadata())["pol-reason"] == "INTERNAL"
    assert "disk on fire" not in e.value.details()  # internals stay in the service's log


def test_concurrent_submissions_one_block_per_height(service, digits):
    node, client = service
    tip = client.get_tip()
    proofs, seed = [], 0
    while len(proofs) < 4:
        f = mine_on(digits, tip, seed=seed)
        # Four proofs each valid on its own, so the race is the only reason to refuse three: Algorithm 1
        # trains from genesis, and near chance level W can dip below the sabotage guard's bound.
        valid_alone = f.correct_before + digits.config.sabotage_tolerance >= tip.correct
        if valid_alone and all(f.indices != p.indices for p in proofs):
            proofs.append(f)
        seed += 1
    results, errors = [], []
    barrier = threading.Barrier(len(proofs))

    def go(f, i):
        c = VerifierClient(f"{client.channel._channel.target().decode()}", client_id=f"prover-{i}")
        barrier.wait()
        try:
            results.append(submit_found(c, digits, tip, f, miner=bytes([i + 1]) * 20))
        except Rejected as e:
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=go, args=(f, i)) for i, f in enumerate(proofs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1, (results, errors)
    assert len(errors) == 3 and all(e.reason in ("STALE", "ATTESTATION_PENDING") for e in errors), errors
    blocks = node.chain.get_blocks(node.deployment.deploy_block)
    assert [b.header.height for b in blocks] == [0, 1]


def test_bad_inputs_flood_does_not_block_honest_proof(service, digits):
    node, client = service
    tip = client.get_tip()
    header, blob = header_for(digits, tip, digits.genesis_state, weights_hash=b"\x02" * 32)
    stop = threading.Event()
    count = [0]

    def flood():
        c = VerifierClient(f"{client.channel._channel.target().decode()}", client_id="flooder")
        while not stop.is_set() and count[0] < 500:
            try:
                c.submit_raw(header, blob)
            except Rejected:
                count[0] += 1
        c.close()

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    resp = submit_found(client, digits, tip, mine_on(digits, tip))
    elapsed = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join()
    assert resp.attested and count[0] > 0
    assert elapsed < 30


def test_kill9_before_send_attests_exactly_once_after_restart(anvil, digits, tmp_path):
    dep = deploy_fresh(anvil.url, digits, tmp_path / "d.json")
    vp = start_verifier_process(tmp_path / "d.json", tmp_path / "v", "--fault-pause", "before_send",
                                "--fault-pause-s", "120", "--receipt-wait-s", "1")
    try:
        client = VerifierClient(f"127.0.0.1:{vp.port}")
        tip = client.get_tip()
        resp = submit_found(client, digits, tip, mine_on(digits, tip))
        assert not resp.attested and client.get_tip().pending_attestations == 1
        vp.kill9()
        chain = dep.client()
        assert chain.get_tip().height == 0  # killed between verification and the transaction
    finally:
        vp.stop()
    vp2 = start_verifier_process(tmp_path / "d.json", tmp_path / "v")
    try:
        deadline = time.monotonic() + 30
        while chain.get_tip().height == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        blocks = chain.get_blocks(dep.deploy_block)
        assert [b.header.height for b in blocks] == [0, 1]
        assert blocks[1].block_hash == resp.block_hash
        c2 = VerifierClient(f"127.0.0.1:{vp2.port}")
        assert c2.get_block(height=1).attested
    finally:
        vp2.stop()


def test_kill9_after_send_is_not_sent_twice(anvil, digits, tmp_path):
    dep = deploy_fresh(anvil.url, digits, tmp_path / "d.json")
    vp = start_verifier_process(tmp_path / "d.json", tmp_path / "v", "--fault-pause", "after_send",
                                "--fault-pause-s", "120", "--receipt-wait-s", "2")
    chain = dep.client()
    try:
        client = VerifierClient(f"127.0.0.1:{vp.port}")
        tip = client.get_tip()
        resp = submit_found(client, digits, tip, mine_on(digits, tip))
        assert not resp.attested
        assert chain.get_tip().link == resp.block_hash  # the transaction landed; the journal does not know
        vp.kill9()
    finally:
        vp.stop()
    vp2 = start_verifier_process(tmp_path / "d.json", tmp_path / "v")
    try:
        c2 = VerifierClient(f"127.0.0.1:{vp2.port}")
        deadline = time.monotonic() + 30
        while not c2.get_block(height=1).attested and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c2.get_block(height=1).attested
        assert [b.header.height for b in chain.get_blocks(dep.deploy_block)] == [0, 1]
    finally:
        vp2.stop()


def test_chain_down_then_up(digits, tmp_path):
    """With the chain node gone, health says NOT_SERVING and GetTip degraded within seconds, and a
    proof is refused with UNAVAILABLE (it could not land) rather than told OK; once the node is
    back, the same proof is accepted and attested."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    state = tmp_path / "anvil-state.json"
    a = AnvilProcess(state_file=state).start()
    port = a.port
    try:
        dep = deploy_fresh(a.url, digits, tmp_path / "d.json")
        node = build_node(VerifierConfig(deployment=str(tmp_path / "d.json"), data_root=str(tmp_path / "v"),
                                         receipt_wait_s=10, chain_retry_max_s=0.5, rpc_timeout_s=1), KEY, task=digits)
        server, gport = create_server(node, "127.0.0.1:0")
        node.start()
        server.start()
        client = VerifierClient(f"127.0.0.1:{gport}", retry=None)  # the refusal itself, not its retries
        health = health_pb2_grpc.HealthStub(client.channel)
        tip = client.get_tip()
        found = mine_on(digits, tip)
        a.stop()  # the chain node goes away (anvil writes its state on the way out)
        t0 = time.monotonic()
        while not client.get_tip().degraded and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        assert client.get_tip().degraded and time.monotonic() - t0 < 5
        assert wait_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
        with pytest.raises(Rejected) as e:
            submit_found(client, digits, tip, found)
        assert (e.value.code, e.value.reason) == (grpc.StatusCode.UNAVAILABLE, ServiceReason.DEGRADED)
        assert "cannot reach the chain node" in e.value.message
        a = AnvilProcess(port=port, state_file=state).start()
        deadline = time.monotonic() + 30
        while client.get_tip().degraded and time.monotonic() < deadline:
            time.sleep(0.1)
        assert wait_health(health, health_pb2.HealthCheckResponse.SERVING)
        resp = submit_found(client, digits, tip, found)
        assert resp.attested
        t = client.get_tip()
        assert t.height == 1 and not t.degraded and t.block_hash == resp.block_hash
        assert dep.client().get_tip().link == resp.block_hash
        client.close()
        server.stop(0)
        node.stop()
    finally:
        a.stop()
