"""The bridge to PoLChain.sol: anvil processes, deployment, and a typed client.

Importing the package is cheap; each name loads its module (and web3) on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "AnvilProcess": "anvil", "find_free_port": "anvil", "find_tool": "anvil", "ToolNotFound": "anvil",
    "ChainClient": "client", "ChainError": "client", "ChainUnavailable": "client", "ContractReverted": "client",
    "NotAttester": "client", "StaleParent": "client", "WrongHeight": "client",
    "AccuracyNotImproved": "client", "SabotageGuard": "client", "TipRegressed": "client",
    "IndicesNotAscending": "client", "RedrawTooEarly": "client", "RedrawNotAllowed": "client",
    "SegmentNotAllowed": "client", "get_chain_id": "client", "load_private_key": "client",
    "Deployment": "deploy", "DeploymentError": "deploy", "deploy_chain": "deploy", "load_abi": "deploy",
    "spawn": "process", "terminate": "process",
}

if TYPE_CHECKING:
    from .anvil import AnvilProcess, ToolNotFound, find_free_port, find_tool
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
        get_chain_id,
        load_private_key,
    )
    from .deploy import Deployment, DeploymentError, deploy_chain, load_abi
    from .process import spawn, terminate


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pol_chain' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = sorted(_LAZY)
