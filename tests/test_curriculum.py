"""Stage text, loss masks and the resumable epoch schedule of latent-reasoning training."""

import pytest

from hybrid_jax import tokenizer as tok
from hybrid_jax.config import ConfigError, coconut_config, validate_coconut
from hybrid_jax.data import curriculum as cur
from hybrid_jax.errors import DataError

EX = {"question": "Q?", "steps": ["s1.", "s2.", "s3."], "answer": "A."}


def cc(**kw):
    c = coconut_config()
    c.update(max_latent_stage=2, c_thought=2, epochs_per_stage=2, num_epochs=8, **kw)
    return c


def text(ids):
    """Readable ids: bytes as text, specials by name."""
    names = {tok.BOT_ID: "<bot>", tok.EOT_ID: "<eot>", tok.LATENT_ID: "<latent>", tok.BOS_ID: "<s>",
             tok.EOS_ID: "</s>"}
    return "".join(names[i] if i in names else chr(i - tok.OFFSET) for i in ids)


@pytest.mark.parametrize("stage, want, thoughts", [
    (0, "<s>Q?\n<bot><eot>s1.\ns2.\ns3.\n### A.</s>", 0),
    (1, "<s>Q?\n<bot><latent><latent><eot>s2.\ns3.\n### A.</s>", 2),
    (2, "<s>Q?\n<bot>" + "<latent>" * 4 + "<eot>s3.\n### A.</s>", 4),
    (3, "<s>Q?\n<bot>" + "<latent>" * 4 + "<eot>### A.</s>", 4),  # past the last stage: all steps go
])
def test_stage_text_and_first_scored_id(stage, want, thoughts):
    ids, first = cur.training_ids(EX, cc(), stage)
    assert text(ids) == want
    assert text(ids[:first]).endswith("<eot>") and ids.count(tok.LATENT_ID) == thoughts


def test_modes_and_pad_latent_to_max():
    short = {**EX, "steps": ["s1."]}
    # Without padding, thoughts past the last stage stop at the example's step count.
    assert text(cur.training_ids(short, cc(pad_latent_to_max=False), 5)[0]).count("<latent>") == 2
    assert text(cur.training_ids(short, cc(pad_latent_to_max=True), 5)[0]).count("<latent>") == 4
    ids, first = cur.training_ids(EX, cc(mode="cot"), 3)
    assert text(ids) == "<s>Q?\ns1.\ns2.\ns3.\n### A.</s>" and text(ids[first:]).startswith("s1.")
    ids, first = cur.training_ids(EX, cc(mode="no-cot"), 3)
    assert text(ids) == "<s>Q?\n### A.</s>" and text(ids[first:]) == "### A.</s>"
    assert cur.stage_of_epoch(cc(mode="no-curriculum"), 0) == 3
    assert [cur.stage_of_epoch(cc(), e) for e in range(6)] == [0, 0, 1, 1, 2, 2]
    assert cur.latent_passes(cc()) == 5 and cur.latent_passes(cc(mode="pause")) == 0
    # At inference: question, <bot>, the trained number of thoughts, <eot>.
    assert text(cur.prompt_ids(EX, cur.thoughts_at_eval(cc(), 7, 3), "coconut")) == "<s>Q?\n<bot>" + "<latent>" * 4 + "<eot>"
    assert cur.thoughts_at_eval(cc(mode="cot"), 7, 3) == 0


def test_batch_masks_only_what_follows_eot():
    rows = [cur.training_ids(EX, cc(), 1), cur.training_ids(EX, cc(), 3)]
    b = cur.make_batch(rows, seq_len=40)
    assert b["ids"].shape == (2, 41) and b["mask"].shape == (2, 40)
    for i, (ids, first) in enumerate(rows):
        targets = b["ids"][i, 1:][b["mask"][i] > 0].tolist()
        assert targets == ids[first:]  # remaining steps, answer, EOS; padding never scored
    with pytest.raises(DataError, match="does not fit"):
        cur.make_batch(rows, seq_len=10)
    with pytest.raises(DataError, match="example 1 needs"):
        cur.check_lengths([EX, {**EX, "question": "x" * 50}], cc(), 40, "f.json")


def test_schedule_is_resumable_and_reshuffles_each_epoch():
    examples = [{**EX, "question": f"Q{i}?"} for i in range(10)]
    a = cur.Curriculum(examples, cc(uniform_prob=0.5), batch_size=4, seq_len=40, seed=1)
    assert a.steps_per_epoch == 2
    run = [next(a)["ids"] for _ in range(6)]
    b = cur.Curriculum(examples, cc(uniform_prob=0.5), batch_size=4, seq_len=40, seed=1)
    b.seek(3)
    assert b.get_state() == {"epoch": 1, "index": 1}
    assert all((next(b)["ids"] == r).all() for r in run[3:])
    assert not (run[0] == run[2]).all()  # epoch 1 reshuffles
    with pytest.raises(DataError, match="fewer than train.batch_size"):
        cur.Curriculum(examples[:3], cc(), batch_size=4, seq_len=40, seed=1)


def test_bad_coconut_config():
    with pytest.raises(ConfigError, match="coconut.mode must be one of"):
        validate_coconut(cc(mode="latent"))
    with pytest.raises(ConfigError, match="uniform_prob"):
        validate_coconut(cc(uniform_prob=2.0))
