"""Build hooks (metadata lives in pyproject.toml). A wheel must work on its own, so building one
  - generates the gRPC package pol.v1 from protos/ (grpcio-tools is a build requirement only), and
  - ships PoLChain's ABI and bytecode as package data (pol_chain/artifacts/PoLChain.json), copied
    from forge's output in contracts/out, which `./run.sh setup` (forge build) writes.
An editable install skips both: the checkout has them where the code looks first.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
FORGE_ARTIFACT = ROOT / "contracts" / "out" / "PoLChain.sol" / "PoLChain.json"


def generate_grpc(out: Path) -> None:
    spec = importlib.util.spec_from_file_location("codegen", ROOT / "scripts" / "codegen.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("scripts/codegen.py is missing")
    codegen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codegen)
    if codegen.generate(out) != 0:
        raise RuntimeError("protoc failed on protos/")


def copy_artifact(out_dir: Path) -> None:
    if not FORGE_ARTIFACT.is_file():
        raise RuntimeError(f"{FORGE_ARTIFACT} is missing: build the contracts first "
                           f"(./run.sh setup, or node_modules/.bin/forge build)")
    art = json.loads(FORGE_ARTIFACT.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "PoLChain.json").write_text(json.dumps({"abi": art["abi"], "bytecode": {"object": art["bytecode"]["object"]}}))


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        generate_grpc(Path(self.build_lib))
        copy_artifact(Path(self.build_lib) / "pol_chain" / "artifacts")


setup(cmdclass={"build_py": BuildPy})
