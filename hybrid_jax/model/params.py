"""A model's parameters as a plain nested dict, and back: the form the optimizer, Orbax and the
converters handle. List indices (layers) become string keys."""

from __future__ import annotations

from flax import nnx

from hybrid_jax.model.blt import BLT


def abstract_model(cfg) -> BLT:
    """The model with shapes only (no memory allocated)."""
    return nnx.eval_shape(lambda: BLT(cfg, nnx.Rngs(0)))


def param_tree(model: BLT) -> dict:
    """Parameters as a nested dict of arrays (list indices become string keys)."""
    return _stringify(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _stringify(tree):
    if isinstance(tree, dict):
        return {str(k): _stringify(v) for k, v in tree.items()}
    return tree


def model_template(cfg):
    """(graphdef, flat abstract Param state) of the model of config `cfg`."""
    graphdef, state = nnx.split(abstract_model(cfg), nnx.Param)
    return graphdef, nnx.to_flat_state(state)


def assemble(graphdef, flat_template, params: dict) -> BLT:
    """A model from a template and a params tree (as from `param_tree`); works on tracers too."""
    values = {tuple(str(p) for p in path): v for path, v in flat_items(params)}
    flat = [(path, var.replace(values[tuple(str(p) for p in path)])) for path, var in flat_template]
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def model_with_params(cfg, params: dict) -> BLT:
    """A model of config `cfg` holding `params` (as from `param_tree`)."""
    return assemble(*model_template(cfg), params)


def flat_items(tree, prefix=()):
    """(path tuple, leaf) of every leaf of a nested dict."""
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from flat_items(v, prefix + (k,))
        else:
            yield prefix + (k,), v
