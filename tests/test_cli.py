"""The `pol` command line: help without torch, and one line (exit code 2) for every user error."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pol_chain.anvil import find_free_port

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = "0x" + "ab" * 20

HELP_PROBE = """
import argparse, contextlib, io, sys
from pol_cli.main import build_parser

def paths(parser, prefix):
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from paths(child, prefix + [name])

seen = []
for path in paths(build_parser(), []):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args(path + ["--help"])
    assert "usage: pol" in out.getvalue(), path
    seen.append(" ".join(path))
print(len(seen), "torch" in sys.modules, "web3" in sys.modules)
"""


def test_help_of_every_command_imports_no_torch():
    """`pol --help` and every subcommand's help must not load torch (or web3): they would take
    seconds and a gigabyte. bench/cli.py times the same commands."""
    out = subprocess.run([sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    count, torch_loaded, web3_loaded = out.stdout.split()
    assert int(count) >= 10  # pol, genesis, chain (up, deploy, status, blocks), verifier serve, mine, demo, audit
    assert (torch_loaded, web3_loaded) == ("False", "False")


RUN = """
import sys
from pol_cli.main import main
rc = main(sys.argv[1:])
print("torch loaded:", "torch" in sys.modules)
sys.exit(rc)
"""


def run_pol(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


def write_deployment(path: Path, rpc_url: str) -> None:
    from tests.test_wire import genesis_example

    path.write_text(json.dumps({"rpc_url": rpc_url, "chain_id": 31337, "address": "0x" + "cd" * 20, "deploy_block": 1,
                                "task": "digits-cnn", "genesis": genesis_example().to_json()}))


def bad_inputs(tmp: Path) -> list[tuple[str, list[str], str]]:
    dead = f"127.0.0.1:{find_free_port()}"
    write_deployment(tmp / "dep.json", f"http://{dead}")
    (tmp / "bad.toml").write_text('[verifier]\nlisen = "127.0.0.1:1"\n')
    (tmp / "typo.toml").write_text('[verifier]\nreceipt_wait_s = "soon"\n')
    return [
        ("missing deployment file", ["chain", "status", "--deployment", str(tmp / "none.json")],
         "no deployment file at"),
        ("missing deployment file (audit)", ["audit", "--deployment", str(tmp / "none.json")], "pol chain up"),
        ("malformed miner", ["mine", "--miner", "zz"], "'zz' is not an address"),
        ("short miner", ["mine", "--miner", "0x1234"], "40 hex digits"),
        ("unknown task", ["mine", "--task", "mnist", "--miner", ADDRESS], "unknown task 'mnist'"),
        ("unknown task (genesis)", ["genesis", "--task", "mnist"], "known: digits-cnn, cifar10-resnet18"),
        ("cifar without data", ["genesis", "--task", "cifar10-resnet18"], "--data-dir"),
        ("unreachable RPC URL", ["chain", "status", "--deployment", str(tmp / "dep.json")], f"http://{dead}"),
        ("unreachable RPC URL (deploy)", ["chain", "deploy", "--rpc-url", f"http://{dead}", "--key-env", "NONE"],
         "is the chain node running"),
        ("unknown TOML key", ["verifier", "serve", "--config", str(tmp / "bad.toml")], "unknown [verifier] key lisen"),
        ("TOML value of the wrong type", ["verifier", "serve", "--config", str(tmp / "typo.toml")], "receipt_wait_s"),
        ("missing TOML file", ["verifier", "serve", "--config", str(tmp / "none.toml")], "does not exist"),
        ("unreachable verifier", ["mine", "--verifier", dead, "--miner", ADDRESS, "--connect-timeout", "1"],
         f"no verifier answered at {dead} within 1s"),
        ("verifier not HOST:PORT", ["mine", "--verifier", "localhost", "--miner", ADDRESS], "not HOST:PORT"),
        ("bad device", ["mine", "--device", "tpu", "--miner", ADDRESS], "not a device"),
        ("unknown mode", ["mine", "--mode", "greedy", "--miner", ADDRESS], "'fast', 'faithful', 'guided'"),
        ("unknown mode (demo)", ["demo", "--mode", "greedy"], "invalid choice: 'greedy'"),
        ("quorum under paper rules (demo)", ["demo", "--verifiers", "3", "--rules", "paper"],
         "a quorum needs --rules chain-bound"),
        ("quorum under paper rules (deploy)", ["chain", "deploy", "--rpc-url", f"http://{dead}", "--rules", "paper",
                                               "--signers", f"{ADDRESS},0x{'cd' * 20}"], "no redraw of R"),
        ("threshold without a quorum", ["demo", "--threshold", "2"], "--threshold needs a quorum"),
        ("threshold above the set", ["demo", "--verifiers", "3", "--threshold", "4"], "exceeds the 3 signers"),
        ("too many local verifiers", ["demo", "--verifiers", "11"], "at most 10 verifiers"),
        ("signer named twice", ["chain", "deploy", "--rpc-url", f"http://{dead}", "--signers", f"{ADDRESS},{ADDRESS}"],
         "names an address twice"),
    ]


def test_every_bad_input_is_one_line_and_exit_code_2(tmp_path):
    cases = bad_inputs(tmp_path)
    for name, args, expected in cases:
        r = run_pol(args, tmp_path)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2, (name, r.returncode, r.stderr)
        assert len(err) == 1 and err[0].startswith("pol: error: "), (name, r.stderr)
        assert expected in err[0], (name, err[0])
        assert "Traceback" not in r.stdout + r.stderr, name
        # Nothing heavy was loaded to find out the input was wrong.
        assert "torch loaded: True" not in r.stdout, name


def test_debug_shows_the_traceback(tmp_path):
    r = run_pol(["--debug", "chain", "status", "--deployment", str(tmp_path / "none.json")], tmp_path)
    assert r.returncode == 2 and "Traceback" in r.stderr and "DeploymentError" in r.stderr
    r = run_pol(["chain", "status", "--debug", "--deployment", str(tmp_path / "none.json")], tmp_path)
    assert r.returncode == 2 and "Traceback" in r.stderr


@pytest.mark.parametrize("argv", [["--help"], ["mine", "--help"], ["chain", "up", "--help"]])
def test_help_exits_zero(tmp_path, argv):
    r = run_pol(argv, tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: pol")
