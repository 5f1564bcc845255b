import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax import tokenizer
from hybrid_jax.model import patching


def starts_of(mode, ids=None, entropies=None, length=0, **kw):
    """`compute_starts` of a patching config with `kw` overrides, row 0 as a numpy array."""
    import ml_collections
    from hybrid_jax.config import model_config
    cfg = model_config().patching
    cfg.update(mode=mode, **kw)
    if ids is None:
        n = entropies.shape[1] if entropies is not None else length
        ids = jnp.full((1, n), tokenizer.OFFSET + ord("a"), jnp.int32)
    return np.asarray(patching.compute_starts(ml_collections.FrozenConfigDict(cfg), ids, entropies))[0]


def lengths(starts):
    return np.asarray(patching.info_from_starts(jnp.asarray(starts)).lengths)


def test_static_patches_after_lone_bos():
    s = starts_of("static", length=9, patch_size=3)
    assert np.flatnonzero(s).tolist() == [0, 1, 4, 7]
    assert lengths(s[None])[0].tolist() == [1, 3, 3, 2, 0, 0, 0, 0, 0, 0]
    # length 10: the last patch is full, so the next byte (position 10) starts a new patch.
    s = starts_of("static", length=10, patch_size=3)
    assert np.flatnonzero(s).tolist() == [0, 1, 4, 7, 10]
    assert lengths(s[None])[0, :6].tolist() == [1, 3, 3, 3, 1, 0]


def test_space_patches_hand_checked():
    ids = jnp.asarray([tokenizer.encode("ab  cd,e")])
    s = starts_of("space", ids)
    # [BOS] [a b ' '] [' ' c d ,] [e]
    assert np.flatnonzero(s).tolist() == [0, 1, 4, 8]
    assert lengths(s[None])[0, :5].tolist() == [1, 3, 4, 1, 0]
    ids = jnp.asarray([tokenizer.encode("x = 1\n    y")])
    s = starts_of("space", ids)
    pieces = [bytes(tokenizer.ids_to_bytes(np.asarray(ids)[0, a:b])) for a, b in
              zip(np.flatnonzero(s), list(np.flatnonzero(s)[1:]) + [ids.shape[1]])]
    # "=" follows a space, so it does not end a patch: punctuation runs stay together
    assert pieces == [b"", b"x ", b"= 1\n", b"    y"]


def test_space_like_bytes():
    ids = jnp.asarray([[tokenizer.OFFSET + b for b in b" ,\n.aZ09\xc3\xa9"]])
    got = np.asarray(patching.space_like(ids))[0].tolist()
    assert got == [True, True, True, True, False, False, False, False, True, False]


def test_split_long_patches():
    # entropy starts at [0, 1, 6] (entropy[5] is high); pieces of at most 2 bytes after each start
    ent = jnp.zeros((1, 8)).at[0, 5].set(9.0)
    assert np.flatnonzero(starts_of("entropy", entropies=ent, threshold=1.0)).tolist() == [0, 1, 6]
    got = starts_of("entropy", entropies=ent, threshold=1.0, max_patch_length=2)
    assert np.flatnonzero(got).tolist() == [0, 1, 3, 5, 6, 8]


def test_entropy_starts_ignore_first_entropy():
    ent = jnp.asarray([[9.0, 0.1, 2.0, 0.1, 3.0]])
    s = starts_of("entropy", entropies=ent, threshold=1.0)
    # position t >= 2 starts iff entropy[t-1] > 1; entropy[4] > 1 opens position 5 (= length)
    assert np.flatnonzero(s).tolist() == [0, 1, 3, 5]


def test_lengths_roundtrip_and_decoder_ids():
    s = jnp.asarray([[1, 1, 0, 1, 0, 0, 1, 0]], bool)  # length 7, no boundary after it
    info = patching.info_from_starts(s)
    assert np.asarray(info.lengths)[0].tolist() == [1, 2, 3, 1, 0, 0, 0, 0]
    assert np.asarray(info.ids)[0].tolist() == [0, 1, 1, 2, 2, 2, 3]
    back = patching.starts_from_lengths(info.lengths, 7)
    assert (np.asarray(back) == np.asarray(s)).all()
    # with a boundary after the sequence the last patch covers the next byte, and it round-trips too
    s2 = s.at[0, 7].set(True)
    info2 = patching.info_from_starts(s2)
    assert np.asarray(info2.lengths)[0].tolist() == [1, 2, 3, 1, 1, 0, 0, 0]
    assert (np.asarray(patching.starts_from_lengths(info2.lengths, 7)) == np.asarray(s2)).all()
    # byte t reads the patch before the patch of byte t + 1
    assert np.asarray(patching.decoder_patch_ids(s))[0].tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_unknown_mode_raises():
    from hybrid_jax.config import ConfigError, model_config
    from hybrid_jax.model import BLT
    from flax import nnx
    cfg = model_config()
    cfg.patching.mode = "bpe"
    with pytest.raises(ConfigError, match="unknown patching mode 'bpe'"):
        BLT(cfg, nnx.Rngs(0))


@pytest.mark.parametrize("mode", ["entropy", "static", "space"])
def test_latent_specials_get_patches_of_their_own(mode):
    import ml_collections
    from hybrid_jax.config import model_config
    t = tokenizer
    ids = t.encode("ab cd\n") + [t.BOT_ID, t.LATENT_ID, t.LATENT_ID, t.EOT_ID] + t.encode("efgh ij", add_bos=False)
    ids = jnp.asarray([ids])
    cfg = model_config().patching
    cfg.update(mode=mode, patch_size=4, threshold=1.0)
    # Low entropies everywhere: without isolation the entropy patcher would merge the specials.
    entropies = jnp.zeros(ids.shape, jnp.float32)
    starts = np.asarray(patching.compute_starts(ml_collections.FrozenConfigDict(cfg), ids, entropies))[0]
    for t_ in np.flatnonzero(np.isin(np.asarray(ids)[0], t.LATENT_SPECIALS)):
        assert starts[t_] and starts[t_ + 1], (mode, t_)
    # Isolation happens before the cap, so max_patches still bounds the patch count.
    cfg.update(max_patches=3)
    capped = np.asarray(patching.compute_starts(ml_collections.FrozenConfigDict(cfg), ids, entropies))
    assert capped.sum() == 3


def test_monotonic_rule_hand_checked():
    # byte 2 always begins a patch; byte t >= 3 where e[t-1] - e[t-2] > 1 (t = 4 and the slot t = 6)
    ent = jnp.asarray([[9.0, 0.5, 0.4, 2.0, 1.9, 3.5]])
    s = starts_of("entropy", entropies=ent, threshold=1.0, monotonicity=True)
    assert np.flatnonzero(s).tolist() == [0, 1, 2, 4, 6]
    s = starts_of("entropy", entropies=ent, threshold=1.0, monotonicity=True, include_next_token=False)
    assert np.flatnonzero(s).tolist() == [0, 1, 2, 4]


def test_threshold_add_rule_hand_checked():
    ent = jnp.asarray([[9.0, 0.1, 3.0, 3.8, 0.2, 2.0, 2.2]])
    # global: e[t-1] > 1 at t = 3, 4, 6, 7
    assert np.flatnonzero(starts_of("entropy", entropies=ent, threshold=1.0)).tolist() == [0, 1, 3, 4, 6, 7]
    # global and monotonic: byte 2 always, byte 3 never (Meta's quirk: e[2] = 3 would qualify), then
    # rises of more than 0.5 to above 1: t = 4 (3.0 -> 3.8) and t = 6 (0.2 -> 2.0), not t = 7 (+0.2)
    s = starts_of("entropy", entropies=ent, threshold=1.0, threshold_add=0.5)
    assert np.flatnonzero(s).tolist() == [0, 1, 2, 4, 6]


def test_without_next_token_only_the_last_slot_changes():
    ent = jnp.zeros((1, 8)).at[0, 5].set(9.0)
    kw = dict(entropies=ent, threshold=1.0, max_patch_length=2)
    assert np.flatnonzero(starts_of("entropy", **kw)).tolist() == [0, 1, 3, 5, 6, 8]
    assert np.flatnonzero(starts_of("entropy", include_next_token=False, **kw)).tolist() == [0, 1, 3, 5, 6]
    # static mode too: 9 bytes in patches of 4 after BOS end exactly at the sequence's end
    assert np.flatnonzero(starts_of("static", length=9, patch_size=4)).tolist() == [0, 1, 5, 9]
    assert np.flatnonzero(starts_of("static", length=9, patch_size=4, include_next_token=False)).tolist() == [0, 1, 5]


def test_monotonicity_with_threshold_add_is_refused():
    from hybrid_jax.config import ConfigError, model_config, validate_model
    cfg = model_config()
    cfg.patching.update(monotonicity=True, threshold_add=0.5)
    with pytest.raises(ConfigError, match="two different rules"):
        validate_model(cfg)


@pytest.mark.parametrize("rule", [dict(), dict(monotonicity=True, threshold=0.3),
                                  dict(threshold_add=0.2, max_patch_length=3, max_patches=9)])
def test_chunked_next_starts_equal_compute_starts(rule):
    """Fed in ragged chunks (each row its own number of valid bytes per chunk), the incremental rules
    give the full sequence's starts, for every entropy rule."""
    import jax
    import ml_collections
    from hybrid_jax.config import model_config
    cfg = model_config().patching
    cfg.update(dict(dict(mode="entropy", threshold=1.0), **rule))
    cfg = ml_collections.FrozenConfigDict(cfg)
    rng = np.random.default_rng(len(rule))
    b, n, width = 3, 40, 6
    ent = jnp.asarray(rng.gamma(2.0, 0.6, size=(b, n)), jnp.float32)
    ids = jnp.full((b, n), tokenizer.OFFSET + 1, jnp.int32)
    want = np.asarray(patching.compute_starts(cfg, ids, ent))
    step = jax.jit(lambda c, i, e, p, v: patching.next_starts(cfg, i, e, p, v, c))
    carry, fed, got = patching.initial_carry(b), np.zeros(b, int), np.zeros((b, n + 1), bool)
    got[:, 0] = True
    while (fed < n).any():
        take = np.minimum(rng.integers(0, width + 1, size=b), n - fed)
        cols = fed[:, None] + np.arange(width)[None, :]
        valid = np.arange(width)[None, :] < take[:, None]
        safe = np.minimum(cols, n - 1)
        pos = np.where(valid, cols, -1)
        out, _, carry = step(carry, ids[np.arange(b)[:, None], safe], ent[np.arange(b)[:, None], safe],
                             jnp.asarray(pos, jnp.int32), jnp.asarray(valid))
        out = np.asarray(out)
        for r in range(b):
            got[r, fed[r] + 1:fed[r] + 1 + take[r]] = out[r, :take[r]]
        fed += take
    assert (got == want).all()
    assert want[:, 2:].sum() > 3  # the rule really cuts
