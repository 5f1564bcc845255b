"""`python -m benchmarks.bench harness [--ckpt runs/toy] [--questions 64] [--hf_requests 64] [--batch_size 32] [--json]`

lm-eval loglikelihood requests per second on a multiple-choice batch (`--questions` questions of 4
choices: real text from this Python's standard library, a context of 100-220 bytes and the true next
10-40 bytes against three from elsewhere), through `hybrid_jax.evaluation.harness.HybridLM` (compile
excluded: a first call compiles its buckets), against a direct torch loop over Hugging Face
`BltForCausalLM` on a `to_hf` export of the same weights, one request per forward (HF's batched
patcher pads rows and moves their last boundary), with torch's default threads and with one (the
faster counts), in the same process, ours timed before and after HF's. Also the largest |Δ log-likelihood| between the two on the requests HF scored.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time

import numpy as np

from hybrid_jax.cli import ArgumentParser


def parse(argv):
    p = ArgumentParser(prog="python -m benchmarks.bench harness",
                       description="lm-eval loglikelihood requests/s: hybrid_jax against a torch loop over HF BLT.",
                       example="python -m benchmarks.bench harness --ckpt runs/toy")
    p.add_argument("--ckpt", default="runs/toy", help="the checkpoint (workdir, HF directory, ...)")
    p.add_argument("--questions", type=int, default=64, help="multiple-choice questions (4 requests each)")
    p.add_argument("--hf_requests", type=int, default=64, help="requests HF scores (its rate is per request)")
    p.add_argument("--batch_size", type=int, default=32, help="hybrid_jax rows per device call")
    p.add_argument("--repeats", type=int, default=3, help="timed passes of hybrid_jax over the whole batch")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if min(args.questions, args.hf_requests, args.batch_size, args.repeats) < 1:
        raise ValueError("--questions, --hf_requests, --batch_size and --repeats must be >= 1")
    return args


def multiple_choice(questions: int, seed: int = 0) -> list[tuple[str, str]]:
    """(context, continuation) pairs, 4 per question, from real text."""
    import glob
    import os
    rng = np.random.default_rng(seed)
    files = sorted(glob.glob(os.path.join(os.path.dirname(json.__file__), "*.py")))
    text = "".join(open(f, encoding="utf-8").read() for f in files)
    pairs = []
    for _ in range(questions):
        start, n_ctx = int(rng.integers(0, len(text) - 400)), int(rng.integers(100, 220))
        context = text[start:start + n_ctx]
        choices = [text[start + n_ctx:start + n_ctx + int(rng.integers(10, 40))]]
        for _ in range(3):
            other = int(rng.integers(0, len(text) - 50))
            choices.append(text[other:other + int(rng.integers(10, 40))])
        pairs += [(context, c) for c in choices]
    return pairs


def ours(model, context: int, pairs, batch_size: int, repeats: int) -> tuple[dict, list]:
    from lm_eval.api.instance import Instance

    from hybrid_jax.config import default_config
    from hybrid_jax.evaluation.harness import HybridLM
    from hybrid_jax.evaluation.scoring import Scorer
    from hybrid_jax.parallel.sharding import make_mesh

    lm = HybridLM(Scorer.of_model(model, make_mesh(default_config().mesh), context - 1, batch_size))
    requests = [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]
    t0 = time.perf_counter()
    out = lm.loglikelihood(requests)  # compiles one forward per bucket
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        lm.loglikelihood(requests)
        times.append(time.perf_counter() - t0)
    return {"first_call_s": first, "times_s": times, "shapes": sorted(lm.scorer.shapes)}, out


def hf_loops(model, pairs) -> tuple[dict, list]:
    """HF's loop with torch's default threads and with one (on a small shared CPU one can be faster);
    its rate is the faster one's."""
    import torch
    from transformers import BltForCausalLM

    from hybrid_jax.storage.hf import to_hf

    with tempfile.TemporaryDirectory() as d:
        to_hf(model, model.config, d)
        hf = BltForCausalLM.from_pretrained(d).float().eval()
    default = torch.get_num_threads()
    runs = {}
    for threads in sorted({default, 1}, reverse=True):
        torch.set_num_threads(threads)
        runs[threads] = hf_loop(hf, pairs)
    torch.set_num_threads(default)
    best = min(runs, key=lambda t: runs[t][0])
    return {"seconds": runs[best][0], "threads": best, "seconds_by_threads": {t: r[0] for t, r in runs.items()},
            "torch": torch.__version__}, runs[best][1]


def hf_loop(hf, pairs) -> tuple[float, list]:
    """(seconds, [(loglikelihood, is_greedy)]): one forward per request."""
    import torch

    from hybrid_jax import tokenizer

    out = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for context, continuation in pairs:
            cont = tokenizer.encode(continuation, add_bos=False)
            ids = tokenizer.encode(context) + cont
            logits = hf(input_ids=torch.tensor([ids[:-1]]), use_cache=False).logits[0, -len(cont):]
            lp = torch.log_softmax(logits.float(), -1)
            target = torch.tensor(cont)
            out.append((float(lp[torch.arange(len(cont)), target].sum()), bool((lp.argmax(-1) == target).all())))
    return time.perf_counter() - t0, out


def main(argv: list[str]) -> int:
    args = parse(argv)
    import jax

    from hybrid_jax.storage.loading import context_of, load_any, resolve_source

    ckpt = resolve_source(args.ckpt)
    model, context = load_any(ckpt), context_of(ckpt) or 513
    pairs = multiple_choice(args.questions)
    hf_pairs = pairs[:args.hf_requests]
    before, got = ours(model, context, pairs, args.batch_size, args.repeats)
    hf, want = hf_loops(model, hf_pairs)
    after, _ = ours(model, context, pairs, args.batch_size, args.repeats)
    ours_s = statistics.median(before["times_s"] + after["times_s"])
    result = {
        "ckpt": args.ckpt, "context": context, "requests": len(pairs), "device": jax.devices()[0].device_kind,
        "hybrid_jax": {"requests_per_sec": len(pairs) / ours_s, "median_s": ours_s, **before,
                       "times_after_hf_s": after["times_s"]},
        "hf": {"requests": len(hf_pairs), "requests_per_sec": len(hf_pairs) / hf["seconds"], **hf},
        "max_abs_delta_loglik": max(abs(a[0] - b[0]) for a, b in zip(got, want)),
        "is_greedy_equal": all(a[1] == b[1] for a, b in zip(got, want)),
    }
    result["ratio"] = result["hybrid_jax"]["requests_per_sec"] / result["hf"]["requests_per_sec"]
    if args.json:
        print(json.dumps(result))
        return 0
    o, h = result["hybrid_jax"], result["hf"]
    print(f"{args.ckpt} (context {context} bytes), {len(pairs)} loglikelihood requests ({args.questions} questions x 4)")
    print(f"hybrid_jax: {o['requests_per_sec']:,.1f} requests/s (median of {2 * args.repeats} passes, "
          f"{ours_s:.2f} s; first call with compiles {o['first_call_s']:.1f} s, shapes {o['shapes']})")
    print(f"HF BltForCausalLM torch loop ({h['torch']}, {h['threads']} threads): {h['requests_per_sec']:,.2f} "
          f"requests/s over {h['requests']} requests")
    print(f"ratio: {result['ratio']:.1f}x; max |Δ loglik| {result['max_abs_delta_loglik']:.2e}, is_greedy equal: "
          f"{result['is_greedy_equal']}")
    return 0


if __name__ == "__main__":
    from hybrid_jax.cli import run
    sys.exit(run(main))
