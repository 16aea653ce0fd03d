"""The command line's one error boundary: every failure a user can cause becomes one line,
`pol: error: <what was wrong and what to do>`, and exit code 2; a bug becomes one line and exit
code 1. `pol --debug ...` shows the traceback instead.

Exception types are looked up only in modules already imported: an exception cannot be of a type
whose module never loaded, and printing an error must not import web3 or torch.
"""
from __future__ import annotations

import sys

USER_ERROR = 2
INTERNAL_ERROR = 1


class UserError(Exception):
    """A bad argument or environment, with what to do about it in the message."""


def _type(module: str, name: str) -> type[BaseException] | None:
    m = sys.modules.get(module)
    t = getattr(m, name, None) if m is not None else None
    return t if isinstance(t, type) and issubclass(t, BaseException) else None


# (module, exception type, hint appended to its message), most specific first.
KNOWN: tuple[tuple[str, str, str], ...] = (
    ("pol_cli.errors", "UserError", ""),
    ("pol_chain.deploy", "DeploymentError",
     "start a local chain with `pol chain up` (or deploy with `pol chain deploy`), or pass --deployment FILE"),
    ("pol_chain.client", "ChainUnavailable",
     "is the chain node running (`pol chain up`)? check --rpc-url or the deployment file's rpc_url"),
    ("pol_chain.client", "ContractReverted", "the contract refused the transaction"),
    ("pol_chain.client", "ChainError", ""),
    ("pol_chain.anvil", "ToolNotFound", ""),
    ("pol.client", "VerifierUnavailable", "is `pol verifier serve` running there? check --verifier"),
    ("pol.client", "Rejected", "the verifier refused the request"),
    ("pol.genesis", "GenesisError", ""),
    ("verifier_service.config", "ConfigError", "see verifier.example.toml for the known keys and their types"),
    ("verifier_service.node", "SetupError", ""),
    ("prover.miner", "ModelMismatch", "the verifier is faulty or malicious; use another one"),
    ("pol_core.types", "ConsensusError", ""),
)


def explain(e: BaseException) -> tuple[str, int]:
    """The one-line message and the exit code for `e`."""
    for module, name, hint in KNOWN:
        t = _type(module, name)
        if t is not None and isinstance(e, t):
            return (f"{e}; {hint}" if hint else str(e)), USER_ERROR
    if isinstance(e, OSError):  # a port in use, a file that cannot be read or written
        return str(e), USER_ERROR
    return (f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback, "
            f"and report it)"), INTERNAL_ERROR
