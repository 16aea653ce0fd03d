"""Each task's published identity (docs/PROTOCOL.md §1): what an independent implementation must
reproduce before it verifies a single block. tests/test_conformance.py checks these against the
loaded tasks; digits-cnn refuses to load if scikit-learn's bundled data hash to anything else.

Real CIFAR-10's fingerprint (and so its spec hash) is not published yet: this project's machines
cannot download the dataset. The genesis weights and |W| depend on the architecture alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..types import Hash32


def _h(hex_: str) -> Hash32:
    return Hash32(bytes.fromhex(hex_))


@dataclass(frozen=True)
class PublishedTask:
    genesis_weights_hash: Hash32  # pol-genesis-init/1 of the architecture and init_seed
    num_params: int  # |W|
    dataset_fingerprint: Hash32 | None  # None: the data are the user's (no fixed copy to hash here)
    spec_hashes: Mapping[str, Hash32]  # rule set -> task spec hash (pol-task-spec/2)


PUBLISHED: Mapping[str, PublishedTask] = {
    "digits-cnn": PublishedTask(
        genesis_weights_hash=_h("9fa8768524d6e2e2f4610bf667ffd06e06022cdd52de636182f256d601e32637"),
        num_params=3842,
        dataset_fingerprint=_h("7fd85c9b06e1a76dd43508d35cc738f976c6c27cb62f4dfcfd4368c79a50ae69"),
        spec_hashes={
            "chain-bound": _h("f2209a4d4b798ae05ba76905086d8b18cceda76bf94dba8ee11189e6e82025d5"),
            "paper": _h("a65fe47bf690b85b4ecb5b2913f9135e323652a8b020f8ebc13ebc262122f209"),
        },
    ),
    "cifar10-resnet18": PublishedTask(
        genesis_weights_hash=_h("98b8d93d58b0eb0588fa0833a188e3a9cb5a5b3f083c6db5f26e2000cb94fa12"),
        num_params=11_173_962,
        dataset_fingerprint=None,
        spec_hashes={},
    ),
}
