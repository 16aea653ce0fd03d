"""Generate the one gRPC package, `pol.v1`, from protos/. Generated files are never edited.

    .venv/bin/python scripts/codegen.py     # into the checkout (./run.sh setup runs it)

setup.py calls `generate(build_dir)` when a wheel is built, so the wheel carries the same code.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(out: Path) -> int:
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos").rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    rc = int(protoc.main(["protoc", f"-I{include}", f"-I{ROOT / 'protos'}", f"--python_out={out}", f"--pyi_out={out}",
                          f"--grpc_python_out={out}", *protos]))
    if rc != 0:
        print("protoc failed", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(generate(ROOT))
