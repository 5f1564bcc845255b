"""The shape of Meta's released BLT-1B (`BltConfig()` defaults in transformers): for conversion and
for estimating memory (4.63 B parameters, 3.07 B of them hash-embedding rows; equal to the count of
`BltForCausalLM(BltConfig())`)."""

import ml_collections

from hybrid_jax.config import default_config, stack_config


def get_config() -> ml_collections.ConfigDict:
    cfg = default_config()
    m = cfg.model
    m.hash.vocab = 500002
    m.entropy_model = stack_config(768, 14, 12, d_ff=2048, rope_theta=10000.0, window=512,
                                   trained_online=False, init_from="")
    m.local_encoder = stack_config(1024, 1, 16, window=512, cross_attn_all_layers=False)
    m.global_transformer = stack_config(2048, 25, 16, d_ff=5632, scan_layers=False)
    m.local_decoder = stack_config(1024, 9, 16, d_ff=2816, window=512, cross_attn_all_layers=True)
    return cfg
