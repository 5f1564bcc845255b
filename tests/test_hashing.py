import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.model.hashing import PRIMES, hash_ids, hash_table_ids


def numpy_reference(ids, group_size, prime, vocab):
    """BLT's hash in wrapping int64 numpy arithmetic, floor modulo."""
    ids = np.asarray(ids, np.int64)
    padded = np.pad(ids, ((0, 0), (group_size - 1, 0)))
    total = np.zeros(ids.shape, np.int64)
    with np.errstate(over="ignore"):
        for i in range(group_size):
            power = np.int64(1)
            for _ in range(i):
                power = power * np.int64(prime)
            total = total + padded[:, i:i + ids.shape[1]] * power
    return total % vocab


@pytest.mark.parametrize("vocab", [500002, 257, 30011, 2 ** 30 + 3])
@pytest.mark.parametrize("prime", [PRIMES[0], PRIMES[1], PRIMES[6]])
def test_hash_matches_int64_reference(vocab, prime):
    rng = np.random.default_rng(vocab % 97)
    ids = rng.integers(0, 264, size=(3, 40))
    ids[0, :8] = 263  # large ids everywhere in a window: exercises the sign fix
    for g in (1, 3, 5, 8):
        got = np.asarray(hash_ids(jnp.asarray(ids, jnp.int32), g, prime, vocab))
        np.testing.assert_array_equal(got, numpy_reference(ids, g, prime, vocab))


def test_hash_matches_hugging_face():
    torch = pytest.importorskip("torch")
    from transformers.models.blt.modeling_blt import byte_group_hash_function
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 260, size=(2, 64))
    for g, prime, vocab in [(3, PRIMES[0], 500002), (8, PRIMES[1], 1009), (6, PRIMES[3], 50021)]:
        ref = byte_group_hash_function(torch.as_tensor(ids), g, prime, vocab).numpy()
        got = np.asarray(hash_ids(jnp.asarray(ids, jnp.int32), g, prime, vocab))
        np.testing.assert_array_equal(got, ref)


def test_table_offsets():
    ids = jnp.asarray([[1, 5, 6, 7]], jnp.int32)
    rows = np.asarray(hash_table_ids(ids, (2, 3), 2, 11))
    assert rows.shape == (4, 1, 4)
    for k in range(4):
        assert ((rows[k] >= 11 * k) & (rows[k] < 11 * (k + 1))).all()
