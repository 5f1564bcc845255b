"""`hybrid_jax.analysis.profile` on GPU kernel names: a fusion's kernel maps back to its HLO instruction, and
library kernels (cuBLAS, cuDNN, copies) get a kind from their names."""

import os

from hybrid_jax.analysis import profile as summary
from hybrid_jax.training import profiling

HLO = """HloModule jit_step, entry_computation_layout={(f32[4]{0})->f32[4]{0}}

%fused_dot (p0: f32[4]) -> f32[4] {
  %p0 = f32[4]{0} parameter(0)
  ROOT %dot.1 = f32[4]{0} dot(%p0, %p0), lhs_contracting_dims={}, rhs_contracting_dims={}
}

%fused_add (p1: f32[4]) -> f32[4] {
  %p1 = f32[4]{0} parameter(0)
  ROOT %add.1 = f32[4]{0} add(%p1, %p1)
}

ENTRY %main (a: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  %gemm_fusion_dot.2 = f32[4]{0} fusion(%a), kind=kCustom, calls=%fused_dot
  %loop_add_fusion.7 = f32[4]{0} fusion(%gemm_fusion_dot.2), kind=kLoop, calls=%fused_add, control-predecessors={%gemm_fusion_dot.2}
  ROOT %dot.3 = f32[4]{0} dot(%loop_add_fusion.7, %a), lhs_contracting_dims={}, rhs_contracting_dims={}
}
"""


def test_gpu_kernels_map_to_instructions_and_kinds():
    info = summary.instructions(HLO)
    assert info["gemm_fusion_dot.2"]["kind"] == "matmul"
    assert info["loop_add_fusion.7"]["kind"] == "other"  # reads a matmul's output, is none itself
    assert info["dot.3"]["kind"] == "matmul"  # an unfused dot (XLA:CPU's Eigen kernel-gradient dots)
    times = {"loop_add_fusion_7": 1.0, "gemm_fusion_dot_2": 2.0, "nvjet_sm90_tst_128x128_64x6": 4.0,
             "cudnn_generated_fort_native_sdpa_sm90_flash_fprop": 8.0, "memcpy128": 16.0, "other_kernel": 32.0}
    named = summary.by_instruction(times, info)
    assert named["loop_add_fusion.7"] == 1.0 and named["gemm_fusion_dot.2"] == 2.0 and named["memcpy128"] == 16.0
    assert dict(summary.kind_table(named, info, per=2.0)) == {
        "other": 16.5, "matmul": 3.0, "attention": 4.0, "copy / transpose": 8.0}
    # What a summary lists as matched to nothing: neither an instruction nor a known library kernel.
    assert summary.unplaced(named, info, per=2.0) == [("other_kernel", 16.0)]


def test_unfold_gpu_graphs_adds_the_flag_once_and_keeps_a_users_choice(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert profiling.unfold_gpu_graphs()
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 --xla_gpu_enable_command_buffer="
    assert not profiling.unfold_gpu_graphs()  # already off: unchanged
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_enable_command_buffer=FUSION")
    assert not profiling.unfold_gpu_graphs() and os.environ["XLA_FLAGS"] == "--xla_gpu_enable_command_buffer=FUSION"
    monkeypatch.delenv("XLA_FLAGS")
    assert profiling.unfold_gpu_graphs() and os.environ["XLA_FLAGS"] == "--xla_gpu_enable_command_buffer="
