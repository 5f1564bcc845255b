"""Self-speculative greedy decoding gives exactly plain cached greedy's bytes (and so the argmax of a
full forward recomputed at every byte) on randomized tiny configs: entropy rules, include_next_token
both ways, max_patch_length, max_patches, local windows of 5-6 bytes (shorter than every output),
ragged batches, EOS inside a round, Coconut thoughts. Batches are consistent with and without it:
identical prompts give identical bytes, and a row of a mixed batch equals its prompt alone."""

import jax.numpy as jnp
import numpy as np
import pytest
from test_generate import coconut_model, model_with_median_threshold, recomputed_greedy

from hybrid_jax import cli, tokenizer
from hybrid_jax.cli import generate as generate_cli
from hybrid_jax.errors import ConfigError
from hybrid_jax.inference import generate as gen
from hybrid_jax.inference.sampling import Sampling

pytestmark = pytest.mark.integration

NEW = 24
ALPHABET = "abc de(f):\n  xyz, 0123 return"


def random_case(seed: int):
    """(patching kwargs, k, prompts of mixed lengths) drawn from `seed`."""
    rng = np.random.default_rng(seed)
    patching = dict(include_next_token=bool(rng.integers(2)), max_patch_length=int(rng.choice([0, 2, 3, 5])),
                    max_patches=int(rng.choice([0, 0, 6, 10])))
    rule = rng.choice(["global", "monotonic", "global+monotonic"])
    if rule == "monotonic":
        patching["monotonicity"] = True
    elif rule == "global+monotonic":
        patching["threshold_add"] = 0.0
    k = int(rng.choice([2, 3, 5, 8]))
    prompts = ["".join(rng.choice(list(ALPHABET), size=int(n))) for n in rng.integers(1, 30, size=3)]
    return patching, k, prompts


def same_as_plain(model, prompts, k, new=NEW, **kw):
    """Plain and speculative runs; asserts equal bytes and returns both results."""
    plain = gen.run(model, prompts, new, **kw)
    spec = gen.run(model, prompts, new, speculate=k, **kw)
    assert spec.ids == plain.ids
    assert spec.stats["kept"] == plain.stats["kept"]  # ids emitted, EOS included
    assert spec.stats["passes"] < plain.stats["passes"]
    return plain, spec


@pytest.mark.parametrize("patching,k,prompts", [
    # Hugging Face's runtime semantics: bytes that open a patch are redecoded as the last byte
    (dict(include_next_token=False, max_patch_length=3), 5, ["def f(x):", "Hi", "A longer prompt, with (x)!"]),
    (dict(monotonicity=True, max_patches=9), 8, ["xyz, 0123 return", "a", "ab cd"]),
])
def test_speculative_equals_plain_and_full_forward(patching, k, prompts):
    model = model_with_median_threshold("entropy", **patching)
    plain, spec = same_as_plain(model, prompts, k)
    for prompt, got in zip(prompts, spec.ids):
        assert got == recomputed_greedy(model, prompt, NEW)
    s = spec.stats
    assert 0 < s["accepted"] < s["drafted"]  # drafts were both kept and rejected: rollbacks happened
    assert s["global_runs"] > 0 and 1.0 < min(spec.avg_patch_len)
    assert max(len(p) for p in prompts) + NEW > 2 * model.config.local_decoder.window


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_speculative_equals_plain_randomized(seed):
    patching, k, prompts = random_case(seed)
    model = model_with_median_threshold("entropy", seed=seed, **patching)
    plain, spec = same_as_plain(model, prompts, k)
    for prompt, got in zip(prompts[:1], spec.ids):
        assert got == recomputed_greedy(model, prompt, NEW), (patching, k)


@pytest.mark.parametrize("speculate", [0, 4])
def test_batches_are_consistent(speculate):
    """Meta BLT #123: identical prompts in one batch give identical bytes; a row of a mixed batch equals
    its prompt alone (patches of at most 2 bytes and a 7-patch cap: rows reach it at different bytes)."""
    model = model_with_median_threshold("entropy", max_patch_length=2, max_patches=7)
    same = gen.run(model, ["def f(x):"] * 4, NEW, speculate=speculate).ids
    assert all(row == same[0] for row in same)
    mixed = ["def f(x):", "Hi", "def f(x):", "A longer prompt, with (x)!"]
    rows = gen.run(model, mixed, NEW, speculate=speculate).ids
    assert rows[0] == rows[2] == same[0]
    assert rows[1] == gen.run(model, ["Hi"], NEW, speculate=speculate).ids[0]


def test_eos_inside_a_round_and_coconut_thoughts():
    """A byte greedy makes mid-run becomes EOS (head columns swapped): both stop there. Coconut vocab
    (specials in the vocab, a special-aware patcher), thoughts in the prompt: the same bytes."""
    model = coconut_model()
    kw = dict(latent_steps=2, thoughts=True)
    prompts = ["Is a b?", "Is c d or e?"]
    first = gen.run(model, prompts, 12, **kw).ids[0]  # the same shapes as below: compiled once
    assert len(first) == 12
    stop = next(i for i in range(3, 12) if first[i] not in first[:i] and first[i] >= tokenizer.OFFSET)
    head = model.lm_head.kernel
    w = np.array(head.get_value())
    w[:, [first[stop], tokenizer.EOS_ID]] = w[:, [tokenizer.EOS_ID, first[stop]]]
    head.set_value(jnp.asarray(w))
    plain, spec = same_as_plain(model, prompts, 8, new=12, **kw)
    assert spec.ids[0] == first[:stop]
    assert spec.stats["accepted"] > 0


def test_speculate_refuses_sampling_and_bad_sizes(capsys):
    with pytest.raises(ConfigError, match="greedy"):
        gen.check_speculate(4, Sampling(temperature=0.7))
    with pytest.raises(ConfigError, match="speculate must be 0"):
        gen.check_speculate(1, Sampling())
    for args, fragment in [(["--speculate", "4", "--temperature", "0.5"], "greedy decoding only"),
                           (["--speculate", "-2"], "speculate must be 0")]:
        code = cli.run(generate_cli.main, ["--ckpt", "nowhere", "--prompt", "x", *args])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
