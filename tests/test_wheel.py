"""The built wheel works on its own: installed into a fresh venv, run from outside the repository,
`pol genesis` and a short `pol demo` (anvil, deployment, verifier, prover) succeed.

The venv reuses this environment's dependencies through a .pth line (torch is 5 GB), but not the
repository: the editable install's own .pth files are not processed from there, and the test
checks that the repository root is not on the installed interpreter's sys.path.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = ROOT / "contracts" / "out" / "PoLChain.sol" / "PoLChain.json"
# What a build must not see: other environments, outputs, and the generated pol.v1 code (the build
# must generate it itself).
IGNORE = shutil.ignore_patterns(".venv", "node_modules", "build", ".git", "results", ".pol", "cache", "*.egg-info",
                                "__pycache__", ".pytest_cache", "*_pb2.py", "*_pb2_grpc.py", "*_pb2.pyi", "dist")


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repo(tmp_path, digits):
    assert ARTIFACT.is_file(), "forge build first (./run.sh setup does)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
         str(wheels), str(src)], tmp_path, env)
    (wheel,) = wheels.glob("pol_dgg_chain-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                    env).stdout.strip())
    (site / "_deps_from_dev_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
        tmp_path, env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = run([str(py), "-c", "import sys, pol_core, pol.v1.verifier_pb2 as pb, pol_chain.deploy as d; "
                 "print(repr(sys.path)); print(pol_core.__file__); print(pb.__file__); print(len(d.load_abi()))"],
                elsewhere, env).stdout.splitlines()
    assert str(ROOT) not in eval(probe[0])  # noqa: S307 - our own repr of a list of strings
    assert all(str(venv) in line for line in probe[1:3]), probe  # code and generated code from the wheel
    assert int(probe[3]) > 10  # the ABI shipped as package data

    pol = str(venv / "bin" / "pol")
    genesis = run([pol, "genesis"], elsewhere, env).stdout
    assert f"task spec hash     0x{digits.with_rules('chain-bound').spec_hash.hex()}" in genesis  # the default rules

    # anvil comes from PATH here: an installed wheel has no checkout to find node_modules in.
    env_path = {**env, "PATH": f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{env.get('PATH', '')}"}
    demo = run([pol, "demo", "--blocks", "2", "--provers", "1", "--difficulty", "2", "--timeout", "300"], elsewhere,
               env_path, timeout=600)
    assert "wrote" in demo.stdout, demo.stdout + demo.stderr
    rows = list(csv.DictReader((elsewhere / "results" / "blocks.csv").open()))
    assert [int(r["height"]) for r in rows] == [0, 1, 2]
    assert (elsewhere / ".pol" / "deployment.json").is_file()
