"""Chain following (`hybrid-jax prosqa --task chains`) with latent reasoning, sized for a 2-core CPU.

    python -m hybrid_jax prosqa --task chains --out data/chains --seed 0
    python -m hybrid_jax train --config configs/chains.py --workdir runs/chains
    python -m hybrid_jax evaluate qa --ckpt runs/chains --data data/chains/chains_test_ood.json

Space patching makes each two-letter fact one global position; the global transformer has two layers,
so answering directly must compose 2-3 lookups in two layers, while each continuous thought (or each
written step) needs one. Schedule: one epoch at each of stages 0-3 (3 = every step latent), then two
more with 3 thoughts (1122 steps of 32 on 6000 questions). The study of every mode on it: `python -m benchmarks.coconut_study`.
"""

import ml_collections

from hybrid_jax.config import coconut_config, default_config
from hybrid_jax.tokenizer import COCONUT_VOCAB


def get_config() -> ml_collections.ConfigDict:
    cfg = default_config()
    m = cfg.model
    m.vocab_size = COCONUT_VOCAB
    m.hash.update(vocab=257, group_sizes=(3,))
    m.entropy_model.update(d_model=32, layers=1, heads=2, window=32, trained_online=False)  # unused
    m.local_encoder.update(d_model=64, layers=1, heads=4, window=16)
    m.local_decoder.update(d_model=64, layers=1, heads=4, window=16)
    m.global_transformer.update(d_model=128, layers=2, heads=4)
    # A fact is " xY": one patch each (the longest out-of-distribution question has 10 facts); right
    # padding makes a patch per byte, which the cap merges.
    m.patching.update(mode="space", max_patch_length=4, max_patches=32)
    cfg.data.update(train="data/chains/chains_train.json", eval="data/chains/chains_valid.json", seq_len=48)
    cfg.train.update(batch_size=32, lr=2e-3, min_lr_ratio=1.0, warmup_steps=20, weight_decay=0.01,
                     log_every=50)
    cfg.eval.update(every=0, batch_size=100)
    cfg.checkpoint.update(every=100000, keep=1, async_save=False)
    cfg.mesh.update(data=1, fsdp=1)
    cfg.coconut = coconut_config()
    cfg.coconut.update(mode="coconut", c_thought=1, epochs_per_stage=1, max_latent_stage=3,
                       pad_latent_to_max=True, num_epochs=6, eval_every_epochs=0, eval_limit=50,
                       max_new_bytes=16)
    return cfg
