"""The bridge to PoLChain.sol: anvil processes, deployment, and a typed client."""
from .anvil import AnvilProcess, find_free_port
from .client import (
    AccuracyNotImproved,
    ChainClient,
    ChainError,
    ChainUnavailable,
    ContractReverted,
    NotAttester,
    SabotageGuard,
    StaleParent,
    WrongDifficulty,
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
    "WrongDifficulty",
    "AccuracyNotImproved",
    "SabotageGuard",
    "Deployment",
    "deploy_chain",
    "genesis_for_task",
]
