"""The bridge to PoLChain.sol: anvil processes, deployment, and a typed client."""
from .anvil import AnvilProcess, find_free_port
from .client import (
    AccuracyNotImproved,
    ChainClient,
    ChainError,
    ChainUnavailable,
    ContractReverted,
    IndicesNotAscending,
    NotAttester,
    RedrawNotAllowed,
    RedrawTooEarly,
    SabotageGuard,
    SegmentNotAllowed,
    StaleParent,
    TipRegressed,
    WrongHeight,
)
from .deploy import Deployment, deploy_chain, genesis_for_task

__all__ = [
    "AnvilProcess",
    "find_free_port",
    "ChainClient",
    "ChainError",
    "ChainUnavailable",
    "ContractReverted",
    "NotAttester",
    "StaleParent",
    "WrongHeight",
    "AccuracyNotImproved",
    "SabotageGuard",
    "TipRegressed",
    "IndicesNotAscending",
    "RedrawTooEarly",
    "RedrawNotAllowed",
    "SegmentNotAllowed",
    "Deployment",
    "deploy_chain",
    "genesis_for_task",
]
