"""The quorum from the command line, on a real anvil: `pol chain deploy --signers/--threshold`,
`pol chain status` naming the set, and the deploy rule that keeps a quorum off the paper rules."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from pol.genesis import NO_ATTESTER, Genesis
from pol_chain.anvil import ANVIL_DEV_KEYS
from pol_chain.client import ChainError
from pol_chain.deploy import Deployment, deploy_chain
from pol_core.attestation import make_signer_set
from pol_core.verify import compute_genesis_correct

ROOT = Path(__file__).resolve().parent.parent
SIGNERS = [Account.from_key(k).address for k in ANVIL_DEV_KEYS[1:4]]


def pol(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pol_cli.main", *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), "DEPLOYER": ANVIL_DEV_KEYS[0]})


def test_deploy_with_signers_makes_a_quorum_chain_and_status_shows_it(anvil, tmp_path):
    dep_file = tmp_path / "q.json"
    r = pol("chain", "deploy", "--rpc-url", anvil.url, "--key-env", "DEPLOYER", "--signers", ",".join(SIGNERS),
            "--threshold", "2", "--deployment", str(dep_file), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    dep = Deployment.load(dep_file)
    assert dep.quorum is not None and dep.quorum.threshold == 2
    assert dep.genesis.attester == NO_ATTESTER
    client = dep.client()
    assert client.is_quorum()
    # The chain holds the set the flags named, in the contract's ascending order.
    on_chain = client.get_signer_set().signer_set
    assert on_chain == make_signer_set(SIGNERS, 2)

    r = pol("chain", "status", "--deployment", str(dep_file), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "quorum: 2 of 3 signatures per block" in r.stdout
    assert "owner bootstrap open" in r.stdout
    for a in SIGNERS:
        assert f"signer           {a}" in r.stdout


def test_default_threshold_is_a_majority(anvil, tmp_path):
    dep_file = tmp_path / "q.json"
    r = pol("chain", "deploy", "--rpc-url", anvil.url, "--key-env", "DEPLOYER", "--signers", ",".join(SIGNERS),
            "--deployment", str(dep_file), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Deployment.load(dep_file).client().get_signer_set().signer_set.threshold == 2


def test_single_attester_status_names_the_attester(anvil, tmp_path):
    dep_file = tmp_path / "s.json"
    r = pol("chain", "deploy", "--rpc-url", anvil.url, "--key-env", "DEPLOYER", "--deployment", str(dep_file),
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = pol("chain", "status", "--deployment", str(dep_file), cwd=tmp_path)
    assert f"single attester {Account.from_key(ANVIL_DEV_KEYS[0]).address}" in r.stdout


def test_deploy_chain_refuses_a_quorum_under_paper_rules(digits):
    """Paper rules have no redraw: with one signature per height, a split vote would halt the chain for
    good. The bridge refuses it before sending anything (the URL is never contacted)."""
    owner = Account.from_key(ANVIL_DEV_KEYS[0]).address
    genesis = Genesis.for_task(digits, compute_genesis_correct(digits), NO_ATTESTER, owner, difficulty=4,
                               target_block_time=10)
    with pytest.raises(ChainError, match="chain-bound"):
        deploy_chain("http://127.0.0.1:1", ANVIL_DEV_KEYS[0], "digits-cnn", genesis,
                     quorum=make_signer_set(SIGNERS, 2))
