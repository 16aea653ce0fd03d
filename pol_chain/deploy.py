"""Deploy PoLChain from its compiled artifact and record the deployment for the other components."""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pol.genesis import (
    NO_ATTESTER,
    Genesis,
    GenesisError,
    signer_set_abi_tuple,
    signer_set_from_json,
    signer_set_to_json,
)

from pol_core.rulesets import RuleSet

from .anvil import CHECKOUT_ROOT
from .client import ChainClient, ChainError, errors_translated

if TYPE_CHECKING:
    from pol_core.attestation import SignerSet

# forge writes the artifact in a checkout; a built wheel carries a copy as package data.
CHECKOUT_ARTIFACT = CHECKOUT_ROOT / "contracts" / "out" / "PoLChain.sol" / "PoLChain.json"
PACKAGED_ARTIFACT = ("artifacts", "PoLChain.json")


class DeploymentError(ChainError):
    """The deployment file is missing or is not one."""


@dataclass(frozen=True)
class Deployment:
    rpc_url: str
    chain_id: int
    address: str
    deploy_block: int
    task: str
    genesis: Genesis
    # The signer set fixed at genesis (the chain's current one may differ: `client().get_signer_set()`);
    # None: a single-attester deployment.
    quorum: SignerSet | None = None

    def to_json(self) -> dict[str, Any]:
        return {"rpc_url": self.rpc_url, "chain_id": self.chain_id, "address": self.address,
                "deploy_block": self.deploy_block, "task": self.task, "genesis": self.genesis.to_json(),
                "quorum": None if self.quorum is None else signer_set_to_json(self.quorum)}

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @staticmethod
    def load(path: str | Path) -> "Deployment":
        p = Path(path)
        # Every command that talks to a chain starts from this file.
        if not p.is_file():
            raise DeploymentError(f"no deployment file at {p}")
        try:
            doc = json.loads(p.read_text())
            return Deployment(rpc_url=str(doc["rpc_url"]), chain_id=int(doc["chain_id"]), address=str(doc["address"]),
                              deploy_block=int(doc["deploy_block"]), task=str(doc["task"]),
                              genesis=Genesis.from_json(doc["genesis"]),
                              quorum=None if doc.get("quorum") is None else signer_set_from_json(doc["quorum"]))
        except (ValueError, KeyError, TypeError, GenesisError) as e:
            raise DeploymentError(f"{p} is not a deployment file: {type(e).__name__}: {e}") from e

    def client(self, private_key: str | None = None, rpc_url: str | None = None) -> ChainClient:
        return ChainClient(rpc_url or self.rpc_url, self.address, load_abi(), private_key)


def load_artifact() -> dict[str, Any]:
    """PoLChain's ABI and bytecode: from forge's output in a checkout, else from the package."""
    if CHECKOUT_ARTIFACT.is_file():
        return dict(json.loads(CHECKOUT_ARTIFACT.read_text()))
    packaged = resources.files("pol_chain").joinpath(*PACKAGED_ARTIFACT)
    if packaged.is_file():
        return dict(json.loads(packaged.read_text()))
    raise DeploymentError(f"the PoLChain artifact is missing: run `forge build` (./run.sh setup does), "
                          f"which writes {CHECKOUT_ARTIFACT}")


def load_abi() -> list[dict[str, Any]]:
    return list(load_artifact()["abi"])


def deploy_chain(rpc_url: str, private_key: str, task_name: str, genesis: Genesis,
                 quorum: SignerSet | None = None) -> Deployment:
    """Deploy PoLChain with `genesis` and return the record of it. Evaluates nothing: the genesis
    (its correct count included) is computed by the caller.

    With one attester (`genesis.attester`), or, given `quorum`, in quorum mode: then blocks need t
    signatures of the set, the genesis attester must be NO_ATTESTER, and the owner may change the set
    until it calls end_bootstrap()."""
    from eth_account import Account
    from web3 import Web3

    # The contract refuses the mix too; saying it here names the fix.
    if quorum is not None and genesis.attester != NO_ATTESTER:
        raise ChainError("a quorum deployment has no single attester: build its genesis with attester=NO_ATTESTER")
    # Paper rules have no redraw: if the verifiers' one signature per height splits over several valid
    # headers, no header reaches t and the chain halts for good (PROTOCOL §12).
    if quorum is not None and genesis.rules is not RuleSet.CHAIN_BOUND:
        raise ChainError(f"a quorum needs the chain-bound rules, not {genesis.rules.value}: without a redraw of R, "
                         "a vote split between valid blocks would halt the chain")

    art = load_artifact()
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    acct = Account.from_key(private_key)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]["object"])
    with errors_translated(rpc_url):
        tx = factory.constructor(genesis.as_abi_tuple(), signer_set_abi_tuple(quorum)).build_transaction({
            "from": acct.address,
            "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
            "chainId": w3.eth.chain_id,
        })
        tx_hash = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
        rcpt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    address = rcpt["contractAddress"]
    if address is None:
        raise ChainError(f"deployment transaction 0x{bytes(tx_hash).hex()} created no contract")
    return Deployment(rpc_url, int(w3.eth.chain_id), str(address), int(rcpt["blockNumber"]), task_name, genesis,
                      quorum)
