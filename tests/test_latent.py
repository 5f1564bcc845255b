"""Continuous thoughts: the fed-back global passes are exact, differentiable, batched; pause feeds nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hybrid_jax import tokenizer as tok
from hybrid_jax.model import BLT, latent, patching

from model_helpers import tiny


def model(mode="static"):
    """A tinier BLT than model_helpers.tiny (fewer layers and hash groups: faster to compile)."""
    cfg = tiny(mode, patch_size=3)
    cfg.vocab_size = tok.COCONUT_VOCAB
    cfg.hash.group_sizes = (3,)
    cfg.local_decoder.layers = 1
    return BLT(cfg, nnx.Rngs(3))


@nnx.jit(static_argnums=2)
def run(m, ids, passes=0):
    return m(ids, latent_passes=passes)


LENGTH = 24


def prompt(n_latents, tail="Tom is"):
    """`question\n<bot><latent>*n<eot>tail`, zero-padded to LENGTH ids."""
    ids = tok.encode("Ab cd.\n") + [tok.BOT_ID] + [tok.LATENT_ID] * n_latents + [tok.EOT_ID] + tok.encode(
        tail, add_bos=False)
    return ids + [0] * (LENGTH - len(ids))


def thought_slots(m, ids):
    """The patch positions of row 0's thoughts (concrete, for the Python loop of `manual`)."""
    info = m.patch(ids)
    slots = patching.num_slots(m.config.patching, ids.shape[1])
    return tuple(int(j) for j in np.flatnonzero(np.asarray(latent.latent_patches(ids, info.ids, slots))[0]))


@nnx.jit(static_argnums=(2, 3))
def manual(m, ids, where, stop_feedback=False):
    """The sequential definition: one global pass per thought, thought k fed the output before it."""
    info = m.patch(ids)
    slots = patching.num_slots(m.config.patching, ids.shape[1])
    byte_states, patch_embeds = m.local_encoder(ids, info.ids, slots)
    x = m.global_transformer.embed(patch_embeds)
    out = m.global_transformer.run(x)
    for j in where:  # row 0 only
        fed = jax.lax.stop_gradient(out[:, j - 1]) if stop_feedback else out[:, j - 1]
        x = x.at[:, j].set(fed)
        out = m.global_transformer.run(x)
    h = m.local_decoder(byte_states, out, patching.decoder_patch_ids(info.starts))
    return m.lm_head(h).astype(jnp.float32)


@pytest.mark.slow  # eager passes
def test_thoughts_equal_sequential_global_passes_in_a_mixed_batch():
    m = model()
    batch = jnp.asarray([prompt(1), prompt(3, "x")])
    got = np.asarray(run(m, batch, 4))  # exact for up to 3 thoughts per row
    for i in range(2):
        row = batch[i:i + 1]
        np.testing.assert_allclose(got[i], manual(m, row, thought_slots(m, row))[0], atol=2e-5)
    # One pass too few leaves row 1's last thought unfinished; row 0 (1 thought) is a fixed point.
    short = np.asarray(run(m, batch, 3))
    np.testing.assert_allclose(short[0], got[0], atol=2e-5)
    assert np.abs(short[1] - got[1]).max() > 1e-4
    assert (np.asarray(batch) == tok.LATENT_ID).sum(axis=1).tolist() == [1, 3]  # the rows' thoughts


def test_match_norm_feeds_back_the_state_at_the_norm_of_the_input_it_replaces():
    from hybrid_jax.model.latent import feed_back
    rng = np.random.default_rng(0)
    embedded = jnp.asarray(rng.standard_normal((2, 5, 8)), jnp.float32)
    outputs = jnp.asarray(40 * rng.standard_normal((2, 5, 8)), jnp.float32)
    is_latent = jnp.asarray([[0, 0, 1, 1, 0], [0, 1, 0, 0, 0]], bool)
    got = np.asarray(feed_back(embedded, outputs, is_latent, match_norm=True))
    raw = np.asarray(feed_back(embedded, outputs, is_latent))
    lat = np.asarray(is_latent)
    np.testing.assert_allclose(got[~lat], np.asarray(embedded)[~lat])
    np.testing.assert_allclose(np.linalg.norm(got[lat], axis=-1), np.linalg.norm(np.asarray(embedded)[lat], axis=-1),
                               rtol=1e-5)
    cos = np.sum(got[lat] * raw[lat], -1) / np.linalg.norm(got[lat], axis=-1) / np.linalg.norm(raw[lat], axis=-1)
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)  # the direction is the state's


def test_pause_does_no_feedback():
    m = model()
    ids = jnp.asarray([prompt(2)])
    pause, thought = np.asarray(run(m, ids, 0)), np.asarray(run(m, ids, 3))
    first = prompt(2).index(tok.LATENT_ID)
    # Before the first thought both read the same patches (causal); after it they differ.
    np.testing.assert_allclose(pause[:, :first], thought[:, :first], atol=1e-5)
    assert np.abs(pause[:, first + 1:] - thought[:, first + 1:]).max() > 1e-3
    # Pause is the sequential definition with nothing fed back: latent patches keep their encoder output.
    np.testing.assert_allclose(pause, manual(m, ids, ()), atol=1e-5)


@pytest.mark.slow  # a gradient through every pass
def test_gradients_flow_through_the_thought_chain():
    m = model()
    ids = jnp.asarray([prompt(2)])
    graphdef, params = nnx.split(m, nnx.Param)
    after = prompt(2).index(tok.EOT_ID)

    where = thought_slots(m, ids)

    def loss(p, ids, how):
        mm = nnx.merge(graphdef, p)
        logits = mm(ids, latent_passes=3) if how == "model" else manual(mm, ids, where, how == "cut")
        return jax.nn.logsumexp(logits[:, after:], axis=-1).sum()

    grad = jax.jit(jax.grad(loss), static_argnums=2)
    g_model = grad(params, ids, "model")
    g_chain = grad(params, ids, "chain")
    g_cut = grad(params, ids, "cut")
    leaves = lambda g: jax.tree.leaves(nnx.to_pure_dict(g))
    for a, b in zip(leaves(g_model), leaves(g_chain)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # The part of the gradient that only the fed-back hidden states carry is nonzero.
    diff = sum(float(jnp.abs(a - b).sum()) for a, b in zip(leaves(g_chain), leaves(g_cut)))
    assert diff > 1e-4


def test_written_answers_match_full_forward_argmax():
    """qa's cached decoding (thoughts fed back in the KV-cached loop) writes the argmax of the full
    forward with latent passes, byte for byte."""
    from hybrid_jax.data import curriculum as cur
    from hybrid_jax.evaluation.qa import extract_answer, write_answers
    m = model()
    examples = [{"question": "Tom is a wug."}, {"question": "Is Ann a dax?"}, {"question": "Every fep."}]
    thoughts = [1, 3, 1]
    written = write_answers(m, examples, thoughts, "coconut", max_new=4, batch_size=2)
    for ex, n, new in zip(examples, thoughts, written):
        p = cur.prompt_ids(ex, n, "coconut")
        ids = p + new + ([tok.EOS_ID] if len(new) < 4 else [])
        full = np.asarray(run(m, jnp.asarray([ids + [0] * (LENGTH - len(ids))]), n + 1))[0]
        assert np.argmax(full[len(p) - 1:len(ids) - 1], axis=-1).tolist() == ids[len(p):]
    assert extract_answer("s1.\n### Tom is a yol, ok.\n") == "Tom is a yol ok."
