"""`keep_freed_memory`: a large block freed and allocated again is not page-faulted in anew."""

import os
import subprocess
import sys

import pytest

# Allocates, touches and frees a 160 MB block (as XLA:CPU does with a step's temporary buffer) twice,
# and prints the minor page faults of the second round.
CHILD = """
import ctypes, resource, sys, threading
from hybrid_jax.parallel.host_memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
size = 160 << 20
def touch():
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
def rounds(out):  # on a thread of its own, as XLA's executions are
    touch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    touch()
    out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
out = []
t = threading.Thread(target=rounds, args=(out,))
t.start()
t.join()
print(kept, out[0])
"""


def faults(mode: str, **env):
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_freed_block_is_reused_without_page_faults():
    kept, kept_faults = faults("keep", JAX_PLATFORMS="cpu")
    _, default_faults = faults("default")
    assert kept
    # glibc unmapped the block and mapped a new one: 40,960 faults of 4 KiB pages (80 of 2 MiB huge pages)
    assert default_faults >= 80
    assert kept_faults * 10 < default_faults


@pytest.mark.parametrize("env", [{"HYBRID_JAX_HOST_MALLOC": "default"}, {"JAX_PLATFORMS": "cuda,cpu"}])
def test_left_alone_when_asked_or_off_cpu(env):
    assert faults("keep", **env)[0] is False
