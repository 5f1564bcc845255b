"""Before renting a pod (`hybrid-jax estimate`): exact parameter counts per component (from `nnx.eval_shape`: nothing is
allocated), training FLOPs per byte (`hybrid_jax.analysis.flops`), and memory per device for the configured
mesh and batch. Memory: parameters, gradients and the two Adam moments are float32 and sharded as
`hybrid_jax.parallel.sharding` shards them (exact); activations are an estimate per transformer layer and
token, with `d` the width, `f` the MLP width, `h` heads, `c` the attention context and `e` the compute
dtype's bytes: without remat a layer keeps about `e·(6d + 3f + 2·h·c)` bytes per token (norm
outputs, q/k/v/attention output, the three MLP activations, scores and softmax); with `full` remat only
its input, `e·d`; with `dots_saveable` the matmul outputs, `e·(5d + 3f)`; with `elementwise` those and
the attention output, `e·(6d + 3f)`. `--compile` compiles the real
train step on `--devices` devices and prints XLA's own `memory_analysis()` beside the estimate.
"""

from __future__ import annotations

import math

import jax

from hybrid_jax.analysis.flops import flops_per_sequence
from hybrid_jax.config import d_ff, validate
from hybrid_jax.model.patching import num_slots
from hybrid_jax.parallel.sharding import AXES, mesh_shape, path_names, spec_for

STACKS = ("entropy_model", "local_encoder", "global_transformer", "local_decoder")
GIB = 2 ** 30


def param_counts(model_cfg) -> dict:
    """Exact parameter counts: per component, the hash tables, and the total."""
    from hybrid_jax.model.params import abstract_model, param_tree

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
    from hybrid_jax.model.params import abstract_model, param_tree

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
