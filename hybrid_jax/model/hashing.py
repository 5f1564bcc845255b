"""Hash n-gram ids for the local encoder, bit-exact with BLT's int64 rolling polynomial hash.

BLT hashes the window of `g` ids ending at each position (left-padded with 0) as
`sum_i id[t-g+1+i] * prime^i` in wrapping signed 64-bit arithmetic, then takes the floor modulo
`vocab`. JAX runs without 64-bit ints by default, so the 64-bit value is kept as four 16-bit limbs
in uint32 lanes and reduced modulo `vocab` a few bits at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PRIMES = (1000000007, 5915587277, 1500450271, 3267000013, 5754853343, 4093082899, 9576890767,
          3628273133, 2860486313, 5463458053, 3367900313)
_MASK16 = 0xFFFF


def _limbs(value: int) -> list[int]:
    value %= 2 ** 64
    return [(value >> (16 * j)) & _MASK16 for j in range(4)]


def _windows(ids: jax.Array, group_size: int) -> list[jax.Array]:
    """The g shifted copies of `ids` `[batch, length]`: window[i][t] = ids[t - g + 1 + i] (0 before the start)."""
    padded = jnp.pad(ids, ((0, 0), (group_size - 1, 0)))
    n = ids.shape[1]
    return [padded[:, i:i + n] for i in range(group_size)]


def _poly_hash_limbs(ids: jax.Array, group_size: int, prime: int) -> list[jax.Array]:
    """The wrapped 64-bit hash as 4 little-endian 16-bit limbs, each uint32 `[batch, length]`."""
    acc = [jnp.zeros(ids.shape, jnp.uint32) for _ in range(4)]
    for i, x in enumerate(_windows(ids.astype(jnp.uint32), group_size)):
        carry = jnp.zeros(ids.shape, jnp.uint32)
        for j, c in enumerate(_limbs(prime ** i)):
            # acc < 2^16, x < 2^15, c < 2^16, carry < 2^16: the sum stays below 2^32.
            s = acc[j] + x * jnp.uint32(c) + carry
            acc[j], carry = s & _MASK16, s >> 16
    return acc


def _mod_limbs(limbs: list[jax.Array], modulus: int) -> jax.Array:
    """(unsigned 64-bit value) mod `modulus`, feeding `step` bits at a time so r << step fits in 32 bits."""
    step = 16
    while modulus << step > 2 ** 32:
        step //= 2
    r = jnp.zeros(limbs[0].shape, jnp.uint32)
    m = jnp.uint32(modulus)
    for limb in reversed(limbs):
        for k in range(16 // step):
            chunk = (limb >> (16 - step * (k + 1))) & ((1 << step) - 1)
            r = ((r << step) | chunk) % m
    return r


def hash_ids(ids: jax.Array, group_size: int, prime: int, vocab: int) -> jax.Array:
    """int32 `[batch, length]` in [0, vocab): BLT's `byte_group_hash_function` for `ids` `[batch, length]`."""
    limbs = _poly_hash_limbs(ids, group_size, prime)
    r = _mod_limbs(limbs, vocab)
    # Signed int64 with Python-style modulo: negative values (top bit set) are W - 2^64.
    negative = limbs[3] >= 2 ** 15
    fix = jnp.uint32(2 ** 64 % vocab)
    r = jnp.where(negative, (r + jnp.uint32(vocab) - fix) % jnp.uint32(vocab), r)
    return r.astype(jnp.int32)


def hash_table_ids(ids: jax.Array, group_sizes, n_functions: int, vocab: int) -> jax.Array:
    """Row ids into the fused hash table, one set per (function, group size): int32 `[tables, batch, length]`.

    Table `k` occupies rows `[k * vocab, (k + 1) * vocab)`, functions outer, group sizes inner.
    """
    out = []
    for f in range(n_functions):
        prime = PRIMES[f % len(PRIMES)]
        for g in group_sizes:
            out.append(hash_ids(ids, g, prime, vocab) + len(out) * vocab)
    return jnp.stack(out)
