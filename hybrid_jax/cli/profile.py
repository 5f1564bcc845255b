"""`hybrid-jax profile PROFILE_DIR [--json]`: where the traced train steps' time went, by kind of work and
by source line (`hybrid_jax.analysis.profile`)."""

from __future__ import annotations

import json

from hybrid_jax.cli.parser import ArgumentParser


def main(argv: list[str]) -> int:
    p = ArgumentParser(prog="hybrid-jax profile", description="Where a profiled train step's time went: the XLA "
                       "operations of a jax.profiler trace, summed by kind and by hybrid_jax source line.",
                       example="hybrid-jax profile runs/profile/profile")
    p.add_argument("logdir", help="a profile directory written by train (WORKDIR/profile, with "
                   "train.profile_steps) or by bench train --profile")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    from hybrid_jax.analysis.profile import format_summary, summarize_dir

    try:
        result = summarize_dir(args.logdir)
    except KeyError as e:
        raise ValueError(f"{args.logdir}: incomplete profile directory (no {e} in its traced-steps file)") from None
    print(json.dumps(result) if args.json else format_summary(result))
    return 0
