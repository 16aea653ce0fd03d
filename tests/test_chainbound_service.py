"""The chain-bound verifier over real gRPC against a real anvil: blocks from segments, the replay store
with checkpoints (any W or W' rebuilt, also after a restart), and proofs of the wrong shape refused."""
from __future__ import annotations

import grpc
import pytest

from pol.client import Rejected, VerifierClient
from pol.v1 import verifier_pb2 as pb
from pol.wire import decode_segment
from pol_core.segment import compute_segment_root
from pol_core.types import Reason
from pol_core.weights import compute_weights_hash
from verifier_service.config import VerifierConfig
from verifier_service.journal import Journal, ModelStore
from verifier_service.metrics import Metrics
from verifier_service.node import VerifierNode
from verifier_service.server import create_server

from .helpers import KEY, MINER, deploy_fresh, mine_segment_on, submit_found, submit_segment_found


class Service:
    def __init__(self, task, dep, root):
        self.node = VerifierNode(task=task, deployment=dep, chain=dep.client(KEY), journal=Journal(root / "j.sqlite"),
                                 models=ModelStore(root / "models"), metrics=Metrics(),
                                 cfg=VerifierConfig(receipt_wait_s=20, checkpoint_every=2))
        self.server, port = create_server(self.node, "127.0.0.1:0")
        self.node.start()
        self.server.start()
        self.client = VerifierClient(f"127.0.0.1:{port}")

    def stop(self):
        self.client.close()
        self.server.stop(0)
        self.node.stop()


def test_blocks_from_segments_and_the_replay_store(anvil, digits_cb, tmp_path):
    dep = deploy_fresh(anvil.url, digits_cb, tmp_path / "d.json", difficulty=3)
    s = Service(digits_cb, dep, tmp_path / "v")
    order = list(digits_cb.genesis_state)
    try:
        blocks = []
        for i in range(3):
            tip = s.client.get_tip()
            assert tip.rules == "chain-bound" and tip.redraw_after == dep.genesis.redraw_after
            state = s.client.get_model(bytes(tip.model_hash), order)
            found = mine_segment_on(digits_cb, tip, state, seed=i)
            resp = submit_segment_found(s.client, digits_cb, tip, found)
            assert resp.attested and resp.correct_after >= tip.correct  # the monotone tip
            b = s.client.get_block(height=resp.height)
            assert decode_segment(bytes(b.segment)) == found.segment
            assert bytes(b.segment_root) == compute_segment_root(found.segment)
            assert bytes(b.weights_hash) == compute_weights_hash(found.state)  # W replayed = the miner's W
            chain_tip = dep.client().get_tip()
            assert chain_tip.link == bytes(b.link) != resp.block_hash  # the link mixes in prevrandao
            blocks.append(b)
        # Full states on disk: genesis and the checkpoint at height 2 only.
        on_disk = {p.stem for p in (tmp_path / "v" / "models").glob("*.safetensors")}
        assert on_disk == {digits_cb.genesis_hash.hex(), bytes(blocks[1].new_weights_hash).hex()}
    finally:
        s.stop()
    # A restarted verifier rebuilds every W and W' by replay from the nearest checkpoint.
    s = Service(digits_cb, dep, tmp_path / "v")
    try:
        assert s.client.get_tip().height == 3
        for b in blocks:
            for h in (bytes(b.weights_hash), bytes(b.new_weights_hash)):
                assert compute_weights_hash(s.client.get_model(h, order)) == h
        tip = s.client.get_tip()
        found = mine_segment_on(digits_cb, tip, s.client.get_model(bytes(tip.model_hash), order), seed=7)
        assert submit_segment_found(s.client, digits_cb, tip, found).height == 4
    finally:
        s.stop()


def test_proofs_of_the_wrong_shape_are_refused(anvil, digits, digits_cb, tmp_path):
    dep = deploy_fresh(anvil.url, digits_cb, tmp_path / "d.json", difficulty=3)
    s = Service(digits_cb, dep, tmp_path / "v")
    try:
        tip = s.client.get_tip()
        found = mine_segment_on(digits_cb, tip, digits_cb.genesis_state)
        cases = [
            # W sent to a chain that replays it.
            (lambda: submit_found(s.client, digits_cb, tip, found), grpc.StatusCode.FAILED_PRECONDITION,
             Reason.WRONG_RULES),
            # A truncated segment encoding.
            (lambda: s.client.submit_raw(pb.ProofHeader(task="digits-cnn", parent_hash=bytes(tip.link), height=1,
                                                        indices=list(found.indices), miner=MINER,
                                                        segment=b"\x00\x00\x00\x04\x00"), b""),
             grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_SEGMENT),
            # A step of 3 samples (not 4^j * S).
            (lambda: s.client.submit_segment("digits-cnn", bytes(tip.link), 1, [(1, 2, 3)], found.indices, MINER),
             grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_SEGMENT),
            # The block hash instead of the link: the parent a chain-bound header names is the link.
            (lambda: s.client.submit_segment("digits-cnn", bytes(tip.block_hash), 1, found.segment, found.indices,
                                             MINER), grpc.StatusCode.FAILED_PRECONDITION, Reason.STALE),
            # A redraw before its time.
            (lambda: s.client.submit_segment("digits-cnn", bytes(tip.link), 1, found.segment, found.indices, MINER,
                                             redraw=1), grpc.StatusCode.FAILED_PRECONDITION, Reason.REDRAW_TOO_EARLY),
        ]
        for send, code, reason in cases:
            with pytest.raises(Rejected) as e:
                send()
            assert (e.value.code, e.value.reason) == (code, reason), e.value
        assert submit_segment_found(s.client, digits_cb, tip, found).attested  # and the service still serves
    finally:
        s.stop()
    # A segment sent to a paper chain.
    dep = deploy_fresh(anvil.url, digits, tmp_path / "p.json", difficulty=3)
    s = Service(digits, dep, tmp_path / "p")
    try:
        tip = s.client.get_tip()
        with pytest.raises(Rejected) as e:
            s.client.submit_segment("digits-cnn", bytes(tip.link), 1, [(0, 1, 2, 3)], found.indices, MINER)
        assert (e.value.code, e.value.reason) == (grpc.StatusCode.FAILED_PRECONDITION, Reason.WRONG_RULES)
    finally:
        s.stop()
