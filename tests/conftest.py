import os
import sys

# Fake CPU devices for sharding tests; must be set before jax is imported anywhere.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# LLVM's cheapest optimisation level: the suite is mostly compiling (the tests' programs are tiny), and
# this made test files ~30 % faster end to end; XLA's own HLO passes still run.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
                                   "--xla_llvm_disable_expensive_passes=true")
# Most of the suite's time is XLA compiling: the tiny models' steps and, in eager code, every primitive
# for every shape. Both pytest workers and the subprocesses that tests start (train, generate) compile
# many of the same programs, so they share JAX's persistent cache; even sub-second compiles are kept.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# No dataset can be downloaded here or in CI: lm-eval's tasks read local files or Hugging Face's cache.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The test helpers, and the repository root for `configs` and `benchmarks` (which are not installed).
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hybrid_jax.parallel.host_memory import keep_freed_memory  # noqa: E402

# As in `train` and `bench`: without it every step and every compile page-faults its buffers in anew,
# which made the in-process training tests ~30 % slower.
keep_freed_memory()
