"""A pre-norm transformer layer and the plain causal stack built from it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.config import d_ff
from hybrid_jax.model.attention import SelfAttention
from hybrid_jax.model.layers import RMSNorm, SwiGLU, rope_tables


# Cheap to recompute in the backward pass (memory-bound, fused into the kernels that need them), and in a
# scan the costly part to keep: each kept value is written to a stacked [layers, ...] buffer and copied
# back out per layer (docs/results/2026-11-27-gpu.md).
_ELEMENTWISE = {"convert_element_type", "mul", "add", "sub", "div", "neg", "exp", "logistic", "tanh", "rsqrt",
                "sqrt", "integer_pow", "square", "max", "min", "select_n", "concatenate", "broadcast_in_dim",
                "reshape", "squeeze", "expand_dims"}


def _all_but_elementwise(prim, *_, **__) -> bool:
    """Keep matmul outputs, attention (its custom VJP's residuals), reductions and gathers; recompute
    casts, norms, RoPE and activations."""
    return prim.name not in _ELEMENTWISE


REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "elementwise": _all_but_elementwise,
}


def _all_but_casts(prim, *_, **__) -> bool:
    """Keep every residual except dtype casts: inside a scan, the bf16 copies of the float32 weights
    would otherwise be saved as a stacked `[layers, ...]` residual (measured +4.5 GiB on model_1b)."""
    return prim is not jax.lax.convert_element_type_p


class TransformerLayer(nnx.Module):
    """`x + attn(norm(x))`, then `x + mlp(norm(x))`: `[batch, length, d] -> [batch, length, d]`."""

    def __init__(self, stack, dtype, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(stack.d_model, stack.norm_eps)
        self.self_attn = SelfAttention(stack, dtype, rngs)
        self.post_attention_layernorm = RMSNorm(stack.d_model, stack.norm_eps)
        self.mlp = SwiGLU(stack.d_model, d_ff(stack), dtype, rngs)
        self.remat = stack.get("remat", "none")

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))

    def __call__(self, x, cos, sin):
        if self.remat == "none":
            return self.forward(x, cos, sin)
        # Rematerialise: the backward pass recomputes what the policy does not keep.
        return nnx.remat(TransformerLayer.forward, policy=REMAT_POLICIES[self.remat])(self, x, cos, sin)


def make_layers(stack, dtype, rngs: nnx.Rngs):
    """`stack.layers` layers: an `nnx.List`, or with `stack.scan_layers` one `TransformerLayer` whose
    parameters carry a leading `[layers]` axis (`apply_layers` then runs them with one `scan`, so XLA
    compiles the layer body once instead of `layers` times)."""
    layers = [TransformerLayer(stack, dtype, rngs) for _ in range(stack.layers)]
    if not stack.get("scan_layers", False):
        return nnx.List(layers)
    # Built layer by layer and then stacked, so a scanned model starts from exactly the weights of
    # the unscanned one with the same seed (scan_layers changes how it runs, not what it computes).
    graphdef, _ = nnx.split(layers[0])
    return nnx.merge(graphdef, jax.tree.map(lambda *a: jnp.stack(a), *[nnx.split(l)[1] for l in layers]))


def is_stacked(layers) -> bool:
    return isinstance(layers, TransformerLayer)


def apply_layers(layers, x: jax.Array, cos, sin) -> jax.Array:
    """All layers of a stack (from `make_layers`) on x `[batch, length, d]`."""
    if not is_stacked(layers):
        for layer in layers:
            x = layer(x, cos, sin)
        return x

    call = TransformerLayer.__call__
    if layers.remat == "none":
        call = nnx.remat(TransformerLayer.forward, policy=_all_but_casts)

    @nnx.scan(in_axes=(0, nnx.Carry, None, None), out_axes=nnx.Carry)
    def body(layer, h, cos, sin):
        return call(layer, h, cos, sin)
    return body(layers, x, cos, sin)


def layer_list(layers) -> list:
    """The layers one by one; a stacked stack is sliced into per-layer views (for the cached decoder,
    whose per-layer KV caches differ in nothing but content)."""
    if not is_stacked(layers):
        return list(layers)
    graphdef, state = nnx.split(layers)
    n = jax.tree.leaves(state)[0].shape[0]
    return [nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state)) for i in range(n)]


def positions_for(x: jax.Array) -> jax.Array:
    """`[batch, length]` positions 0..length-1 for `x` `[batch, length, ...]`."""
    return jnp.broadcast_to(jnp.arange(x.shape[1], dtype=jnp.int32), x.shape[:2])


def stack_rope(stack, positions: jax.Array):
    """Rotary tables (cos, sin) of a stack at `positions` `[batch, length]`."""
    return rope_tables(positions, stack.d_model // stack.heads, stack.rope_theta)
