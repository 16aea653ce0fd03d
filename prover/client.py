"""The prover's side of the gRPC API: tip, models, proof submission."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import grpc
import torch

from pol.v1 import verifier_pb2 as pb
from pol.v1 import verifier_pb2_grpc as pb_grpc
from verifier_service.journal import decode_state, encode_state

CHUNK = 1 << 20


@dataclass(frozen=True)
class Rejected(Exception):
    code: grpc.StatusCode
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"


def reason_of(err: grpc.RpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "pol-reason":
            return value
    return err.code().name


class VerifierClient:
    def __init__(self, target: str, client_id: str | None = None):
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 8 << 20)])
        self.stub = pb_grpc.VerifierStub(self.channel)
        self.metadata = (("pol-client-id", client_id),) if client_id else ()

    def close(self) -> None:
        self.channel.close()

    def get_tip(self, timeout: float = 10) -> pb.Tip:
        return self.stub.GetTip(pb.GetTipRequest(), timeout=timeout)

    def watch_tip(self) -> Iterator[pb.Tip]:
        """A cancellable stream: call .cancel() on the returned iterator to stop it."""
        return self.stub.WatchTip(pb.GetTipRequest())

    def get_model_bytes(self, model_hash: bytes, timeout: float = 120) -> bytes:
        return b"".join(c.data for c in self.stub.GetModel(pb.GetModelRequest(model_hash=model_hash), timeout=timeout))

    def get_model(self, model_hash: bytes, order: list[str]) -> dict[str, torch.Tensor]:
        return decode_state(self.get_model_bytes(model_hash), order)

    def get_block(self, *, block_hash: bytes | None = None, height: int | None = None) -> pb.Block:
        req = pb.GetBlockRequest(block_hash=block_hash) if block_hash is not None else pb.GetBlockRequest(height=height)
        return self.stub.GetBlock(req)

    def submit_raw(self, header: pb.ProofHeader, blob: bytes, timeout: float = 300) -> pb.SubmitProofResponse:
        def messages():
            yield pb.SubmitProofRequest(header=header)
            for i in range(0, len(blob), CHUNK):
                yield pb.SubmitProofRequest(weights_chunk=blob[i : i + CHUNK])

        try:
            return self.stub.SubmitProof(messages(), timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise Rejected(e.code(), reason_of(e), e.details() or "") from e

    def submit(self, task: str, parent_hash: bytes, height: int, indices, weights_hash: bytes,
               state: Mapping[str, torch.Tensor], miner: bytes, claimed_new_weights_hash: bytes = b"",
               claimed_correct: tuple[int, int] | None = None, timeout: float = 300) -> pb.SubmitProofResponse:
        blob = encode_state(state)
        header = pb.ProofHeader(task=task, parent_hash=parent_hash, height=height, indices=list(indices),
                                weights_hash=weights_hash, miner=miner, weights_size=len(blob),
                                claimed_new_weights_hash=claimed_new_weights_hash)
        if claimed_correct is not None:
            header.claimed_correct_before, header.claimed_correct_after = claimed_correct
        return self.submit_raw(header, blob, timeout)
