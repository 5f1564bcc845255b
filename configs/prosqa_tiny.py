"""Latent reasoning (Coconut) on tiny generated ProsQA-style data, sized for a CPU: ~1.1 M parameters.

    python -m hybrid_jax prosqa --nano --out data/prosqa_nano --n_train 6000 --n_valid 200 --n_test 200 --seed 3
    python -m hybrid_jax train --config configs/prosqa_tiny.py --workdir runs/prosqa_tiny

Space patching (one patch per word; `<bot>`, `<eot>` and every `<latent>` alone), two-hop questions over
a closed 12-word lexicon (`--nano`, <= 193 bytes with the proof written out): one epoch at each of
stages 0-2, then two epochs with both steps replaced by thoughts. ~15 minutes on a 2-core CPU.
"""

import ml_collections

from hybrid_jax.config import coconut_config, default_config
from hybrid_jax.tokenizer import COCONUT_VOCAB


def get_config() -> ml_collections.ConfigDict:
    cfg = default_config()
    m = cfg.model
    m.vocab_size = COCONUT_VOCAB
    m.hash.update(vocab=1021, group_sizes=(3, 4, 5))
    # Unused by space patching (and frozen): kept minimal.
    m.entropy_model.update(d_model=32, layers=1, heads=2, window=64, trained_online=False)
    m.local_encoder.update(d_model=64, layers=1, heads=4, window=64)
    m.local_decoder.update(d_model=64, layers=2, heads=4, window=64)
    m.global_transformer.update(d_model=128, layers=3, heads=4)
    # ~4 bytes per word patch: 80 positions hold the longest example with its thoughts; right padding
    # (id 0, a patch per byte) is what the cap merges.
    m.patching.update(mode="space", max_patch_length=8, max_patches=80)
    cfg.data.update(train="data/prosqa_nano/prosqa_train.json", eval="data/prosqa_nano/prosqa_valid.json",
                    seq_len=224)
    cfg.train.update(batch_size=32, lr=1e-3, min_lr_ratio=1.0, warmup_steps=20, weight_decay=0.01,
                     log_every=10)
    cfg.eval.update(every=0, batch_size=32)
    cfg.checkpoint.update(every=200, keep=2)
    cfg.coconut = coconut_config()
    cfg.coconut.update(mode="coconut", c_thought=1, epochs_per_stage=1, max_latent_stage=2, num_epochs=5,
                       eval_every_epochs=1, eval_limit=100, max_new_bytes=80)
    return cfg
