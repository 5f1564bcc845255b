"""`hybrid-jax estimate --config configs/model_1b.py [--config.x=y ...] [--devices N] [--compile] [--json]`

What the numbers mean: `hybrid_jax/analysis/estimate.py`.
"""

from __future__ import annotations

import json

import jax

from hybrid_jax.analysis.estimate import GIB, estimate
from hybrid_jax.cli.parser import ArgumentParser
from hybrid_jax.parallel.distributed import offer_cpu_devices
from hybrid_jax.parallel.sharding import named_devices


def main(argv: list[str]) -> int:
    p = ArgumentParser(prog="hybrid-jax estimate",
                           description="Parameters, training FLOPs per byte and memory per device of a config, "
                                       "computed without allocating the model.",
                           example="hybrid-jax estimate --config configs/model_1b.py --config.mesh.fsdp=8")
    p.add_config()
    p.add_argument("--devices", type=int, default=0, help="devices to plan for (0: the count the mesh names, "
                   "e.g. --config.mesh.fsdp=8, else the devices JAX sees)")
    p.add_argument("--compile", action="store_true",
                   help="also compile the train step and print XLA's memory analysis")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    fv, cfg = p.parse_with_config(argv)
    n = fv.devices or named_devices(cfg.mesh)
    if fv.compile and n:  # on CPU, compile for a mesh this machine lacks (compiled, never run)
        offer_cpu_devices(n)  # if it cannot, the device check below says what is wrong
    n = n or jax.device_count()
    result = estimate(cfg, n)
    if fv.compile:
        if n != jax.device_count():
            raise ValueError(f"--compile compiles for the {jax.device_count()} devices JAX sees, but this plan "
                             f"is for {n} (the mesh or --devices)")
        from hybrid_jax.training.step import compiled_memory
        result["compiled"] = compiled_memory(cfg)
    print(json.dumps(result) if fv.json else report(result))
    return 0


def report(r: dict) -> str:
    p, m = r["params"], r["memory_per_device_bytes"]
    lines = [f"parameters: {p['total']:,} total"]
    lines += [f"  {k:<20} {v:>16,}" for k, v in p.items() if k not in ("total", "hash_tables")]
    lines.append(f"    (hash tables, in local_encoder: {p['hash_tables']:,})")
    lines.append(f"training FLOPs per byte: {r['flops_per_byte']:.4g}")
    lines.append(f"memory per device on mesh {r['mesh']} (remat {r['remat']['global_transformer']} in global):")
    lines += [f"  {k:<20} {v / GIB:>10.3f} GiB" for k, v in m.items()]
    if "compiled" in r:
        c = r["compiled"]
        lines.append("XLA memory analysis of the compiled step (per device):")
        lines += [f"  {k:<24} {v / GIB:>10.3f} GiB" for k, v in c.items() if k != "compile_s"]
        lines.append(f"compiled in {c['compile_s']:.1f} s")
    return "\n".join(lines)

