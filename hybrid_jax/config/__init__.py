"""The config room: the tree and its defaults (`defaults`), every value's domain and the checks across
values (`validation`), config files and command-line overrides (`loading`).

One `ml_collections.ConfigDict` tree; `model` has one sub-node per component (`entropy_model`,
`local_encoder`, `global_transformer`, `local_decoder`) plus `patching` and `hash`. Modules receive their
node frozen. Bad values raise `ConfigError` with a one-line message.
"""

from hybrid_jax.config.defaults import (COCONUT_MODES, DTYPES, OBJECTIVES, PATCHING_MODES, REMAT, coconut_config, d_ff,
                                        default_config, kv_heads, model_config, stack_config)
from hybrid_jax.config.loading import apply_override, load_config, model_from_dict, split_overrides, update_strict
from hybrid_jax.config.validation import DOMAINS, validate, validate_coconut, validate_model
from hybrid_jax.errors import ConfigError

__all__ = ["COCONUT_MODES", "DOMAINS", "DTYPES", "OBJECTIVES", "PATCHING_MODES", "REMAT", "ConfigError",
           "apply_override", "coconut_config", "d_ff", "default_config", "kv_heads", "load_config",
           "model_config", "model_from_dict", "split_overrides", "stack_config", "update_strict", "validate",
           "validate_coconut", "validate_model"]
