"""Which switches change consensus bits: every dispatch level this machine can force, unpinned and pinned.

    .venv/bin/python bench/dispatch_matrix.py [--tasks digits-cnn cifar10-resnet18] [--jobs 2]

Each row is one process of `python -m pol_core.portable_probe`, started with the row's environment
(as a user's shell would set it) and, unpinned, the row's in-process flags. Hash columns show a
number per distinct value (legend below each table), so equal numbers mean equal bits.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

ENGINES = {  # name -> (ONEDNN_MAX_CPU_ISA, mkldnn flag, nnpack flag)
    "oneDNN SSE41": ("SSE41", "on", "on"),
    "oneDNN AVX": ("AVX", "on", "on"),
    "oneDNN AVX2": ("AVX2", "on", "on"),
    "no oneDNN, NNPACK": (None, "off", "on"),
    "no oneDNN, no NNPACK": (None, "off", "off"),
}


@dataclass(frozen=True)
class Row:
    aten: str | None
    engine: str
    cbwr: str | None
    threads: int
    pinned: bool
    extra_env: tuple[tuple[str, str], ...] = field(default=())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")}
        isa = ENGINES[self.engine][0]
        for k, v in (("ATEN_CPU_CAPABILITY", self.aten), ("ONEDNN_MAX_CPU_ISA", isa), ("MKL_CBWR", self.cbwr)):
            if v is not None:
                env[k] = v
        env.update(dict(self.extra_env))
        return env

    def args(self) -> list[str]:
        if self.pinned:
            return []
        _, mkldnn, nnpack = ENGINES[self.engine]
        return ["--unpinned", "--mkldnn", mkldnn, "--nnpack", nnpack, "--threads", str(self.threads)]


def build_rows(task: str) -> list[Row]:
    if task == "digits-cnn":
        unpinned = [Row(a, e, c, t, False) for a, e, c, t in
                    itertools.product(("default", "avx2"), ENGINES, (None, "AVX2", "COMPATIBLE"), (1, 2))]
    else:  # a ResNet-18 process takes ~20x longer: one switch at a time from the native setting
        unpinned = [Row("avx2", "oneDNN AVX2", None, 1, False), Row("avx2", "oneDNN AVX2", None, 2, False),
                    Row("default", "oneDNN AVX2", None, 1, False), Row("avx2", "oneDNN SSE41", None, 1, False),
                    Row("avx2", "no oneDNN, NNPACK", None, 1, False), Row("avx2", "no oneDNN, no NNPACK", None, 1, False),
                    Row("avx2", "no oneDNN, no NNPACK", "COMPATIBLE", 1, False),
                    Row("default", "no oneDNN, no NNPACK", "COMPATIBLE", 1, False)]
    pinned = [
        Row(None, "oneDNN AVX2", None, 1, True),
        Row("default", "oneDNN SSE41", "AVX2", 1, True),
        Row("avx2", "oneDNN AVX", None, 1, True, (("MKL_ENABLE_INSTRUCTIONS", "SSE4_2"),)),
        Row("default", "no oneDNN, NNPACK", "AVX2,STRICT", 1, True, (("OMP_NUM_THREADS", "2"),)),
    ]
    return unpinned + (pinned if task == "digits-cnn" else pinned[:2])


def run_row(row: Row, task: str, cifar_dir: str | None, cifar_test: int) -> dict:
    cmd = [sys.executable, "-m", "pol_core.portable_probe", "--task", task, *row.args()]
    cmd += ["--steps", "3" if task == "digits-cnn" else "1"]
    if cifar_dir:
        cmd += ["--cifar-dir", cifar_dir, "--cifar-test", str(cifar_test)]
    out = subprocess.run(cmd, env=row.env(), capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": f"exit {out.returncode}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(task: str, rows: list[Row], results: list[dict]) -> str:
    cols = [("genesis (torch init)", lambda r: r["genesis_torch_init"]),
            ("genesis (portable)", lambda r: r["chain"][0]["weights"]),
            ("eval W0", lambda r: r["chain"][0]["logits"]),
            ("W' step 1", lambda r: r["chain"][1]["weights"]),
            ("eval W1", lambda r: r["chain"][1]["logits"]),
            (f"W' step {len(results[0]['chain']) - 1}", lambda r: r["chain"][-1]["weights"]),
            ("correct W0..Wn", lambda r: "/".join(str(c["correct"]) for c in r["chain"]))]
    if len(results[0]["chain"]) == 2:  # one step: the last-step column would repeat step 1
        del cols[5]
    letters: list[dict[str, str]] = [{} for _ in cols]
    lines = [f"{task}: one process per row",
             "| ATEN_CPU_CAPABILITY | conv engine (ONEDNN_MAX_CPU_ISA) | MKL_CBWR | threads | pinned | "
             + " | ".join(c[0] for c in cols) + " |",
             "|" + "---|" * (5 + len(cols))]
    for row, res in zip(rows, results):
        extra = "".join(f", {k}={v}" for k, v in row.extra_env)
        head = [row.aten or "(unset)", row.engine, (row.cbwr or "(unset)") + extra,
                "1" if row.pinned else str(row.threads), "**yes**" if row.pinned else "no"]
        if "error" in res:
            lines.append("| " + " | ".join(head) + f" | {res['error']} |" + " |" * (len(cols) - 1))
            continue
        cells = []
        for i, (name, get) in enumerate(cols):
            v = get(res)
            if name.startswith("correct"):
                cells.append(v)
                continue
            cells.append(letters[i].setdefault(v, str(len(letters[i]) + 1)))
        lines.append("| " + " | ".join(head + cells) + " |")
    lines.append("")
    for (name, _), legend in zip(cols, letters):
        if legend:
            lines.append(f"- {name}: " + ", ".join(f"{l} = {v[:10]}" for v, l in legend.items()))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["digits-cnn", "cifar10-resnet18"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cifar-test", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cifar_dir = None
        if "cifar10-resnet18" in args.tasks:
            from pol_core.tasks.cifar import write_cifar_like

            cifar_dir = str(write_cifar_like(tmp, n_train_per_file=16, n_test=args.cifar_test))
        for task in args.tasks:
            rows = build_rows(task)
            with ThreadPoolExecutor(args.jobs) as pool:
                results = list(pool.map(lambda r: run_row(r, task, cifar_dir if task != "digits-cnn" else None,
                                                          args.cifar_test), rows))
            print(render(task, rows, results), flush=True)
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
