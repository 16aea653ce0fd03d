"""Cross-dispatch: the genesis and a short chain (3 updates, 4 evaluations of digits-cnn), recomputed
in one process per dispatch level, with every switch this machine can force set against the pin,
agree bit for bit when pinned, and with the committed vector (computed on another day, perhaps on
another CPU); unpinned they do not all agree, so the pin is what makes them agree. The full matrix of
levels is bench/dispatch_matrix.py's (docs/BENCHMARKS.md, "Portable arithmetic")."""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

VECTOR = Path(__file__).parent / "vectors" / "portable_chain.json"
SWITCHES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS")

# What a user's shell may set. avx512 is absent: this machine has no AVX-512 (forcing it is SIGILL).
LEVELS = {
    "native": {},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "hostile-shell": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "AVX2,STRICT",
                      "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
}


def run_python(args: list[str], level: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env.update(level)
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


def probe(level: dict[str, str], *extra: str) -> dict:
    out = run_python(["-m", "pol_core.portable_probe", "--steps", "3", *extra], level)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def consensus_bits(r: dict) -> list:
    """Everything consensus depends on: weights hashes, counts and logits, genesis included."""
    return [(c["weights"], c["correct"], c["logits"]) for c in r["chain"]]


@pytest.fixture(scope="module")
def runs():
    jobs = [(name, level, ()) for name, level in LEVELS.items()]
    jobs += [(name + " unpinned", level, ("--unpinned", "--mkldnn", "on", "--nnpack", "on"))
             for name, level in LEVELS.items() if name in ("native", "aten-default")]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda j: probe(j[1], *j[2]), jobs))
    return {name: r for (name, _, _), r in zip(jobs, results)}


def test_pinned_chain_is_identical_under_every_level_and_matches_the_vector(runs):
    pinned = {n: r for n, r in runs.items() if r["pinned"]}
    assert len(pinned) == len(LEVELS)
    for name, r in pinned.items():
        # The pin overrode whatever the level set.
        assert r["in_force"] == {"capability": "AVX2", "mkl_cbwr_branch": 3, "mkldnn": False, "nnpack": False,
                                 "threads": 1}, name
    chains = {n: consensus_bits(r) for n, r in pinned.items()}
    assert len({json.dumps(c) for c in chains.values()}) == 1, chains
    vector = json.loads(VECTOR.read_text())
    # The committed vector was computed on another day, maybe another machine: the same bits.
    assert consensus_bits(next(iter(pinned.values()))) == consensus_bits(vector)


def test_unpinned_levels_differ_so_the_pin_is_what_makes_them_agree(runs):
    unpinned = {n: r for n, r in runs.items() if not r["pinned"]}
    assert unpinned["native unpinned"]["in_force"]["capability"] == "AVX2"
    assert unpinned["aten-default unpinned"]["in_force"]["capability"] == "DEFAULT"
    distinct = {json.dumps(consensus_bits(r)) for r in unpinned.values()}
    assert len(distinct) >= 2, "every unpinned level computed the same bits: this test could not fail"
    # Not only W': the native unpinned chain is not the pinned one either.
    assert consensus_bits(unpinned["native unpinned"]) != consensus_bits(runs["native"])


def test_portable_genesis_holds_even_unpinned_where_torch_init_does_not(runs):
    assert len({r["chain"][0]["weights"] for r in runs.values()}) == 1
    torch_init = {r["genesis_torch_init"] for r in runs.values()}
    assert len(torch_init) == 2  # ATen's DEFAULT level changes torch's own initialisation


def test_pin_is_this_process_alone_and_overrides_the_shell():
    code = ("import os, subprocess, sys\n"
            "from pol_core.portable import pin_cpu_dispatch\nprint(pin_cpu_dispatch().cpu_capability)\n"
            "print(os.environ['ATEN_CPU_CAPABILITY'])\n"
            "child = 'import torch; print(torch.backends.cpu.get_cpu_capability())'\n"
            "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True).stdout.strip())")
    out = run_python(["-c", code], {"ATEN_CPU_CAPABILITY": "default"})
    assert out.stdout.split() == ["AVX2", "default", "DEFAULT"], out.stderr


def test_pin_refuses_after_a_kernel_ran_at_another_level():
    code = ("import torch; (torch.ones(64) * 2).sum()\n"
            "from pol_core.portable import pin_cpu_dispatch\npin_cpu_dispatch()")
    out = run_python(["-c", code], {"ATEN_CPU_CAPABILITY": "default"})
    assert out.returncode != 0
    assert "DispatchNotPinned: ATen dispatches to DEFAULT, not AVX2" in out.stderr


def test_check_refuses_a_matmul_before_the_pin_and_threads_changed_after():
    code = ("import torch; torch.ones(8, 8) @ torch.ones(8, 8)\n"
            "from pol_core.portable import DispatchNotPinned, check_cpu_dispatch, pin_cpu_dispatch\n"
            "try:\n    pin_cpu_dispatch()\nexcept DispatchNotPinned as e:\n    print('refused:', e)\n")
    out = run_python(["-c", code], {})
    assert "refused: MKL runs CNR branch 1, not COMPATIBLE" in out.stdout, out.stderr
    code = ("from pol_core.portable import DispatchNotPinned, check_cpu_dispatch, pin_cpu_dispatch\n"
            "import torch\npin_cpu_dispatch(); pin_cpu_dispatch(); torch.backends.mkldnn.enabled = True\n"
            "try:\n    check_cpu_dispatch()\nexcept DispatchNotPinned as e:\n    print('refused:', e)\n"
            "torch.backends.mkldnn.enabled = False; torch.set_num_threads(2)\n"
            "try:\n    check_cpu_dispatch()\nexcept DispatchNotPinned as e:\n    print('refused:', e)\n")
    out = run_python(["-c", code], {})
    assert "refused: oneDNN or NNPACK is enabled" in out.stdout, out.stderr
    assert "refused: 2 ATen / 2 MKL threads, not 1" in out.stdout, out.stderr


def test_pinned_torch_release_is_the_one_the_project_installs():
    from pol_core.portable import TORCH_VERSION

    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert f'"torch=={TORCH_VERSION}"' in pyproject
