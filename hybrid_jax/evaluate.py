"""`python -m hybrid_jax.evaluate bpb --ckpt DIR --data GLOB [--limit_bytes N] [--json]`
`python -m hybrid_jax.evaluate qa --ckpt DIR --data FILE.json [--mode MODE] [--latent_steps N] [--limit N] [--json]`

qa: answer accuracy on a Coconut-format JSON file (see `hybrid_jax.qa`): each question gets `<bot>`,
the trained number of continuous thoughts (or `--latent_steps`), `<eot>`, then greedy decoding to EOS;
the text after `### ` must equal the answer. `--mode` defaults to the run's `coconut.mode`.

bpb:
Bits per byte of a model on held-out files: every document becomes `[BOS] bytes [EOS]` as in
training, the stream is cut into windows of `--seq_len` predictions (default: the run's
`data.seq_len`, else 512) and every byte after the first BOS is scored once; the last window is padded
and masked. `--ckpt` is a training workdir (latest step), one `checkpoints/<step>` directory, or a
Hugging Face BLT directory.
"""

from __future__ import annotations

import json
import math
import os
import sys

from hybrid_jax import cli

DEFAULT_SEQ_LEN = 512


def parse(argv):
    p = cli.ArgumentParser(prog="hybrid-jax evaluate", description="Evaluate a BLT checkpoint.",
                           example="hybrid-jax evaluate bpb --ckpt runs/toy --data 'held_out/*.txt'")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bpb", help="bits per byte on text files",
                       example="hybrid-jax evaluate bpb --ckpt runs/toy --data 'held_out/*.txt'")
    b.add_argument("--ckpt", required=True, help="workdir, checkpoints/<step> dir or HF BLT dir")
    b.add_argument("--data", required=True, help="glob of .txt / .jsonl / .array_record files")
    b.add_argument("--text_field", default="text", help="JSONL field holding the document")
    b.add_argument("--limit_bytes", type=int, default=0, help="score at most this many bytes (0: all)")
    b.add_argument("--seq_len", type=int, default=0, help="window length (default: the run's data.seq_len)")
    b.add_argument("--batch_size", type=int, default=8, help="windows per device call")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    q = sub.add_parser("qa", help="answer accuracy on Coconut-format JSON (latent reasoning)",
                       example="hybrid-jax evaluate qa --ckpt runs/prosqa --data data/prosqa/prosqa_valid.json")
    q.add_argument("--ckpt", required=True, help="workdir or checkpoints/<step> dir of a coconut run")
    q.add_argument("--data", required=True, help="Coconut-format JSON file (question, steps, answer)")
    q.add_argument("--mode", default="", help="coconut, cot, no-cot, pause or no-curriculum (default: the run's)")
    q.add_argument("--latent_steps", type=int, default=-1, help="thoughts per question (default: as trained)")
    q.add_argument("--limit", type=int, default=0, help="score the first N questions (0: all)")
    q.add_argument("--batch_size", type=int, default=16, help="questions per device call")
    q.add_argument("--max_new_bytes", type=int, default=0, help="decoding budget (default: the run's)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.command == "qa":
        if args.limit < 0 or args.batch_size < 1 or args.max_new_bytes < 0 or args.latent_steps < -1:
            raise ValueError("--limit, --max_new_bytes and --latent_steps must be >= 0, --batch_size >= 1")
        return args
    if args.limit_bytes < 0 or args.seq_len < 0 or args.batch_size < 1:
        raise ValueError("--limit_bytes and --seq_len must be >= 0, --batch_size >= 1")
    return args


def run_seq_len(ckpt: str) -> int:
    """`data.seq_len` of the training run stored at `ckpt`, if any."""
    for d in (ckpt, os.path.dirname(os.path.dirname(os.path.abspath(ckpt)))):
        path = os.path.join(d, "config.json")
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    return int(json.load(f)["data"]["seq_len"])
            except (ValueError, KeyError, TypeError):
                return 0
    return 0


def windows(stream, seq_len: int):
    """(batch int32 `[n, seq_len + 1]`, mask `[n, seq_len]`): consecutive windows scoring each id of
    `stream` after the first exactly once; the last window zero-padded and masked."""
    import numpy as np

    n = max(1, math.ceil((len(stream) - 1) / seq_len))
    padded = np.zeros(n * seq_len + 1, np.int32)
    padded[:len(stream)] = stream
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)
    mask = (idx[:, 1:] < len(stream)).astype(np.float32)
    return padded[idx], mask


def bits_per_byte(model, stream, seq_len: int, batch_size: int) -> dict:
    """{"bpb", "bytes", "avg_patch_len"} of `model` on the id stream."""
    import jax
    import numpy as np
    from flax import nnx

    from hybrid_jax.step import LN2, eval_sums

    batch, mask = windows(stream, seq_len)
    rows = -len(batch) % batch_size  # pad to whole batches: one compiled shape
    batch = np.concatenate([batch, np.zeros((rows, seq_len + 1), np.int32)])
    mask = np.concatenate([mask, np.zeros((rows, seq_len), np.float32)])
    step = nnx.jit(eval_sums)
    nll = count = patches = 0.0
    for i in range(0, len(batch), batch_size):
        a, b, c = jax.device_get(step(model, batch[i:i + batch_size], mask[i:i + batch_size]))
        nll, count, patches = nll + float(a), count + float(b), patches + float(c)
    return {"bpb": nll / count / LN2, "bytes": int(count), "avg_patch_len": count / max(patches, 1.0)}


def bpb_command(args) -> dict:
    from hybrid_jax.data.corpus import DataError, documents, resolve
    from hybrid_jax.data.pipeline import pack
    from hybrid_jax.loading import load_any

    files = resolve(args.data)
    stream = pack(d for f in files for d in documents(f, args.text_field))
    if args.limit_bytes:
        stream = stream[:args.limit_bytes + 1]
    if len(stream) < 2:
        raise DataError(f"{args.data!r}: no bytes to score")
    seq_len = args.seq_len or run_seq_len(args.ckpt) or DEFAULT_SEQ_LEN
    model = load_any(args.ckpt)
    return bits_per_byte(model, stream, seq_len, args.batch_size)


def run_coconut(ckpt: str):
    """(coconut node, stage the checkpoint was trained at) of a run; defaults for other checkpoints."""
    import ml_collections

    from hybrid_jax.checkpoint import _resolve, manager
    from hybrid_jax.config import ConfigError, coconut_config, update_strict, validate_coconut
    from hybrid_jax.data.curriculum import stage_of_epoch

    workdir, step = _resolve(ckpt)
    cc = coconut_config()
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            stored = json.load(f).get("coconut")
    except (OSError, ValueError, AttributeError):
        stored = None
    if not isinstance(stored, dict):
        return cc, 0
    update_strict(cc, stored, "coconut.")
    validate_coconut(cc)
    stage = stage_of_epoch(cc, cc.num_epochs - 1)
    try:  # the stage stored with the checkpoint (a run may stop before its last epoch)
        import orbax.checkpoint as ocp
        with manager(workdir) as mngr:
            step = mngr.latest_step() if step is None else step
            meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        stage = int(meta["stage"])
    except (ValueError, KeyError, TypeError, OSError, ConfigError):
        pass
    return ml_collections.FrozenConfigDict(cc), stage


def qa_command(args) -> dict:
    from hybrid_jax.config import COCONUT_MODES
    from hybrid_jax.data.coconut import load_examples
    from hybrid_jax.data.curriculum import has_markers
    from hybrid_jax.loading import load_any
    from hybrid_jax.qa import answer_accuracy
    from hybrid_jax.tokenizer import LATENT_ID

    examples = load_examples(args.data)
    if args.limit:
        examples = examples[:args.limit]
    cc, stage = run_coconut(args.ckpt)
    mode = args.mode or cc.mode
    if mode not in COCONUT_MODES:
        raise ValueError(f"--mode must be one of {COCONUT_MODES}, got {mode!r}")
    model = load_any(args.ckpt)
    if has_markers(mode) and model.config.vocab_size <= LATENT_ID:
        raise ValueError(f"{args.ckpt}: vocab_size {model.config.vocab_size} has no <bot>/<eot>/<latent> ids; "
                         "use --mode cot or no-cot")
    steps = None if args.latent_steps < 0 else args.latent_steps
    return answer_accuracy(model, examples, cc, mode, stage, steps, args.batch_size,
                           args.max_new_bytes or cc.max_new_bytes)


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.command == "qa":
        result = qa_command(args)
        print(json.dumps(result) if args.json else
              f"accuracy {result['accuracy']:.4f} on {result['n']} questions "
              f"({result['mode']}, {result['avg_latents']:.2f} thoughts on average)")
        return 0
    result = bpb_command(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"bpb {result['bpb']:.4f} over {result['bytes']} bytes "
              f"(average patch {result['avg_patch_len']:.2f} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
