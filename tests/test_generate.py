"""Cached generation is exact: greedy bytes equal the argmax of a full forward recomputed at every byte
(entropy / static / space patching, windows shorter than the sequence, ragged batches, patch
boundaries forced by max_patch_length), and equal Hugging Face `generate` on an exported model."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from model_helpers import tiny

from hybrid_jax import tokenizer
from hybrid_jax.cli import generate as generate_cli
from hybrid_jax.inference import generate as gen
from hybrid_jax.inference import incremental
from hybrid_jax.inference.sampling import Sampling, filter_logits
from hybrid_jax.model import BLT, patching

pytestmark = pytest.mark.integration

PROMPTS = ["def f(x):\n    return", "Hi", "A longer prompt, with spaces and (punctuation)!"]
NEW = 24


def between_middle_values(values) -> float:
    """Halfway between the two middle values: a median that is no entropy itself, so float noise
    between two compiled programs (the full and the incremental forward) cannot flip a decision."""
    v = np.sort(np.asarray(values, np.float64))
    k = len(v) // 2
    return float((v[k - 1] + v[k]) / 2)


def model_with_median_threshold(mode="entropy", seed=0, **patching):
    """A tiny model whose entropy threshold sits at the median of its own entropies (mixed patches)."""
    cfg = tiny(mode, **patching)
    cfg.hash.group_sizes = (3, 5)  # fewer hash n-gram sizes: a smaller graph, faster compiles
    model = BLT(cfg, nnx.Rngs(seed))
    if mode != "entropy":
        return model
    probe = jnp.asarray([tokenizer.encode(PROMPTS[2])])
    cfg = model.config.as_configdict()
    ent = np.asarray(model.patch(probe).entropies)[0, 1:]
    rises = np.diff(ent)
    values = rises[rises > 0] if cfg.patching.monotonicity else ent  # monotonicity thresholds the rise
    cfg.patching.threshold = between_middle_values(values)
    if cfg.patching.threshold_add is not None:
        cfg.patching.threshold_add = float(np.quantile(rises, 0.3))
    again = BLT(cfg, nnx.Rngs(seed))
    nnx.update(again, nnx.state(model, nnx.Param))
    return again


def prefix_forward(model):
    """jit(x `[1, length]`, n) -> the full forward's logits of the first n bytes of x, as if the
    sequence ended there. The rest is padding: every mode is causal, so it never changes the logits
    of real bytes; only without `include_next_token` the slot after byte n - 1 is cleared by hand
    (the definition of that setting), since there the padding would have begun a patch."""
    def run(x, n):
        info = model.patch(x)
        if not model.config.patching.include_next_token:
            cleared = info.starts.at[:, n].set(n < 2)
            info = patching.info_from_starts(cleared, info.entropies)
        return model.forward_patches(x, info)
    return jax.jit(run)


def recomputed_greedy(model, prompt: str, n: int, length: int = 128) -> list[int]:
    """Greedy bytes from a full forward over the whole sequence at every step (`prefix_forward`)."""
    forward = prefix_forward(model)
    seq = tokenizer.encode(prompt)
    out = []
    for _ in range(n):
        x = np.zeros((1, length), np.int32)
        x[0, :len(seq)] = seq
        nxt = int(np.argmax(np.asarray(forward(jnp.asarray(x), len(seq)))[0, len(seq) - 1]))
        if nxt == tokenizer.EOS_ID:
            break
        out.append(nxt)
        seq.append(nxt)
    return out


@pytest.mark.parametrize("mode,patching,recent", [
    ("entropy", dict(max_patch_length=2), 32),
    ("static", dict(patch_size=3), 2),  # patches longer than RECENT: pooled from the whole buffers
    pytest.param("space", dict(max_patches=12), 32, marks=pytest.mark.slow),
    ("entropy", dict(max_patch_length=3, include_next_token=False), 32),  # Hugging Face's runtime
    pytest.param("entropy", dict(threshold_add=0.0, include_next_token=False), 32, marks=pytest.mark.slow),
])
def test_greedy_equals_full_forward_every_byte(mode, patching, recent, monkeypatch):
    monkeypatch.setattr(incremental, "RECENT", recent)
    model = model_with_median_threshold(mode, **patching)
    res = gen.run(model, PROMPTS, NEW)
    for prompt, got in zip(PROMPTS, res.ids):
        assert got == recomputed_greedy(model, prompt, NEW), (mode, prompt)
    # the windows (5-6 bytes) are shorter than every sequence here, and patches really vary
    assert max(len(tokenizer.encode(p)) for p in PROMPTS) + NEW > 2 * model.config.local_encoder.window
    assert 1.0 < min(res.avg_patch_len)


@pytest.mark.parametrize("rule", [dict(), dict(include_next_token=False), dict(monotonicity=True)])
def test_forced_boundaries_and_patches_match_full_forward(rule):
    """Fed one byte at a time, the cached patches equal the full forward's, boundary after the last
    byte included (max_patch_length forces splits), and each byte's logits equal the full forward's of
    the sequence that ends at that byte (within float32 noise), for each entropy rule."""
    model = model_with_median_threshold("entropy", max_patch_length=3, **rule)
    ids = jnp.asarray([tokenizer.encode(PROMPTS[2])])
    forward = prefix_forward(model)
    starts = np.asarray(starts_by_the_rules(model, ids))
    state = incremental.init_state(model, 1, 64)
    step = jax.jit(lambda st, x: incremental.feed(model, st, x, jnp.ones((1, 1), bool), always_close=False))
    got_starts, worst = [True], 0.0
    for t in range(ids.shape[1]):
        logits, state = step(state, ids[:, t:t + 1])
        got_starts.append(bool(state.carry.pending[0]))  # starts[t + 1] by the rules
        want = np.asarray(forward(ids, t + 1))[0, t]
        worst = max(worst, float(np.abs(np.asarray(logits)[0, 0] - want).max()))
    assert worst < 1e-4
    patches = int(state.carry.count[0] - state.carry.pending[0])
    assert patches == int(starts[:-1].sum())
    assert got_starts == [bool(s) for s in starts]
    lengths = np.diff(np.flatnonzero(np.append(starts[:-1], True)))
    assert lengths.max() <= 3 and (lengths == 3).any() and (lengths < 3).any()


def starts_by_the_rules(model, ids):
    """starts `[length + 1]` by the rules, the slot after the last byte included (include_next_token
    only clears that slot for the last byte's prediction, not the boundary the next byte makes)."""
    cfg = model.config.patching.as_configdict()
    cfg.include_next_token = True
    ent = model.patch(ids).entropies
    return patching.compute_starts(ml_collections.FrozenConfigDict(cfg), ids, ent)[0]


@pytest.mark.slow  # several sampled generations
def test_sampling_is_seeded_and_filters():
    model = model_with_median_threshold("static", patch_size=4)
    a = gen.generate(model, PROMPTS[:2], 16, temperature=0.9, top_k=20, top_p=0.9, seed=3)
    b = gen.generate(model, PROMPTS[:2], 16, temperature=0.9, top_k=20, top_p=0.9, seed=3)
    c = gen.generate(model, PROMPTS[:2], 16, temperature=0.9, top_k=20, top_p=0.9, seed=4)
    assert a == b and a != c
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    kept = np.isfinite(np.asarray(filter_logits(logits, 0, 0.75)))[0]
    assert kept.tolist() == [True, True, False, False]
    kept = np.isfinite(np.asarray(filter_logits(logits, 3, 1.0)))[0]
    assert kept.tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=0.0).check(260)


def test_stops_at_eos_and_streams_whole_characters():
    model = model_with_median_threshold("static", patch_size=4)
    first = gen.run(model, ["abc", "abcd"], 10).ids
    assert len(first[0]) == 10 and len(first[1]) == 10
    # swap the head's columns of EOS and the first greedy byte of row 0: row 0 now stops at once
    head = model.lm_head.kernel
    w = np.array(head.get_value())
    w[:, [first[0][0], tokenizer.EOS_ID]] = w[:, [tokenizer.EOS_ID, first[0][0]]]
    head.set_value(jnp.asarray(w))
    again = gen.run(model, ["abc", "abcd"], 10).ids
    assert again[0] == [] and (len(again[1]) == 10 or tokenizer.EOS_ID not in again[1])
    stream = generate_cli.Utf8Stream()
    euro = "€".encode()  # 3 bytes
    ids = [b + tokenizer.OFFSET for b in euro]
    assert stream.feed(ids[:2]) == "" and stream.feed(ids[2:]) == "€" and stream.flush() == ""


def test_prompt_longer_than_context_is_an_error():
    with pytest.raises(ValueError, match="does not fit the context of 8 bytes"):
        gen.encode_prompts(["0123456789"], 8, 4)


def test_forced_ids_outside_the_vocab_are_an_error():
    model = BLT(tiny("static", patch_size=3), nnx.Rngs(0))  # 260 ids: no latent ids
    with pytest.raises(ValueError, match=r"forced ids \[260, 262, 261\] outside the model's vocab of 260"):
        gen.run(model, ["ab"], 2, then=[tokenizer.BOT_ID, tokenizer.LATENT_ID, tokenizer.EOT_ID])


def test_equals_hugging_face_generate(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from hybrid_jax.storage.hf import to_hf
    model = model_with_median_threshold("entropy", seed=5)
    to_hf(model, model.config, str(tmp_path))
    hf = transformers.BltForCausalLM.from_pretrained(str(tmp_path)).float().eval()
    prompt = PROMPTS[0]
    ours = gen.run(model, [prompt], NEW).ids[0]
    ids = torch.tensor([tokenizer.encode(prompt)])
    with torch.no_grad():
        out = hf.generate(ids, max_new_tokens=NEW, do_sample=False, use_cache=False,
                          eos_token_id=tokenizer.EOS_ID, pad_token_id=0)
    theirs = [int(i) for i in out[0, ids.shape[1]:]]
    # Both stop at the same EOS (ours does not return it) or run the whole budget.
    assert len(ours) >= NEW // 2 and ours == theirs[:len(ours)]
    assert len(ours) == NEW or theirs[len(ours)] == tokenizer.EOS_ID


@pytest.mark.slow  # generate subprocesses
def test_cli_json_stream_and_errors(tmp_path, capsys):
    from hybrid_jax.storage.checkpoint import save_model
    model = model_with_median_threshold("entropy")
    save_model(model, str(tmp_path / "run"))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "hybrid_jax", "generate", *args], capture_output=True,
                              text=True, timeout=300)

    r = cli("--ckpt", str(tmp_path / "run"), "--prompt", "Hi", "--prompt", "there", "--max_new_bytes", "8", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2 and all(row["new_bytes"] <= 8 and row["avg_patch_len"] > 0 for row in rows)
    assert rows[0]["text"] == gen.generate(model, ["Hi"], 8)[0]
    run = str(tmp_path / "run")
    assert cli_main("--ckpt", run, "--prompt", "Hi", "--max_new_bytes", "8", "--stream") == 0
    assert capsys.readouterr().out.startswith("Hi")
    (tmp_path / "empty.txt").write_text("")
    for args, fragment in [
        (["--ckpt", str(tmp_path / "nope"), "--prompt", "x"], "no such checkpoint"),
        (["--ckpt", run, "--prompt_file", str(tmp_path / "empty.txt")], "is empty"),
        (["--ckpt", run, "--prompt", "x" * 40, "--context", "16"], "does not fit"),
        (["--ckpt", run, "--prompt", "x", "--top_p", "2"], "top_p"),
        (["--prompt", "x"], "--ckpt"),
    ]:
        assert cli_main(*args) == 2
        err = capsys.readouterr().err
        assert fragment in err and len(err.strip().splitlines()) == 1, err


def cli_main(*args):
    from hybrid_jax import cli
    return cli.run(generate_cli.main, list(args))


def coconut_model(latent_feedback: str = "state"):
    """A tiny Coconut-vocab BLT with static patches of 3 bytes."""
    cfg = tiny("static", patch_size=3)
    cfg.hash.group_sizes = (3, 5)
    cfg.vocab_size = tokenizer.COCONUT_VOCAB
    cfg.latent_feedback = latent_feedback
    return BLT(cfg, nnx.Rngs(2))


@pytest.mark.parametrize("thoughts,feedback", [pytest.param(True, "state", marks=pytest.mark.slow),
                                               (True, "match_norm"), (False, "state")])
def test_latent_steps_equal_full_forward_with_thoughts(thoughts, feedback):
    """Coconut vocab: `<bot>`, 2 thoughts, `<eot>` then greedy bytes equal the full forward with the
    thoughts fed back (latent_passes = 3) or, in pause mode, the plain forward; specials get their own
    patches in both (also incrementally)."""
    model = coconut_model(feedback)
    prompt = "Is a b?"
    got = gen.run(model, [prompt], 12, latent_steps=2, thoughts=thoughts, stop_at_eos=False).ids[0]
    seq = tokenizer.encode(prompt) + [tokenizer.BOT_ID, tokenizer.LATENT_ID, tokenizer.LATENT_ID, tokenizer.EOT_ID]
    forward = jax.jit(lambda x: model(x, latent_passes=3 if thoughts else 0))
    want = []
    for _ in range(12):
        x = np.zeros((1, 48), np.int32)
        x[0, :len(seq)] = seq
        nxt = int(np.argmax(np.asarray(forward(jnp.asarray(x)))[0, len(seq) - 1]))
        want.append(nxt)
        seq.append(nxt)
    assert got == want


@pytest.mark.parametrize("prompt", ["Is a b?", pytest.param("Is a b", marks=pytest.mark.slow),
                                    pytest.param("Is a bc?", marks=pytest.mark.slow)])
def test_special_ending_a_patch_early_keeps_logits_exact(prompt):
    """A `<bot>` that begins a patch where the patcher had none due (static patches of 3: after 7 or 8
    bytes, not after 6) ends the patch before it, so the byte before it reads a different patch than
    when it was fed; the cached decoder states must follow. Logits of the specials and the bytes after
    them equal the full forward's (latent_passes = 3), within 1e-4 in float32."""
    from hybrid_jax.inference import incremental as inc
    model = coconut_model()
    head = tokenizer.encode(prompt)
    seq = head + [tokenizer.BOT_ID, tokenizer.LATENT_ID, tokenizer.LATENT_ID, tokenizer.EOT_ID] + tokenizer.encode(
        "xy z", add_bos=False)
    # Jitted: one compile per input shape instead of one per primitive in eager mode.
    full = np.asarray(jax.jit(lambda ids: model(ids, latent_passes=3))(jnp.asarray([seq])))[0]
    state = inc.init_state(model, 1, 32)
    feed = jax.jit(lambda st, x: inc.feed(model, st, x, jnp.ones(x.shape, bool), thoughts=True))
    _, state = feed(state, jnp.asarray([head]))
    for t in range(len(head), len(seq)):
        logits, state = feed(state, jnp.asarray([[seq[t]]]))
        np.testing.assert_allclose(np.asarray(logits)[0, 0], full[t], atol=1e-4, err_msg=f"position {t}")
