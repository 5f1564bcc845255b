"""Latent reasoning (Coconut) on ProsQA, sized for one GPU: ~131 M parameters (31 M of them hash
tables), bfloat16 compute.

    python -m hybrid_jax prosqa --out data/prosqa   # or the reference's prosqa_{train,valid}.json
    python -m hybrid_jax train --config configs/prosqa.py --workdir runs/prosqa
    python -m hybrid_jax evaluate qa --ckpt runs/prosqa --data data/prosqa/prosqa_valid.json

The reference schedule (c_thought 1, 5 epochs per stage, stages 0-6, 50 epochs, optimizer reset per
stage, batch 32) on a BLT trained from scratch (the paper fine-tunes a pretrained GPT-2, so the
learning rate here is higher). ProsQA examples are up to ~1480 bytes; space patching makes ~4.5-byte
word patches, so 448 global positions hold every example with its 6 thoughts. Untested at this size
(no GPU was available when it was written): check throughput and memory first. Note that
`hybrid-jax estimate` counts one global pass; coconut mode runs the global transformer 7 times.
"""

import ml_collections

from hybrid_jax.config import coconut_config, default_config
from hybrid_jax.tokenizer import COCONUT_VOCAB


def get_config() -> ml_collections.ConfigDict:
    cfg = default_config()
    m = cfg.model
    m.vocab_size = COCONUT_VOCAB
    m.dtype = "bfloat16"
    m.hash.update(vocab=20011, group_sizes=(3, 4, 5, 6))
    m.entropy_model.update(d_model=128, layers=1, heads=4, trained_online=False)  # unused (space patching)
    m.local_encoder.update(d_model=384, layers=2, heads=6, window=512)
    m.local_decoder.update(d_model=384, layers=4, heads=6, window=512)
    m.global_transformer.update(d_model=768, layers=12, heads=12)
    m.patching.update(mode="space", max_patch_length=12, max_patches=448)
    cfg.data.update(train="data/prosqa/prosqa_train.json", eval="data/prosqa/prosqa_valid.json", seq_len=1536)
    cfg.train.update(batch_size=32, lr=3e-4, min_lr_ratio=1.0, warmup_steps=100, weight_decay=0.01,
                     log_every=20)
    cfg.eval.update(every=0, batch_size=32)
    cfg.checkpoint.update(every=500, keep=3)
    cfg.coconut = coconut_config()
    cfg.coconut.update(mode="coconut", c_thought=1, epochs_per_stage=5, max_latent_stage=6,
                       pad_latent_to_max=True, num_epochs=50, eval_every_epochs=5, eval_limit=300,
                       max_new_bytes=128)
    return cfg
