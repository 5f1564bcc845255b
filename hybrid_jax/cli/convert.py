"""`python -m hybrid_jax convert from-hf SRC --out WORKDIR` | `to-hf WORKDIR_OR_CKPT --out HF_DIR [--dtype D]`.

SRC is a Hugging Face BLT directory or a Hub model id `org/name[@revision]` (an existing local path wins).
"""

from __future__ import annotations

import os
import sys

from hybrid_jax.cli.parser import ArgumentParser

# Kept here rather than imported from hybrid_jax.storage.hf: `--help` should not import jax.
EXPORT_DTYPES = ("float32", "bfloat16")


def parse(argv):
    p = ArgumentParser(prog="hybrid-jax convert",
                           description="Convert BLT weights between Hugging Face and hybrid_jax.",
                           example="hybrid-jax convert from-hf path/to/blt-hf --out runs/blt")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("from-hf", help="Hugging Face BLT directory or Hub id -> hybrid_jax workdir (Orbax step 0)",
                       example="hybrid-jax convert from-hf org/blt-model@main --out runs/blt")
    a.add_argument("src", metavar="SRC",
                   help="Hugging Face BLT directory (config.json + safetensors) or Hub model id "
                        "org/name[@revision] (fetched into the Hugging Face cache; a local path wins)")
    a.add_argument("--out", required=True, help="workdir to create")
    a.add_argument("--force", action="store_true", help="write into a non-empty --out")
    b = sub.add_parser("to-hf", help="hybrid_jax workdir or checkpoint step -> Hugging Face directory",
                       example="hybrid-jax convert to-hf runs/toy --out exported/toy-hf --strict")
    b.add_argument("ckpt", help="hybrid_jax workdir or checkpoints/<step> directory")
    b.add_argument("--out", required=True, help="Hugging Face directory to create")
    b.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    b.add_argument("--step", type=int, help="checkpoint step of a workdir (default: the latest)")
    b.add_argument("--dtype", choices=EXPORT_DTYPES, default="float32",
                   help="dtype of the written weights (and of config.json's torch_dtype)")
    b.add_argument("--torch-bin", action="store_true", help="also write pytorch_model.bin (needs torch)")
    b.add_argument("--strict", action="store_true",
                   help="refuse (exit 2) a model whose outputs Hugging Face would not reproduce")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    from hybrid_jax.errors import ConvertError
    from hybrid_jax.storage.checkpoint import load_model, save_model
    from hybrid_jax.storage.hf import from_hf, hf_divergences, to_hf
    from hybrid_jax.storage.loading import resolve_source
    from hybrid_jax.storage.workdir import Workdir

    if args.command == "from-hf":
        if os.path.isdir(args.out) and os.listdir(args.out) and not args.force:
            raise ConvertError(f"{args.out} is not empty; pass --force to write into it")
        model, _ = from_hf(resolve_source(args.src))  # as load_any resolves: a path, else a Hub id
        step_dir = save_model(model, args.out, step=0)
        print(f"wrote {step_dir}")
    else:
        path = args.ckpt if args.step is None else str(Workdir(args.ckpt).step_dir(args.step))
        model = load_model(path)
        for path in to_hf(model, model.config, args.out, force=args.force, torch_bin=args.torch_bin,
                          strict=args.strict, dtype=args.dtype):
            print(f"wrote {path}")
        differ = hf_divergences(model.config)
        if differ:
            print(f"warning: Hugging Face's outputs will differ from this model's: {'; '.join(differ)}",
                  file=sys.stderr)
    return 0

