"""`python -m hybrid_jax.estimate --config configs/model_1b.py [--config.x=y ...] [--devices N] [--compile] [--json]`

Before renting a pod: exact parameter counts per component (from `nnx.eval_shape`: nothing is
allocated), training FLOPs per byte (`hybrid_jax.flops`), and memory per device for the configured
mesh and batch. Memory: parameters, gradients and the two Adam moments are float32 and sharded as
`hybrid_jax.sharding` shards them (exact); activations are an estimate per transformer layer and
token, with `d` the width, `f` the MLP width, `h` heads, `c` the attention context and `e` the compute
dtype's bytes: without remat a layer keeps about `e·(6d + 3f + 2·h·c)` bytes per token (norm
outputs, q/k/v/attention output, the three MLP activations, scores and softmax); with `full` remat only
its input, `e·d`; with `dots_saveable` the matmul outputs, `e·(5d + 3f)`; with `elementwise` those and
the attention output, `e·(6d + 3f)`. `--compile` compiles the real
train step on `--devices` devices and prints XLA's own `memory_analysis()` beside the estimate.
"""

from __future__ import annotations

import json
import math
import sys
import time

import jax

from hybrid_jax import cli
from hybrid_jax.config import d_ff, validate
from hybrid_jax.distributed import offer_cpu_devices
from hybrid_jax.flops import flops_per_sequence
from hybrid_jax.model.patching import num_slots
from hybrid_jax.sharding import AXES, mesh_shape, named_devices, path_names, spec_for

STACKS = ("entropy_model", "local_encoder", "global_transformer", "local_decoder")
GIB = 2 ** 30


def param_counts(model_cfg) -> dict:
    """Exact parameter counts: per component, the hash tables, and the total."""
    from hybrid_jax.checkpoint import abstract_model, param_tree

    tree = param_tree(abstract_model(model_cfg))
    count = lambda t: sum(math.prod(x.shape) for x in jax.tree.leaves(t))  # noqa: E731
    out = {name: count(tree[name]) for name in tree}
    out["hash_tables"] = count(tree["local_encoder"].get("hash_embed", {}))
    out["total"] = count(tree)
    return out


class _MeshShape:
    """What `spec_for` reads of a mesh (`.shape`), without devices."""

    def __init__(self, sizes):
        self.shape = dict(zip(AXES, sizes))


def sharded_param_bytes(model_cfg, sizes) -> int:
    """float32 bytes of one device's shard of every parameter on a mesh of `sizes` (data, fsdp, tensor)."""
    from hybrid_jax.checkpoint import abstract_model, param_tree

    mesh = _MeshShape(sizes)
    total = 0
    for path, x in jax.tree_util.tree_flatten_with_path(param_tree(abstract_model(model_cfg)))[0]:
        spec = spec_for(path_names(path), x.shape, mesh)
        shards = math.prod(mesh.shape[a] for a in spec if a)
        total += 4 * math.prod(x.shape) // shards
    return total


def activation_bytes(model_cfg, tokens_per_device: int, seq_len: int, tensor: int) -> dict:
    """Estimated activation bytes per device kept for the backward pass, per stack (see module doc)."""
    e = 2 if model_cfg.dtype == "bfloat16" else 4
    slots = num_slots(model_cfg.patching, seq_len)
    out = {}
    for name in STACKS:
        s = model_cfg[name]
        if name == "entropy_model" and not (s.trained_online or model_cfg.patching.mode == "entropy"):
            continue
        positions = tokens_per_device * (slots / seq_len if name == "global_transformer" else 1)
        ctx = min(s.window, slots if name == "global_transformer" else seq_len) if s.window else \
            (slots if name == "global_transformer" else seq_len)
        per_token = {"none": 6 * s.d_model + 3 * d_ff(s) + 2 * s.heads * ctx,
                     "full": s.d_model, "dots_saveable": 5 * s.d_model + 3 * d_ff(s),
                     "elementwise": 6 * s.d_model + 3 * d_ff(s)}[s.remat]
        if s.remat != "full":
            per_token = per_token / tensor + s.d_model  # tensor parallelism splits heads and MLP
        out[name] = int(e * per_token * positions * s.layers)
    return out


def estimate(cfg, n_devices: int) -> dict:
    validate(cfg)
    sizes = mesh_shape(cfg.mesh, n_devices)
    t, seq = cfg.train, cfg.data.seq_len
    counts = param_counts(cfg.model)
    p_bytes = sharded_param_bytes(cfg.model, sizes)
    tokens = t.batch_size // t.grad_accum * seq / (sizes[0] * sizes[1])
    acts = activation_bytes(cfg.model, int(tokens), seq, sizes[2])
    memory = {"params": p_bytes, "grads": p_bytes, "adam_moments": 2 * p_bytes,
              "activations": sum(acts.values())}
    memory["total"] = sum(memory.values())
    return {"params": counts, "flops_per_byte": flops_per_sequence(cfg.model, seq) / seq,
            "mesh": dict(zip(AXES, sizes)), "memory_per_device_bytes": memory,
            "activations_per_stack_bytes": acts,
            "remat": {name: cfg.model[name].remat for name in STACKS}}


def compiled_memory(cfg) -> dict:
    """XLA's memory analysis of the compiled train step on the current devices (bytes per device)."""
    from hybrid_jax.sharding import make_mesh
    from hybrid_jax.step import compile_steps

    steps = compile_steps(cfg, make_mesh(cfg.mesh))
    batch = jax.ShapeDtypeStruct((cfg.train.batch_size, cfg.data.seq_len + 1), jax.numpy.int32,
                                 sharding=steps.batch_sharding)
    state = {**steps.abstract, "step": jax.ShapeDtypeStruct((), jax.numpy.int32,
                                                            sharding=steps.state_shardings["step"])}
    t0 = time.perf_counter()
    mem = steps.train.lower(state, batch).compile().memory_analysis()
    compile_s = time.perf_counter() - t0
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes")
    return {**{f: int(getattr(mem, f)) for f in fields}, "compile_s": compile_s}


def main(argv=None) -> int:
    p = cli.ArgumentParser(prog="hybrid-jax estimate",
                           description="Parameters, training FLOPs per byte and memory per device of a config, "
                                       "computed without allocating the model.",
                           example="hybrid-jax estimate --config configs/model_1b.py --config.mesh.fsdp=8")
    p.add_config()
    p.add_argument("--devices", type=int, default=0, help="devices to plan for (0: the count the mesh names, "
                   "e.g. --config.mesh.fsdp=8, else the devices JAX sees)")
    p.add_argument("--compile", action="store_true",
                   help="also compile the train step and print XLA's memory analysis")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    fv, cfg = p.parse_with_config(list(sys.argv if argv is None else argv)[1:])
    n = fv.devices or named_devices(cfg.mesh)
    if fv.compile and n:  # on CPU, compile for a mesh this machine lacks (compiled, never run)
        offer_cpu_devices(n)  # if it cannot, the device check below says what is wrong
    n = n or jax.device_count()
    result = estimate(cfg, n)
    if fv.compile:
        if n != jax.device_count():
            raise ValueError(f"--compile compiles for the {jax.device_count()} devices JAX sees, but this plan "
                             f"is for {n} (the mesh or --devices)")
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


if __name__ == "__main__":
    sys.exit(cli.run(main))
