"""`hybrid-jax generate --ckpt DIR_OR_HUB_ID --prompt TEXT [--max_new_bytes N] [--stream] [--json]`

    python -m hybrid_jax generate --ckpt runs/toy --prompt "def main(" --max_new_bytes 200
    python -m hybrid_jax generate --ckpt hf_dir --prompt_file p.txt --temperature 0.8 --top_p 0.9 --stream
    python -m hybrid_jax generate --ckpt runs/toy --prompt a --prompt b --max_new_bytes 64 --json
    python -m hybrid_jax generate --ckpt runs/toy --prompt "def main(" --speculate 8   # same bytes, fewer passes
    python -m hybrid_jax generate --ckpt org/blt-model@main --prompt "Once"    # a Hugging Face Hub id
"""

from __future__ import annotations

import codecs
import json
import sys

from hybrid_jax import tokenizer
from hybrid_jax.cli.parser import ArgumentParser
from hybrid_jax.errors import ConfigError
from hybrid_jax.inference.generate import check_speculate, run
from hybrid_jax.inference.sampling import Sampling


class Utf8Stream:
    """Bytes in, text out; an incomplete UTF-8 sequence at the end is held back until it completes."""

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids) -> str:
        return self._decoder.decode(tokenizer.ids_to_bytes(ids))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


def parse(argv):
    p = ArgumentParser(prog="hybrid-jax generate", description="Generate bytes from a BLT.",
                           example="hybrid-jax generate --ckpt runs/toy --prompt 'def main(' --max_new_bytes 200")
    p.add_argument("--ckpt", required=True,
                   help="training workdir (WORKDIR@STEP: one step), checkpoints/<step> dir, Hugging Face BLT "
                        "dir, or Hub model id org/name[@revision] (a local path wins)")
    p.add_argument("--prompt", action="append", default=[], help="prompt text (repeat for a batch)")
    p.add_argument("--prompt_file", help="a file whose whole text is one more prompt")
    p.add_argument("--max_new_bytes", type=int, default=256, help="bytes to generate per prompt")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top_k", type=int, default=0, help="keep the k most likely ids (0 = all)")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus mass (1 = off)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--context", type=int, default=0, help="max bytes per sequence (0 = the checkpoint's)")
    p.add_argument("--latent_steps", type=int, default=0,
                   help="Coconut models: continuous thoughts after <bot>, before <eot> (0 = none)")
    p.add_argument("--pause", action="store_true", help="with --latent_steps: <latent> without feedback")
    p.add_argument("--speculate", type=int, default=0,
                   help="greedy only: self-speculative rounds of up to K bytes (the local decoder drafts, one "
                        "pass verifies; the same bytes as without). 0 = off")
    p.add_argument("--stream", action="store_true", help="print bytes as they are generated")
    p.add_argument("--json", action="store_true", help="print one JSON object per prompt")
    args = p.parse_args(argv)
    check_speculate(args.speculate, Sampling(temperature=args.temperature))
    prompts = list(args.prompt)
    if args.prompt_file:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--prompt_file {args.prompt_file}: {e}") from None
        if not text:
            raise ConfigError(f"--prompt_file {args.prompt_file} is empty")
        prompts.append(text)
    if not prompts:
        raise ConfigError("give --prompt TEXT or --prompt_file FILE")
    if args.stream and len(prompts) > 1:
        raise ConfigError("--stream takes one prompt")
    return args, prompts


def main(argv: list[str]) -> int:
    from hybrid_jax.storage.loading import context_of, load_any, resolve_source
    fv, prompts = parse(argv)
    sampling = Sampling(temperature=fv.temperature, top_k=fv.top_k, top_p=fv.top_p)
    ckpt = resolve_source(fv.ckpt)  # once: a Hub id asks the Hub once, not per use
    model = load_any(ckpt)
    context = fv.context or context_of(ckpt)
    on_bytes = None
    if fv.stream and not fv.json:
        stream = Utf8Stream()
        sys.stdout.write(prompts[0])

        def on_bytes(_row, ids):
            sys.stdout.write(stream.feed(ids))
            sys.stdout.flush()
    res = run(model, prompts, fv.max_new_bytes, sampling, fv.seed, context, on_bytes,
              latent_steps=fv.latent_steps, thoughts=not fv.pause, speculate=fv.speculate)
    for i, text in enumerate(res.texts):
        n = len(res.ids[i])
        if fv.json:
            print(json.dumps({"text": text, "new_bytes": n, "bytes_per_sec": round(n / max(res.decode_s, 1e-9), 1),
                              "avg_patch_len": round(res.avg_patch_len[i], 3), "prefill_s": round(res.prefill_s, 4),
                              "compile_s": round(res.compile_s, 2)}))
        elif fv.stream:
            sys.stdout.write(stream.flush() + "\n")
        else:
            print(prompts[i] + text)
    return 0

