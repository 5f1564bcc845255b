"""Profiling: trace a window of train steps with `jax.profiler`, and keep the compiled step's HLO beside
the trace.

A trace directory opens in TensorBoard's profile plugin / XProf (`tensorboard --logdir DIR`) or, through
its `perfetto_trace.json.gz`, in ui.perfetto.dev; `hybrid-jax profile DIR` (`hybrid_jax.analysis.profile`) reads it
back with the HLO and says where a step's time went.
"""

from __future__ import annotations

import os

import jax

class StepTracer:
    """Traces steps `start .. start + steps - 1` of a loop into `logdir`; `steps` 0 disables it.

    Call `before(step)` / `after(step, outputs)` around each step: the trace stops after the last
    traced step's outputs are ready, so its device work lands inside the trace."""

    def __init__(self, logdir: str, start: int, steps: int):
        self.logdir, self.start, self.stop_at = logdir, start, start + steps
        self.active, self.last = False, start
        if steps and "://" not in logdir:  # fail now, not after the traced steps ran
            try:
                os.makedirs(logdir, exist_ok=True)
            except OSError as e:
                raise OSError(f"cannot write a profile to {logdir}: {e.strerror or e}") from None

    def before(self, step: int) -> None:
        if step == self.start and self.stop_at > self.start:
            jax.profiler.start_trace(self.logdir, create_perfetto_trace=True)
            self.active = True

    def after(self, step: int, outputs) -> bool:
        """True when this step ended the trace."""
        self.last = step
        return step + 1 >= self.stop_at and self.close(outputs)

    def close(self, outputs=None) -> bool:
        """Stop a trace that is still running (also when a run ends or stops inside the window); True
        if there was one."""
        if not self.active:
            return False
        jax.block_until_ready(outputs)
        jax.profiler.stop_trace()
        self.active = False
        return True

    @property
    def traced(self) -> int:
        """Steps in the last trace."""
        return self.last - self.start + 1


def unfold_gpu_graphs() -> bool:
    """Before JAX's backend starts: have XLA:GPU run each kernel on its own instead of replaying them in
    command buffers (CUDA graphs), unless XLA_FLAGS already says. Inside a graph a kernel carries no HLO
    instruction, so a trace shows one `command_buffer` event per graph instead (openxla/xprof#3070);
    on an H200 that left the profile summary nothing to place. True if XLA_FLAGS changed. Nothing
    else changes on CPU and TPU, nor once a backend has started."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_gpu_enable_command_buffer" in flags:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_enable_command_buffer=".strip()
    return True
