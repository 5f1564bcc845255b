"""`python -m benchmarks.bench train --config configs/toy.py [--config.x=y ...] [--compare_hf [--hf_first]] [--json]`
`python -m benchmarks.bench generate --config configs/toy.py [--new_bytes 256] [--contexts 256,1024,4096]
[--batch B] [--speculate K] [--bounds] [--compare_hf] [--json]`
`python -m benchmarks.bench attention --config configs/toy.py [--compare_hf] [--json]`
`python -m benchmarks.bench harness [--ckpt runs/toy] [--json]` (lm-eval loglikelihood requests/s against a torch
loop over Hugging Face BLT: `benchmarks/harness_bench.py`)

attention: forward + backward time of each stack's causal self-attention at the config's batch and
lengths (bytes for the local stacks, `num_slots` patches for the global one): hybrid_jax's blocked
`attend_causal` against `jax.nn.dot_product_attention` with the equivalent mask, and with
`--compare_hf` torch's `scaled_dot_product_attention` (what Hugging Face BLT calls).

generate: new bytes/s of cached generation (random-init weights of the config or `--ckpt`, greedy, EOS treated as
a byte so every run makes exactly `--new_bytes`) after prompts of each context length, and with
`--compare_hf` Hugging Face `generate(use_cache=False)` (its cache fails on custom configs) at the
first context; the ratio compares end-to-end times (prefill + decode, compile excluded). Each row
also counts per byte position: model passes, entropy-model and global-transformer runs; with
`--speculate K` (self-speculative greedy, the same bytes) the acceptance rate of drafted bytes and the
mean bytes kept per row and round. `--bounds` measures this machine's memory bandwidth and matmul
rate and prints, per row, the ms/byte that reading the weights and KV caches, or doing the FLOPs, of
a plain step would take at best (`benchmarks/decode_bounds.py`).

train:
Steady-state train-step speed: compile time, step time (median of `--steps` timed steps after
`--warmup`), bytes/s, model TFLOP/s and MFU (FLOPs from `hybrid_jax.analysis.flops`, peak per device kind or
`train.peak_tflops`). `--compare_hf` also times Hugging Face `BltForCausalLM` (torch, same config, same
batch, AdamW, float32) in a child process, its steps alternating with ours so that both medians come
from the same minutes, and prints the ratio, with the median and quartiles of the per-pair ratios (how
much one run's ratio can be trusted on a machine whose speed drifts). `--hf_first` instead runs all of
HF's steps first, in a process that exits before JAX starts: for a model whose two copies do not fit
one GPU together (the 1B config's alternating run at batch 4 failed to allocate on an 80 GB H100);
no step pairs then. With `--profile`, a summary that fails leaves the timings and a `profile_error`.
The batch is random bytes, so data loading is not timed. On CPU, `--cpu_devices` works as in
`hybrid-jax train` (default: one device on all cores, unless the mesh names a count). Needs torch + transformers only for `--compare_hf`.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time

import jax
import numpy as np

from hybrid_jax.cli import ArgumentParser, run
from hybrid_jax.config import validate
from hybrid_jax.errors import ConfigError

COMMANDS = ("train", "generate", "attention")


def parse(argv):
    """(command, config, options) from `train|generate|attention --config FILE [--config.a.b=v ...] [options]`."""
    p = ArgumentParser(prog="python -m benchmarks.bench", description="Benchmarks: train step speed, cached "
                           "generation and attention, optionally against Hugging Face.",
                           example="python -m benchmarks.bench train --config configs/toy.py --compare_hf")
    p.add_argument("command", choices=COMMANDS, help="what to time (also: harness, with its own options: "
                                                     "`harness --help`)")
    p.add_config()
    p.add_argument("--steps", type=int, default=5, help="train: timed steps")
    p.add_argument("--warmup", type=int, default=2, help="train: untimed steps after compilation")
    p.add_argument("--new_bytes", type=int, default=256, help="generate: bytes to generate per prompt")
    p.add_argument("--contexts", default="256,1024,4096", help="generate: prompt lengths in bytes, comma-separated")
    p.add_argument("--batch", type=int, default=1, help="generate: prompts per batch")
    p.add_argument("--ckpt", default="", help="generate: weights from this workdir / HF dir instead of random init")
    p.add_argument("--speculate", type=int, default=0, help="generate: self-speculative rounds of up to K bytes")
    p.add_argument("--bounds", action="store_true", help="generate: also the memory and compute bounds per byte")
    p.add_argument("--compare_hf", action="store_true", help="also time Hugging Face BltForCausalLM (torch)")
    p.add_argument("--hf_first", action="store_true", help="train --compare_hf: run all of HF's steps first, in a "
                   "process that exits before JAX starts (for a model that does not fit one GPU twice; no step pairs)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--profile", default="", help="train: also trace --steps JAX steps into this directory and "
                   "print where their time goes")
    p.add_argument("--cpu_devices", default="auto", help="train: CPU backend devices, auto (one, or the count the "
                   "mesh names) or a count")
    fv, cfg = p.parse_with_config(argv)
    fv.config = cfg
    fv.contexts = fv.contexts.split(",")
    if fv.steps < 1 or fv.warmup < 0 or fv.new_bytes < 1 or fv.batch < 1:
        raise ConfigError("--steps, --new_bytes and --batch must be >= 1 and --warmup >= 0")
    try:
        fv.contexts = [int(c) for c in fv.contexts]
    except ValueError:
        raise ConfigError(f"--contexts must be integers, got {fv.contexts}") from None
    return fv.command, fv.config, fv


def random_batch(cfg, seed: int = 0) -> np.ndarray:
    """int32 `[batch, seq_len + 1]`: BOS then random printable-ASCII byte ids."""
    rng = np.random.default_rng(seed)
    t = cfg.train
    batch = rng.integers(32 + 4, 127 + 4, size=(t.batch_size, cfg.data.seq_len + 1), dtype=np.int32)
    batch[:, 0] = 1
    return batch


def timed(fn, steps: int, warmup: int) -> tuple[float, list[float]]:
    """(first-call seconds, per-step seconds of `steps` calls after `warmup` more); fn blocks."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, times


def jax_train_step(cfg, batch: np.ndarray):
    """(step, info): `step()` runs one compiled train step to completion; info has the compile time,
    FLOPs per step, peak and XLA's memory estimate."""
    from hybrid_jax.analysis.flops import flops_per_sequence, peak_tflops
    from hybrid_jax.parallel.sharding import make_mesh
    from hybrid_jax.training.step import compile_steps, initial_state

    mesh = make_mesh(cfg.mesh)
    s = compile_steps(cfg, mesh)
    state = [initial_state(cfg, s)]
    x = jax.device_put(batch, s.batch_sharding)

    t0 = time.perf_counter()
    compiled = s.train.lower(state[0], x).compile()
    compile_s = time.perf_counter() - t0

    def step():
        state[0], m = compiled(state[0], x)
        jax.block_until_ready(m)
    mem = compiled.memory_analysis()
    peak_bytes = None
    if mem is not None:
        peak_bytes = int(getattr(mem, "temp_size_in_bytes", 0) + getattr(mem, "argument_size_in_bytes", 0)
                         + getattr(mem, "output_size_in_bytes", 0) - getattr(mem, "alias_size_in_bytes", 0))
    return step, {"hlo": compiled.as_text, "compile_s": compile_s, "flops": flops_per_sequence(cfg.model, cfg.data.seq_len) * batch.shape[0],
                  "peak": peak_tflops(jax.devices()[0].device_kind, cfg.train.peak_tflops), "devices": mesh.size,
                  "device": jax.devices()[0].device_kind, "peak_memory_bytes_per_device": peak_bytes}


def jax_summary(cfg, batch: np.ndarray, info: dict, times: list[float]) -> dict:
    dt = statistics.median(times)
    peak, flops = info["peak"], info["flops"]
    return {"step_time": dt, "bytes_per_sec": batch.shape[0] * cfg.data.seq_len / dt,
            "tflops": flops / dt / 1e12, "mfu": flops / dt / (peak * 1e12 * info["devices"]) if peak else None,
            "compile_s": info["compile_s"], "peak_memory_bytes_per_device": info["peak_memory_bytes_per_device"],
            "device": info["device"], "devices": info["devices"], "step_times": times}


def bench_jax(cfg, batch: np.ndarray, jax_step, steps: int, warmup: int) -> dict:
    """Time the JAX step alone; `jax_step` is `jax_train_step`'s (step, info)."""
    step, info = jax_step
    _, times = timed(step, steps, warmup)
    return jax_summary(cfg, batch, info, times)


def profile_jax(jax_step, tracer) -> dict:
    """Run the JAX steps of `tracer` (a `profiling.StepTracer` from step 0) and say where their time
    went (`hybrid_jax.analysis.profile.summary`)."""
    from hybrid_jax.analysis import profile

    step, info = jax_step
    for i in range(tracer.stop_at):
        tracer.before(i)
        step()
        tracer.after(i, None)
    return profile.summary(tracer.logdir, info["hlo"](), tracer.stop_at, info["devices"])


def hf_train_step(cfg, batch: np.ndarray):
    """(step, info) for the same train step in Hugging Face `BltForCausalLM` (torch eager, AdamW): on
    CUDA when torch sees a GPU, else the CPU. Same dtype as ours: float32 weights, and where the model
    computes in bfloat16 (`model.dtype`) torch autocasts to it, as our bf16 compute keeps fp32 masters."""
    import contextlib

    import torch
    from transformers import BltConfig, BltForCausalLM

    from hybrid_jax.storage.hf.config import hf_config_from_model

    torch.manual_seed(cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    hf_cfg = hf_config_from_model(cfg.model)
    model = BltForCausalLM(BltConfig(**{k: v for k, v in hf_cfg.items() if k != "architectures"})).to(device)
    model.train()
    t = cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=(t.b1, t.b2), eps=t.eps,
                            weight_decay=t.weight_decay)
    ids = torch.from_numpy(batch[:, :-1].astype(np.int64)).to(device)
    labels = torch.from_numpy(batch[:, 1:].astype(np.int64)).to(device)
    bf16 = cfg.model.dtype == "bfloat16"
    autocast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step():
        with autocast():
            logits = model(input_ids=ids, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                     labels.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()  # kernels run async: the step ends when the GPU is done
    return step, {"torch": torch.__version__, "threads": torch.get_num_threads(), "torch_device": device,
                  "torch_dtype": "float32 + bfloat16 autocast" if bf16 else "float32"}


def _hf_worker(conn, cfg, batch: np.ndarray) -> None:
    """Child process: build the HF step, then run one step per message and reply with its seconds
    (a failure to build or run the first step is sent back as the exception)."""
    try:
        step, info = hf_train_step(cfg, batch)
        t0 = time.perf_counter()
        step()
    except Exception as e:  # e.g. torch / transformers missing: the parent raises it
        conn.send(e)
        return
    conn.send((info, time.perf_counter() - t0))
    while True:
        try:
            conn.recv()
        except EOFError:  # the parent closed the pipe: done, or it failed
            return
        t0 = time.perf_counter()
        step()
        conn.send(time.perf_counter() - t0)


@contextlib.contextmanager
def hf_child(cfg, batch: np.ndarray):
    """Yields (info, first-step seconds, step) for HF's train step in a child process; `step()` runs one
    step there and returns its seconds. The child exits when the block does. Torch runs apart: JAX's
    CPU thread pools in the same process would slow it (measured up to 40 %)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_hf_worker, args=(child, cfg, batch), daemon=True)
    proc.start()
    child.close()  # the child's copy is its own; ours would keep the pipe open after the child exits
    try:
        first = parent.recv()  # torch is built and has run once before the timed steps
        if isinstance(first, Exception):
            raise first

        def step():
            parent.send(True)
            return parent.recv()
        yield first[0], first[1], step
    finally:
        parent.close()  # also when JAX failed: the child sees EOF and exits instead of waiting
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()


def _hf_result(cfg, batch: np.ndarray, info: dict, first: float, times: list[float]) -> dict:
    dt = statistics.median(times)
    return {"step_time": dt, "bytes_per_sec": batch.shape[0] * cfg.data.seq_len / dt, "first_step_s": first,
            "step_times": times, **info}


def interleaved(cfg, batch: np.ndarray, jax_step, steps: int, warmup: int) -> tuple[dict, dict]:
    """(jax result, hf result), the two steps timed alternately, so both medians come from the same
    minutes of a machine whose speed drifts."""
    step, info = jax_step
    with hf_child(cfg, batch) as (hf_info, hf_first, hf_step):
        step()
        jax_times, hf_times = [], []
        for i in range(warmup + steps):
            hf_t = hf_step()
            t0 = time.perf_counter()
            step()
            if i >= warmup:
                jax_times.append(time.perf_counter() - t0)
                hf_times.append(hf_t)
    return jax_summary(cfg, batch, info, jax_times), _hf_result(cfg, batch, hf_info, hf_first, hf_times)


def hf_alone(cfg, batch: np.ndarray, steps: int, warmup: int) -> dict:
    """HF's result from `warmup` + `steps` steps in a child process that has exited when this returns
    (`--hf_first`: before JAX starts, so one GPU holds one model at a time)."""
    with hf_child(cfg, batch) as (info, first, step):
        times = [step() for _ in range(warmup + steps)][warmup:]
    return _hf_result(cfg, batch, info, first, times)


def paired_ratios(jax_times: list[float], hf_times: list[float]) -> dict:
    """Speed ratio (hybrid_jax / HF) of each alternating pair of steps: {median, q1, q3, pairs}.

    Each pair ran within the same second, so the quartiles show how far the machine's drift and noise
    move one measurement (on the 2-core CPU the ratio of medians moved 1.32-1.41x between runs)."""
    ratios = sorted(h / j for j, h in zip(jax_times, hf_times))
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {"median": statistics.median(ratios), "q1": q1, "q3": q3, "pairs": len(ratios)}


def prompt_text(n: int) -> str:
    """`n` bytes of real text (this Python's `json/decoder.py`, repeated), so trained entropy models
    patch it as they would in use."""
    import json.decoder
    with open(json.decoder.__file__, encoding="utf-8") as f:
        text = f.read().encode("ascii", "ignore").decode()
    return (text * (n // len(text) + 1))[:n]


def bench_generate_jax(model, contexts, new_bytes: int, batch: int, speculate: int = 0) -> list[dict]:
    from hybrid_jax.inference.generate import run
    rows = []
    for c in contexts:
        res = run(model, [prompt_text(c)] * batch, new_bytes, stop_at_eos=False, speculate=speculate)
        n, s = batch * new_bytes, res.stats
        rows.append({"context": c, "new_bytes": n, "bytes_per_sec": n / res.decode_s,
                     "end_to_end_bytes_per_sec": n / (res.prefill_s + res.decode_s),
                     "ms_per_step": 1e3 * res.decode_s / new_bytes, "ms_per_byte": 1e3 * res.decode_s / n,
                     "prefill_s": res.prefill_s, "compile_s": res.compile_s,
                     "avg_patch_len": float(np.mean(res.avg_patch_len)), "speculate": speculate,
                     "passes_per_byte": s["passes"] / new_bytes,
                     "entropy_runs_per_byte": s["entropy_runs"] / new_bytes,
                     "global_runs_per_byte": s["global_runs"] / new_bytes,
                     "acceptance": s["accepted"] / s["drafted"] if s["drafted"] else None,
                     "mean_kept": s["kept"] / max(s["row_rounds"], 1)})
    return rows


def add_bounds(model, rows: list[dict], batch: int) -> dict:
    """Measure this machine's bandwidth and matmul rate; add each row's bounds (`decode_bounds`) for a
    plain step with the row's share of entropy-model and global runs per step."""
    from benchmarks import decode_bounds as db
    machine = db.measure()
    for r in rows:
        per_pass = r["passes_per_byte"]  # a pass (step or round) runs each model at most once
        r["bounds"] = db.bounds(model, r["context"], batch, min(1.0, r["entropy_runs_per_byte"] / per_pass),
                                min(1.0, r["global_runs_per_byte"] / per_pass), machine)
    return machine


def bench_generate_hf(model, context: int, new_bytes: int, batch: int) -> dict:
    """Hugging Face `generate` (greedy, no cache, EOS suppressed) on the same weights, exported."""
    import tempfile

    import torch
    from transformers import BltForCausalLM

    from hybrid_jax import tokenizer
    from hybrid_jax.storage.hf import to_hf

    with tempfile.TemporaryDirectory() as d:
        to_hf(model, model.config, d)
        hf = BltForCausalLM.from_pretrained(d).float().eval()
    ids = torch.tensor([tokenizer.encode(prompt_text(context))] * batch)
    t0 = time.perf_counter()
    with torch.no_grad():
        hf.generate(ids, max_new_tokens=new_bytes, min_new_tokens=new_bytes, do_sample=False, use_cache=False,
                    pad_token_id=0)
    dt = time.perf_counter() - t0
    return {"context": context, "new_bytes": batch * new_bytes, "bytes_per_sec": batch * new_bytes / dt,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def main_generate(cfg, opts) -> dict:
    from flax import nnx

    from hybrid_jax.model import BLT
    from hybrid_jax.storage.loading import load_any
    model = load_any(opts.ckpt) if opts.ckpt else BLT(cfg.model, nnx.Rngs(cfg.seed))
    result = {"config": {"dtype": model.config.dtype, "patching": model.config.patching.mode, "batch": opts.batch,
                         "device": jax.devices()[0].device_kind},
              "jax": bench_generate_jax(model, opts.contexts, opts.new_bytes, opts.batch, opts.speculate)}
    if opts.bounds:
        result["machine"] = add_bounds(model, result["jax"], opts.batch)
    if opts.compare_hf:
        result["hf"] = bench_generate_hf(model, opts.contexts[0], opts.new_bytes, opts.batch)
        result["ratio"] = result["jax"][0]["end_to_end_bytes_per_sec"] / result["hf"]["bytes_per_sec"]
    if not opts.json:
        for r in result["jax"]:
            print(f"hybrid_jax context {r['context']}: {r['bytes_per_sec']:,.0f} new bytes/s "
                  f"({r['ms_per_byte']:.3f} ms/byte, {r['ms_per_step']:.3f} ms/step; prefill {r['prefill_s']:.2f} s, "
                  f"compile {r['compile_s']:.1f} s, {r['avg_patch_len']:.2f} bytes/patch)")
            acc = (f", acceptance {r['acceptance']:.2f}, {r['mean_kept']:.2f} bytes kept per round"
                   if r["acceptance"] is not None else "")
            print(f"  per byte: {r['passes_per_byte']:.3f} passes, {r['entropy_runs_per_byte']:.3f} entropy-model "
                  f"runs, {r['global_runs_per_byte']:.3f} global-transformer runs{acc}")
            if "bounds" in r:
                b, m = r["bounds"], result["machine"]
                cache = (f", {b['cache_bound_ms_per_byte']:.4f} from cache at {m['cache_bandwidth_gb_s']:.0f} GB/s"
                         if b["cache_bound_ms_per_byte"] is not None else "")
                print(f"  bounds of a plain step: memory {b['memory_bound_ms_per_byte']:.4f} ms/byte at "
                      f"{m['bandwidth_gb_s']:.1f} GB/s{cache} ({b['weight_mb_per_step']:.1f} MB weights + "
                      f"{b['kv_mb_per_step']:.1f} MB KV per step); compute {b['compute_bound_ms_per_byte']:.4f} "
                      f"ms/byte at {m['matmul_gflop_s']:.0f} GFLOP/s ({b['gflop_per_step']:.3f} GFLOP per step)")
        if "hf" in result:
            h = result["hf"]
            print(f"Hugging Face generate (no cache, torch {h['torch']}, {h['threads']} threads) context "
                  f"{h['context']}: {h['bytes_per_sec']:,.1f} new bytes/s")
            print(f"ratio hybrid_jax / Hugging Face (end to end): {result['ratio']:.1f}x")
    return result


def main_train(cfg, opts) -> dict:
    from hybrid_jax.analysis.profile import format_summary
    from hybrid_jax.parallel.distributed import set_cpu_devices
    from hybrid_jax.parallel.host_memory import keep_freed_memory
    from hybrid_jax.training.profiling import StepTracer, unfold_gpu_graphs

    validate(cfg)
    keep_freed_memory()
    if opts.hf_first and not opts.compare_hf:
        raise ConfigError("--hf_first needs --compare_hf")
    if opts.compare_hf and not opts.hf_first:  # torch shares the GPU: JAX would take 75 % of it up front
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    if opts.profile:  # the timed steps then run without CUDA graphs too
        unfold_gpu_graphs()
    set_cpu_devices(cfg, opts.cpu_devices)
    batch = random_batch(cfg)
    result = {"config": {"batch_size": cfg.train.batch_size, "seq_len": cfg.data.seq_len,
                         "dtype": cfg.model.dtype, "patching": cfg.model.patching.mode,
                         "xla_flags": os.environ.get("XLA_FLAGS", "")}}
    tracer = StepTracer(opts.profile, 0, opts.steps) if opts.profile else None  # a bad directory fails now
    if opts.hf_first:  # before anything starts JAX's backend, which on a GPU takes its memory
        result["hf"] = hf_alone(cfg, batch, opts.steps, opts.warmup)
        print(f"bench: Hugging Face done, {result['hf']['step_time'] * 1e3:.1f} ms per step", file=sys.stderr,
              flush=True)
    jax_step = jax_train_step(cfg, batch)
    # Progress on stderr: a long run stopped by a timeout still says how far it got.
    print(f"bench: compiled in {jax_step[1]['compile_s']:.1f} s; timing {opts.steps} steps after "
          f"{opts.warmup} warm-up", file=sys.stderr, flush=True)
    if opts.compare_hf and not opts.hf_first:
        result["jax"], result["hf"] = interleaved(cfg, batch, jax_step, opts.steps, opts.warmup)
        result["paired_ratio"] = paired_ratios(result["jax"]["step_times"], result["hf"]["step_times"])
    else:
        result["jax"] = bench_jax(cfg, batch, jax_step, opts.steps, opts.warmup)
    if "hf" in result:
        result["ratio"] = result["jax"]["bytes_per_sec"] / result["hf"]["bytes_per_sec"]
    if tracer:
        try:
            result["profile"] = profile_jax(jax_step, tracer)
        except Exception as e:  # noqa: BLE001 -- the timings above stand without it; say why it is missing
            result["profile_error"] = f"{type(e).__name__}: {e}"
            print(f"bench: no profile summary: {result['profile_error']}", file=sys.stderr, flush=True)
    if not opts.json:
        j = result["jax"]
        mfu = f"{100 * j['mfu']:.1f} %" if j["mfu"] is not None else "n/a (no peak known for this device)"
        print(f"hybrid_jax: {j['bytes_per_sec']:,.0f} bytes/s, step {j['step_time'] * 1e3:.1f} ms, "
              f"{j['tflops']:.3f} TFLOP/s, MFU {mfu}, compile {j['compile_s']:.1f} s on {j['devices']} x {j['device']}")
        if "hf" in result:
            h = result["hf"]
            where = f"{h['threads']} threads" if h["torch_device"] == "cpu" else h["torch_device"]
            print(f"Hugging Face (torch {h['torch']}, {where}, {h['torch_dtype']}): {h['bytes_per_sec']:,.0f} bytes/s, "
                  f"step {h['step_time'] * 1e3:.1f} ms")
            pr = result.get("paired_ratio")
            pairs = (f" (step pairs: median {pr['median']:.2f}x, quartiles {pr['q1']:.2f}-{pr['q3']:.2f}x over "
                     f"{pr['pairs']} pairs)" if pr else " (HF's steps first, then ours: no step pairs)")
            print(f"ratio hybrid_jax / Hugging Face: {result['ratio']:.2f}x{pairs}")
        if "profile" in result:
            print("\n" + format_summary(result["profile"]))
    return result


def attention_times(b: int, t: int, stack, with_torch: bool) -> dict:
    """Median ms of forward + backward of one causal self-attention `[b, t, heads, head_dim]`."""
    from hybrid_jax.config import kv_heads
    from hybrid_jax.model.attention import attend_causal, causal_mask

    h, g, hd = stack.heads, kv_heads(stack), stack.d_model // stack.heads
    rng = np.random.default_rng(0)
    q = jax.numpy.asarray(rng.standard_normal((b, t, h, hd)), jax.numpy.float32)
    k, v = (jax.numpy.asarray(rng.standard_normal((b, t, g, hd)), jax.numpy.float32) for _ in range(2))
    pos = jax.numpy.broadcast_to(jax.numpy.arange(t), (b, t))
    mask = causal_mask(pos, pos, stack.window)
    impls = {"hybrid_jax": lambda q, k, v: attend_causal(q, k, v, stack.window),
             "jax.nn.dot_product_attention": lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask)}
    out = {}
    for name, fn in impls.items():
        grad = jax.jit(jax.grad(lambda *a, fn=fn: (fn(*a) ** 2).sum(), argnums=(0, 1, 2)))
        _, times = timed(lambda: jax.block_until_ready(grad(q, k, v)), 20, 2)
        out[name] = statistics.median(times) * 1e3
    if with_torch:
        import torch

        tq, tk, tv = (torch.tensor(np.asarray(x)).transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
        tmask = torch.tensor(np.asarray(mask))

        def step():
            o = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tmask, enable_gqa=g != h)
            (o ** 2).sum().backward()
        _, times = timed(step, 20, 2)
        out["torch sdpa"] = statistics.median(times) * 1e3
    return out


def main_attention(cfg, opts) -> dict:
    from hybrid_jax.model.patching import num_slots

    validate(cfg)
    m, b, n = cfg.model, cfg.train.batch_size, cfg.data.seq_len
    result = {}
    for name in ("entropy_model", "local_encoder", "local_decoder", "global_transformer"):
        t = num_slots(m.patching, n) if name == "global_transformer" else n
        times = attention_times(b, t, m[name], opts.compare_hf)
        result[name] = {"shape": [b, t, m[name].heads, m[name].d_model // m[name].heads],
                        "window": m[name].window, "ms": times}
        if not opts.json:
            print(f"{name:<20} [{b}, {t}] window {m[name].window}: "
                  + ", ".join(f"{k} {v:.2f} ms" for k, v in times.items()))
    return result


def main(argv: list[str]) -> int:
    if argv[:1] == ["harness"]:  # a checkpoint, not a config: its own options
        from benchmarks import harness_bench
        return harness_bench.main(argv[1:])
    command, cfg, opts = parse(argv)
    run = {"train": main_train, "generate": main_generate, "attention": main_attention}[command]
    result = run(cfg, opts)
    if opts.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
