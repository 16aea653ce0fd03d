"""Pinned CPU dispatch: every consensus computation runs the same kernels on any x86-64 server.

PyTorch picks CPU kernels at run time, and each pick changes the bits of W' (docs/BENCHMARKS.md,
"Portable arithmetic"). `pin_cpu_dispatch()` fixes every switch, inside the program, to a level every
x86-64 server since about 2015 has (AVX2 with FMA), and `check_cpu_dispatch()` proves the pin holds
in this process:

| switch | pinned to | why |
|---|---|---|
| ATen capability (ATEN_CPU_CAPABILITY) | avx2 | elementwise, reductions, BatchNorm; AVX-512 servers pick avx512 |
| oneDNN (torch.backends.mkldnn) | off | JIT kernels follow the ISA; blockings follow cache sizes, threads |
| NNPACK | off | takes no-grad convolutions of 16+ images once oneDNN is off |
| MKL CNR branch (MKL_CBWR) | COMPATIBLE | the only branch MKL honours on non-Intel CPUs (AVX2 -> AUTO) |
| intra-op threads (ATen, MKL) | 1 | reductions split across threads sum in another order |

With oneDNN and NNPACK off, convolutions run as ATen's im2col plus MKL sgemm, so the arithmetic is
ATen's AVX2 kernels and MKL's COMPATIBLE branch, both fixed code on every such CPU.

ATen reads its capability once per process, at the first dispatched kernel (or the first
get_cpu_capability()); MKL fixes its branch at its first call. Importing torch runs neither, so
pinning works after `import torch` but must come before the first tensor operation: call
`pin_cpu_dispatch()` first thing in every consensus entry point. The pin is this process's alone:
the environment is restored afterwards, so child processes (a miner started by `pol demo`) keep
their own dispatch.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

TORCH_VERSION = "2.14.1"  # the kernels are torch's: another release may sum differently (pyproject pins it)
ATEN_CAPABILITY = "avx2"  # the value of ATEN_CPU_CAPABILITY; torch reports it as "AVX2"
MKL_CBWR_BRANCH = 1  # mkl_cbwr_get option: the branch only (mkl_cbwr.h)
MKL_CBWR_COMPATIBLE = 3  # SSE2 without rcpps/rsqrtps: identical on Intel and compatible CPUs
MKL_CBWR_ERR_MODE_CHANGE_FAILURE = -8  # mkl_cbwr_set after MKL already ran

REQUIRED_CPU_FLAGS = ("avx2", "fma")


class DispatchNotPinned(RuntimeError):
    """Consensus arithmetic cannot be pinned in this process; the message says what to do."""


@dataclass(frozen=True)
class DispatchReport:
    """What is in force in this process, for logs and the start-up line."""

    torch_version: str
    cpu_capability: str
    mkl_cbwr_branch: int
    mkldnn_enabled: bool
    nnpack_enabled: bool
    threads: int
    mkl_threads: int

    def describe(self) -> str:
        return (f"torch {self.torch_version}, ATen {self.cpu_capability}, MKL CNR branch {self.mkl_cbwr_branch}, "
                f"oneDNN {'on' if self.mkldnn_enabled else 'off'}, NNPACK {'on' if self.nnpack_enabled else 'off'}, "
                f"{self.threads} thread(s)")


@functools.lru_cache(maxsize=1)
def get_cpu_flags() -> frozenset[str]:
    """The kernel's view of the CPU's features (Linux); empty where /proc/cpuinfo is absent."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def process_cpu_check() -> None:
    # The pinned kernels are x86-64 machine code; another architecture runs other arithmetic.
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise DispatchNotPinned(f"consensus arithmetic needs an x86-64 CPU, this is {platform.machine()}: "
                                "verify on an x86-64 Linux server")
    flags = get_cpu_flags()
    missing = [f for f in REQUIRED_CPU_FLAGS if f not in flags]
    # Forcing AVX2 kernels on a CPU without AVX2/FMA would die of an illegal instruction.
    if missing:
        raise DispatchNotPinned(f"this CPU lacks {', '.join(missing)} (or /proc/cpuinfo is unreadable): "
                                "consensus arithmetic needs AVX2 with FMA, as every x86-64 server since 2015 has")


@functools.lru_cache(maxsize=1)
def get_mkl() -> ctypes.CDLL:
    """MKL as linked into torch (the official x86-64 wheels link it statically into libtorch_cpu)."""
    import torch

    # Another BLAS (OpenBLAS, Accelerate) sums in another order: W' would differ.
    if not torch._C.has_mkl:
        raise DispatchNotPinned("this torch build has no MKL; install the official x86-64 torch wheel from PyPI")
    lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
    for name in ("mkl_serv_cbwr_set", "mkl_serv_cbwr_get", "mkl_get_max_threads"):
        # Without these entry points the CNR branch can be neither set nor checked.
        if not hasattr(lib, name):
            raise DispatchNotPinned(f"MKL's {name} is not reachable in {lib._name}; use the official torch wheel")
    lib.mkl_serv_cbwr_set.argtypes = [ctypes.c_int]
    lib.mkl_serv_cbwr_set.restype = ctypes.c_int
    lib.mkl_serv_cbwr_get.argtypes = [ctypes.c_int]
    lib.mkl_serv_cbwr_get.restype = ctypes.c_int
    lib.mkl_get_max_threads.restype = ctypes.c_int
    return lib


def get_dispatch_report() -> DispatchReport:
    import torch

    mkl = get_mkl()
    return DispatchReport(
        torch_version=torch.__version__,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        mkl_cbwr_branch=mkl.mkl_serv_cbwr_get(MKL_CBWR_BRANCH),
        mkldnn_enabled=bool(torch._C._get_mkldnn_enabled()),
        nnpack_enabled=bool(torch._C._get_nnpack_enabled()),
        threads=torch.get_num_threads(),
        mkl_threads=mkl.mkl_get_max_threads(),
    )


def pin_cpu_dispatch() -> DispatchReport:
    """Pin every kernel-choosing switch of this process; idempotent. Raises DispatchNotPinned."""
    process_cpu_check()
    import torch

    saved = os.environ.get("ATEN_CPU_CAPABILITY")
    os.environ["ATEN_CPU_CAPABILITY"] = ATEN_CAPABILITY
    try:
        torch.backends.cpu.get_cpu_capability()  # ATen reads the variable now, once, for the process
    finally:
        if saved is None:
            del os.environ["ATEN_CPU_CAPABILITY"]
        else:
            os.environ["ATEN_CPU_CAPABILITY"] = saved
    status = get_mkl().mkl_serv_cbwr_set(MKL_CBWR_COMPATIBLE)  # takes precedence over MKL_CBWR
    # MKL fixes its branch at its first call; too late is fine only if that branch was ours.
    if status not in (0, MKL_CBWR_ERR_MODE_CHANGE_FAILURE):
        raise DispatchNotPinned(f"MKL refused the COMPATIBLE branch (mkl_cbwr_set returned {status})")
    torch._C._set_mkldnn_enabled(False)  # what torch.backends.mkldnn.enabled = False sets
    torch._C._set_nnpack_enabled(False)
    torch.set_num_threads(1)
    return check_cpu_dispatch()


def check_cpu_dispatch() -> DispatchReport:
    """Raise DispatchNotPinned unless this process runs the pinned kernels; else say what is in force."""
    process_cpu_check()
    if "torch" not in sys.modules:
        raise DispatchNotPinned("torch is not loaded yet: call pol_core.portable.pin_cpu_dispatch() first")
    r = get_dispatch_report()
    # Kernels change between releases; the pinned arithmetic is this release's.
    if r.torch_version.split("+")[0] != TORCH_VERSION:
        raise DispatchNotPinned(f"torch {r.torch_version} is installed, consensus arithmetic is that of "
                                f"torch {TORCH_VERSION}: pip install torch=={TORCH_VERSION}")
    # ATen fixes its level at the first kernel; a kernel run before the pin fixed another one.
    if r.cpu_capability != "AVX2":
        raise DispatchNotPinned(f"ATen dispatches to {r.cpu_capability}, not AVX2: call "
                                "pol_core.portable.pin_cpu_dispatch() before any tensor operation")
    # MKL fixes its branch at its first call; a matmul before the pin fixed another one.
    if r.mkl_cbwr_branch != MKL_CBWR_COMPATIBLE:
        raise DispatchNotPinned(f"MKL runs CNR branch {r.mkl_cbwr_branch}, not COMPATIBLE ({MKL_CBWR_COMPATIBLE}): "
                                "call pol_core.portable.pin_cpu_dispatch() before any matrix product")
    # oneDNN and NNPACK convolutions choose kernels and blockings per CPU model.
    if r.mkldnn_enabled or r.nnpack_enabled:
        raise DispatchNotPinned("oneDNN or NNPACK is enabled: something re-enabled it after "
                                "pol_core.portable.pin_cpu_dispatch(); leave torch.backends.mkldnn/nnpack alone")
    # Reductions split across threads sum in another order.
    if r.threads != 1 or r.mkl_threads != 1:
        raise DispatchNotPinned(f"{r.threads} ATen / {r.mkl_threads} MKL threads, not 1: something called "
                                "torch.set_num_threads after pol_core.portable.pin_cpu_dispatch()")
    return r
