"""`python -m benchmarks.bench harness [--ckpt runs/toy] [--questions 64] [--hf_requests 96] [--batch_size 32]
[--context_bytes 100-219] [--continuation_bytes 10-39] [--json]`

lm-eval loglikelihood requests per second on a multiple-choice batch (`--questions` questions of 4
choices: real text from this Python's standard library, a context of 100-220 bytes and the true next
10-40 bytes against three from elsewhere), through `hybrid_jax.evaluation.harness.HybridLM` (compile
excluded: a first call compiles its buckets), each question's context computed once and every request
alone, against a direct torch loop over Hugging Face `BltForCausalLM` on a `to_hf` export of the same
weights, one request per forward (HF's batched patcher pads rows and moves their last boundary), torch
at the faster of its default threads and one (probed on 8 requests). The ratios come from paired
rounds, each our whole batch (both ways) and then the next `--batch_size` requests through HF, per
request, so that the machine's drift hits all alike. Also the largest |Δ log-likelihood| against HF.
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
    p.add_argument("--hf_requests", type=int, default=96, help="requests HF scores, --batch_size per round")
    p.add_argument("--batch_size", type=int, default=32, help="hybrid_jax rows per device call")
    p.add_argument("--context_bytes", default="100-219", help="context lengths in characters, LO-HI (inclusive)")
    p.add_argument("--continuation_bytes", default="10-39", help="continuation lengths, LO-HI (inclusive)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if min(args.questions, args.hf_requests, args.batch_size) < 1:
        raise ValueError("--questions, --hf_requests and --batch_size must be >= 1")
    for name in ("context_bytes", "continuation_bytes"):
        lo, _, hi = getattr(args, name).partition("-")
        if not (lo.isdigit() and hi.isdigit() and 1 <= int(lo) <= int(hi)):
            p.error(f"--{name} expects LO-HI with 1 <= LO <= HI, got {getattr(args, name)!r}")
        setattr(args, name, (int(lo), int(hi) + 1))
    return args


def multiple_choice(questions: int, seed: int = 0, context=(100, 220), continuation=(10, 40)) -> list[tuple[str, str]]:
    """(context, continuation) pairs, 4 per question, from real text; lengths drawn from [lo, hi)."""
    import glob
    import os
    rng = np.random.default_rng(seed)
    files = sorted(glob.glob(os.path.join(os.path.dirname(json.__file__), "*.py")))
    text = "".join(open(f, encoding="utf-8").read() for f in files)
    pairs = []
    for _ in range(questions):
        start, n_ctx = int(rng.integers(0, len(text) - 2 * context[1])), int(rng.integers(*context))
        question = text[start:start + n_ctx]
        choices = [text[start + n_ctx:start + n_ctx + int(rng.integers(*continuation))]]
        for _ in range(3):
            other = int(rng.integers(0, len(text) - continuation[1]))
            choices.append(text[other:other + int(rng.integers(*continuation))])
        pairs += [(question, c) for c in choices]
    return pairs


def our_lm(model, context: int, batch_size: int, share_contexts: bool = True):
    from hybrid_jax.config import default_config
    from hybrid_jax.evaluation.harness import HybridLM
    from hybrid_jax.evaluation.scoring import Scorer
    from hybrid_jax.parallel.sharding import make_mesh

    return HybridLM(Scorer.of_model(model, make_mesh(default_config().mesh), context - 1, batch_size),
                    share_contexts=share_contexts)


def requests_of(pairs) -> list:
    from lm_eval.api.instance import Instance
    return [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]


def exported(model):
    import torch
    from transformers import BltForCausalLM

    from hybrid_jax.storage.hf import to_hf

    with tempfile.TemporaryDirectory() as d:
        to_hf(model, model.config, d)
        return BltForCausalLM.from_pretrained(d).float().eval(), torch


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


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str]) -> int:
    args = parse(argv)
    import jax

    from hybrid_jax.storage.loading import context_of, load_any, resolve_source

    ckpt = resolve_source(args.ckpt)
    model, context = load_any(ckpt), context_of(ckpt) or 513
    pairs = multiple_choice(args.questions, context=args.context_bytes, continuation=args.continuation_bytes)
    lm = our_lm(model, context, args.batch_size)
    alone = our_lm(model, context, args.batch_size, share_contexts=False)
    b = args.batch_size
    chunks = [pairs[i:i + b] for i in range(0, len(pairs), b)]
    first, got = timed(lambda: lm.loglikelihood(requests_of(pairs)))  # compiles its shapes
    first_alone, got_alone = timed(lambda: alone.loglikelihood(requests_of(pairs)))
    hf, torch = exported(model)
    default = torch.get_num_threads()
    probe = {}
    for threads in sorted({default, 1}, reverse=True):  # torch at its faster setting on this machine
        torch.set_num_threads(threads)
        probe[threads] = hf_loop(hf, pairs[:8])[0]
    threads = min(probe, key=probe.get)
    torch.set_num_threads(threads)
    # Rounds: ours over the whole batch (contexts shared, then every request alone), then HF over the
    # next `b` requests, per request; the machine's drift hits every part of a round alike.
    whole, whole_alone, rounds, want = [], [], [], []
    for chunk in chunks[:max(1, args.hf_requests // b)]:
        ours_s, _ = timed(lambda: lm.loglikelihood(requests_of(pairs)))
        alone_s, _ = timed(lambda: alone.loglikelihood(requests_of(pairs)))
        hf_s, out = hf_loop(hf, chunk)
        whole.append(ours_s)
        whole_alone.append(alone_s)
        rounds.append((len(pairs) / ours_s, len(chunk) / hf_s, hf_s, len(pairs) / alone_s))
        want += out
    torch.set_num_threads(default)
    ratios = sorted(o / h for o, h, *_ in rounds)
    ratios_alone = sorted(a / h for _, h, _, a in rounds)
    n_hf = len(want)
    result = {
        "ckpt": args.ckpt, "context": context, "requests": len(pairs), "device": jax.devices()[0].device_kind,
        "hybrid_jax": {"requests_per_sec": len(pairs) / statistics.median(whole), "passes_s": whole,
                       "first_call_s": first, "shapes": sorted(lm.scorer.shapes),
                       "shared_context_shapes": sorted(lm.scorer.shared_shapes)},
        "hybrid_jax_unshared": {"requests_per_sec": len(pairs) / statistics.median(whole_alone),
                                "passes_s": whole_alone, "first_call_s": first_alone,
                                "shapes": sorted(alone.scorer.shapes)},
        "hf": {"requests": n_hf, "requests_per_sec": n_hf / sum(s for _, _, s, _ in rounds), "threads": threads,
               "probe_s_by_threads": probe, "torch": torch.__version__},
        "paired": {"rounds": len(rounds), "median_ratio": statistics.median(ratios), "min": ratios[0],
                   "max": ratios[-1], "median_ratio_unshared": statistics.median(ratios_alone)},
        "max_abs_delta_loglik": max(abs(a[0] - w[0]) for a, w in zip(got, want)),
        "max_abs_delta_loglik_unshared": max(abs(a[0] - w[0]) for a, w in zip(got_alone, want)),
        "is_greedy_equal": all(a[1] == w[1] for a, w in zip(got, want)),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    o, h, p = result["hybrid_jax"], result["hf"], result["paired"]
    print(f"{args.ckpt} (context {context} bytes), {len(pairs)} loglikelihood requests ({args.questions} questions x 4)")
    print(f"hybrid_jax: {o['requests_per_sec']:,.1f} requests/s over the whole batch (median of {len(whole)} "
          f"passes; first call with compiles {first:.1f} s; shapes (rows, bytes, patch slots) {o['shapes']})")
    print(f"HF BltForCausalLM torch loop (torch {h['torch']}, {threads} threads, the faster of "
          f"{sorted(probe)}): {h['requests_per_sec']:,.2f} requests/s over {n_hf} requests")
    print(f"hybrid_jax, every request alone (no shared contexts): "
          f"{result['hybrid_jax_unshared']['requests_per_sec']:,.1f} requests/s")
    print(f"requests/s ratio hybrid_jax / HF, {p['rounds']} rounds (our whole batch twice, then {b} HF requests): "
          f"median {p['median_ratio']:.2f}x (range {p['min']:.2f}-{p['max']:.2f}); "
          f"requests alone {p['median_ratio_unshared']:.2f}x")
    print(f"max |Δ loglik| {result['max_abs_delta_loglik']:.2e} (alone {result['max_abs_delta_loglik_unshared']:.2e}), "
          f"is_greedy equal: {result['is_greedy_equal']}")
    return 0


if __name__ == "__main__":
    from hybrid_jax.cli import run
    sys.exit(run(main))
