"""`pol demo` end to end: 3 blocks, CSV against the chain, a PNG, `pol audit`, nothing left running; with one
verifier, and with a 2-of-3 quorum of verifiers (every block then needs two members' signatures on chain)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from pol_chain.deploy import Deployment
from pol_cli.report import read_csv

from .helpers import is_alive


@pytest.mark.parametrize("rules,verifiers", [("chain-bound", 1), ("paper", 1), ("chain-bound", 3)])
def test_demo_three_blocks(tmp_path, rules, verifiers):
    out = tmp_path / "results"
    dep_path = tmp_path / "deployment.json"
    demo = subprocess.Popen(
        [sys.executable, "-m", "pol_cli.main", "demo", "--blocks", "3", "--out", str(out), "--deployment", str(dep_path),
         "--workdir", str(tmp_path / "work"), "--timeout", "600", "--keep-running", "--rules", rules,
         *(["--verifiers", str(verifiers), "--threshold", "2"] if verifiers > 1 else [])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 700
    try:
        for line in demo.stdout:
            lines.append(line)
            if "keeps running" in line or time.monotonic() > deadline:
                break
        assert any("keeps running" in ln for ln in lines), "".join(lines)
        rows = read_csv(out / "blocks.csv")
        assert [int(r["height"]) for r in rows] == [0, 1, 2, 3]
        png = (out / "figure1.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

        # The CSV matches the chain on anvil, block by block.
        info = json.loads((out / "run.json").read_text())
        dep = Deployment.load(dep_path)
        blocks = dep.client().get_blocks(dep.deploy_block)
        assert len(blocks) >= 4 and dep.genesis.rules.value == rules
        client = dep.client()
        assert client.is_quorum() == (verifiers > 1)
        if verifiers > 1:  # a quorum chain takes only blocks that two of the three members signed
            assert client.get_signer_set().signer_set.threshold == 2 and len(info["verifiers"]) == 3
        if rules == "chain-bound":  # the tip never loses accuracy, and every block carries its segment root
            tips = [b.header.correct_after for b in blocks]
            assert tips == sorted(tips) and tips[-1] > tips[0]
            assert all(b.header.segment_root != b"\x00" * 32 for b in blocks[1:])
        for row, b in zip(rows, blocks):
            assert row["block_hash"] == "0x" + b.block_hash.hex()
            assert int(row["correct_after"]) == b.header.correct_after
            assert int(row["difficulty"]) == b.header.difficulty
            if int(row["height"]) > 0:
                assert row["miner"] == "0x" + b.header.miner.hex() and row["tx_hash"] == b.tx_hash
                assert int(row["correct_before"]) == b.header.correct_before
        # Every member serves the chain's models, whoever relayed each block.
        for addr in info.get("verifiers", [info["verifier"]]):
            audit = subprocess.run([sys.executable, "-m", "pol_cli.main", "audit", "--deployment", str(dep_path),
                                    "--verifier", addr], capture_output=True, text=True, timeout=300)
            assert audit.returncode == 0, addr + audit.stdout + audit.stderr
            assert audit.stdout.count(" OK ") == len(blocks) - 1
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        demo.wait(60)
    time.sleep(0.5)
    left = [pid for pid in info["pids"] if is_alive(pid)]
    assert not left, f"processes left behind: {left}"
