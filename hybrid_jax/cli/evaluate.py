"""`python -m hybrid_jax evaluate bpb --ckpt DIR --data GLOB [--limit_bytes N] [--json]`
`python -m hybrid_jax evaluate qa --ckpt DIR --data FILE.json [--mode MODE] [--latent_steps N] [--limit N] [--json]`

qa: answer accuracy on a Coconut-format JSON file (see `hybrid_jax.evaluation.qa`): each question gets `<bot>`,
the trained number of continuous thoughts (or `--latent_steps`), `<eot>`, then greedy decoding to EOS;
the text after `### ` must equal the answer. `--mode` defaults to the run's `coconut.mode`.

bpb: bits per byte of a model on held-out files (`hybrid_jax.evaluation.bpb`), in windows of
`--seq_len` predictions (default: the run's `data.seq_len`, else 512); the last window ends at the end
of the text with a full window of left context. `--no_eos` leaves out the end-of-document ids (on one
document: lm-eval's loglikelihood_rolling, `hybrid-jax lm-eval`). `--ckpt` is a training workdir
(latest step; `WORKDIR@STEP`: one step), one `checkpoints/<step>` directory, a Hugging Face BLT directory,
or a Hugging Face Hub model id `org/name[@revision]` (an existing local path wins).
"""

from __future__ import annotations

import json

from hybrid_jax.cli.parser import ArgumentParser

DEFAULT_SEQ_LEN = 512


def parse(argv):
    p = ArgumentParser(prog="hybrid-jax evaluate", description="Evaluate a BLT checkpoint.",
                           example="hybrid-jax evaluate bpb --ckpt runs/toy --data 'held_out/*.txt'")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bpb", help="bits per byte on text files",
                       example="hybrid-jax evaluate bpb --ckpt runs/toy --data 'held_out/*.txt'")
    b.add_argument("--ckpt", required=True,
                   help="workdir (WORKDIR@STEP: one step), checkpoints/<step> dir, HF BLT dir or Hub id "
                        "org/name[@revision]")
    b.add_argument("--data", required=True, help="glob of .txt / .jsonl / .array_record files")
    b.add_argument("--text_field", default="text", help="JSONL field holding the document")
    b.add_argument("--limit_bytes", type=int, default=0, help="score at most this many bytes (0: all)")
    b.add_argument("--no_eos", action="store_true",
                   help="documents as [BOS] bytes, without the end-of-document id (as lm-eval's "
                        "loglikelihood_rolling scores a document; `hybrid-jax lm-eval`)")
    b.add_argument("--seq_len", type=int, default=0, help="window length (default: the run's data.seq_len)")
    b.add_argument("--batch_size", type=int, default=8, help="windows per device call")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    q = sub.add_parser("qa", help="answer accuracy on Coconut-format JSON (latent reasoning)",
                       example="hybrid-jax evaluate qa --ckpt runs/prosqa --data data/prosqa/prosqa_valid.json")
    q.add_argument("--ckpt", required=True,
                   help="workdir (WORKDIR@STEP: one step) or checkpoints/<step> dir of a coconut run; also an HF "
                        "BLT dir or Hub id org/name[@revision] (with the default coconut settings)")
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
    """`data.seq_len` of the training run stored at `ckpt`, if any (0 for other checkpoints)."""
    from hybrid_jax.errors import CheckpointError
    from hybrid_jax.storage.workdir import Workdir
    try:
        data = Workdir.locate(ckpt)[0].run_node("data")
        return int(data["seq_len"]) if data else 0
    except (CheckpointError, KeyError, TypeError, ValueError):
        return 0


def bpb_command(args) -> dict:
    from hybrid_jax.data.corpus import documents, resolve
    from hybrid_jax.data.pipeline import pack
    from hybrid_jax.errors import DataError
    from hybrid_jax.evaluation.bpb import bits_per_byte
    from hybrid_jax.storage.loading import load_any, resolve_source
    from hybrid_jax.tokenizer import EOS_ID

    files = resolve(args.data)
    stream = pack(d for f in files for d in documents(f, args.text_field))
    if args.no_eos:  # byte ids start at OFFSET, so EOS only ever ends a document
        stream = stream[stream != EOS_ID]
    if args.limit_bytes:
        stream = stream[:args.limit_bytes + 1]
    if len(stream) < 2:
        raise DataError(f"{args.data!r}: no bytes to score")
    ckpt = resolve_source(args.ckpt)  # a local directory from here on (a Hub id is fetched once)
    seq_len = args.seq_len or run_seq_len(ckpt) or DEFAULT_SEQ_LEN
    model = load_any(ckpt)
    return bits_per_byte(model, stream, seq_len, args.batch_size)


def run_coconut(ckpt: str):
    """(coconut node, stage the checkpoint was trained at) of a run; defaults for other checkpoints."""
    import ml_collections

    from hybrid_jax.config import coconut_config, update_strict, validate_coconut
    from hybrid_jax.data.curriculum import stage_of_epoch
    from hybrid_jax.storage.checkpoint import read_meta
    from hybrid_jax.storage.workdir import Workdir

    cc = coconut_config()
    stored = Workdir.locate(ckpt)[0].run_node("coconut")
    if stored is None:
        return cc, 0
    update_strict(cc, stored, "coconut.")
    validate_coconut(cc)
    meta = read_meta(ckpt) or {}  # the stage stored with the checkpoint (a run may stop before its last epoch)
    stage = int(meta["stage"]) if "stage" in meta else stage_of_epoch(cc, cc.num_epochs - 1)
    return ml_collections.FrozenConfigDict(cc), stage


def qa_command(args) -> dict:
    from hybrid_jax.config import COCONUT_MODES
    from hybrid_jax.data.coconut import load_examples
    from hybrid_jax.data.curriculum import has_markers
    from hybrid_jax.evaluation.qa import answer_accuracy
    from hybrid_jax.storage.loading import load_any, resolve_source
    from hybrid_jax.tokenizer import LATENT_ID

    examples = load_examples(args.data)
    if args.limit:
        examples = examples[:args.limit]
    ckpt = resolve_source(args.ckpt)  # a local directory from here on (a Hub id is fetched once)
    cc, stage = run_coconut(ckpt)
    mode = args.mode or cc.mode
    if mode not in COCONUT_MODES:
        raise ValueError(f"--mode must be one of {COCONUT_MODES}, got {mode!r}")
    model = load_any(ckpt)
    if has_markers(mode) and model.config.vocab_size <= LATENT_ID:
        raise ValueError(f"{args.ckpt}: vocab_size {model.config.vocab_size} has no <bot>/<eot>/<latent> ids; "
                         "use --mode cot or no-cot")
    steps = None if args.latent_steps < 0 else args.latent_steps
    return answer_accuracy(model, examples, cc, mode, stage, steps, args.batch_size,
                           args.max_new_bytes or cc.max_new_bytes)


def main(argv: list[str]) -> int:
    args = parse(argv)
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

