"""Coconut-format question / reasoning-steps / answer data (the reference's JSON files work unchanged).

A file is a JSON list of `{"question": str, "steps": [str, ...], "answer": str}`; extra fields (the
ProsQA graph: idx_to_symbol, edges, root, target, neg_target) are kept. The written-out text of an
example is `question\\n` + one line per step + `### answer`, as in the reference.
"""

from __future__ import annotations

import json

from hybrid_jax.errors import DataError

REQUIRED = {"question": str, "answer": str}


def load_examples(path: str) -> list[dict]:
    """The examples of a Coconut JSON file; a bad file or record → DataError naming file and index."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list) or not data:
        raise DataError(f"{path}: expected a non-empty JSON list of examples")
    for i, ex in enumerate(data):
        check_example(ex, f"{path}: example {i}")
    return data


def check_example(ex, where: str) -> None:
    if not isinstance(ex, dict):
        raise DataError(f"{where}: not a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(ex.get(key), kind):
            raise DataError(f"{where}: missing or non-string field {key!r}")
    steps = ex.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise DataError(f"{where}: field 'steps' must be a list of strings")
