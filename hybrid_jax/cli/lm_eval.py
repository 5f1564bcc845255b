"""`hybrid-jax lm-eval --ckpt CKPT --tasks T1,T2 [--include_path DIR] [--num_fewshot K] [--limit N]
[--batch_size B] [--output_path DIR] [--log_samples] [--gen_kwargs K=V,...] [--seed S] [--json]`

EleutherAI's lm-evaluation-harness on any checkpoint `--ckpt` names (a workdir, WORKDIR@STEP, a
checkpoints/<step> directory, a Hugging Face BLT directory or a Hub id), with lm_eval's own flag names
and meanings (`hybrid_jax.evaluation.harness`). Prints lm_eval's results table; `--json` prints its
results object (the one of its `results_*.json`) as one line, and nothing else, on stdout. Datasets
come from Hugging Face's cache or the Hub (offline: `HF_DATASETS_OFFLINE=1`, cached datasets only).

Several processes: `hybrid-jax launch --command lm-eval --processes 2 -- --ckpt ... --tasks ...`
(each process runs the same requests, every batch sharded over all devices; process 0 prints).
"""

from __future__ import annotations

import contextlib
import os
import sys

from hybrid_jax.cli.parser import ArgumentParser

DEFAULT_SEEDS = (0, 1234, 1234, 1234)


def parse(argv):
    p = ArgumentParser(prog="hybrid-jax lm-eval",
                       description="lm-evaluation-harness tasks on a BLT checkpoint (lm_eval's flag names). "
                                   "Offline, with HF_DATASETS_OFFLINE=1, only datasets already cached load.",
                       example="hybrid-jax lm-eval --ckpt runs/toy --tasks arc_easy,piqa --limit 100")
    p.add_argument("--ckpt", required=True,
                   help="workdir (WORKDIR@STEP: one step), checkpoints/<step> dir, HF BLT dir or Hub id "
                        "org/name[@revision]")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval task names, groups or tags")
    p.add_argument("--include_path", default=None, help="a folder of task YAML files to add to lm-eval's")
    p.add_argument("--num_fewshot", type=int, default=None, help="few-shot examples per context (default: "
                                                                 "each task's)")
    p.add_argument("--limit", type=float, default=None,
                   help="examples per task: a count, or a fraction below 1 (default: all)")
    p.add_argument("--batch_size", type=int, default=32, help="rows per device call (rounded up to a "
                                                              "multiple of the devices)")
    p.add_argument("--max_length", type=int, default=0,
                   help="the model's context in bytes, BOS included (default: a run's data.seq_len + 1, a HF "
                        "config's max_position_embeddings)")
    p.add_argument("--output_path", default=None, help="write lm-eval's results_*.json (and samples) here")
    p.add_argument("--log_samples", action="store_true", help="with --output_path: every request and answer")
    p.add_argument("--gen_kwargs", default=None,
                   help="generation arguments for generate_until tasks, e.g. do_sample=True,temperature=0.7,"
                        "top_p=0.9,max_gen_toks=64")
    p.add_argument("--seed", default="0,1234,1234,1234",
                   help="python,numpy,torch,fewshot seeds (one integer sets all four; None leaves one unset); "
                        "the python seed also seeds sampling")
    p.add_argument("--bootstrap_iters", type=int, default=100000, help="resamples for the stderrs (0: none)")
    p.add_argument("--json", action="store_true", help="print the results object as one line of JSON")
    p.add_argument("--coordinator", default="", help="HOST:PORT of process 0 for multi-process runs")
    p.add_argument("--num_processes", type=int, default=1, help="processes in a multi-process run")
    p.add_argument("--process_id", type=int, default=0, help="this process's index")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.max_length < 0 or args.bootstrap_iters < 0:
        raise ValueError("--batch_size must be >= 1, --max_length and --bootstrap_iters >= 0")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        raise ValueError(f"--num_fewshot must be >= 0, got {args.num_fewshot}")
    if args.limit is not None and not args.limit > 0:
        raise ValueError(f"--limit must be > 0, got {args.limit:g}")
    if args.log_samples and not args.output_path:
        raise ValueError("--log_samples needs --output_path")
    if args.output_path and not args.output_path.endswith(".json") and os.path.exists(args.output_path) \
            and not os.path.isdir(args.output_path):
        raise ValueError(f"--output_path {args.output_path}: a file that is not a directory or a .json path")
    args.limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    args.seeds = parse_seeds(args.seed)
    args.task_list = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not args.task_list:
        raise ValueError("--tasks names no task")
    return args


def parse_seeds(text: str) -> tuple:
    """lm_eval's --seed: one integer for all four seeds, or four comma-separated integers or None."""
    parts = [s.strip() for s in text.split(",")]
    try:
        values = [None if s == "None" else int(s) for s in parts]
    except ValueError:
        raise ValueError(f"--seed must be an integer or four comma-separated integers or None, got {text!r}") from None
    if len(values) == 1 and values[0] is not None:
        return tuple(values * 4)
    if len(values) != 4:
        raise ValueError(f"--seed must be an integer or four comma-separated values, got {text!r}")
    return tuple(values)


def model_context(ckpt: str, max_length: int) -> int:
    from hybrid_jax.storage.loading import context_of

    context = max_length or context_of(ckpt)
    if context is None:
        raise ValueError(f"{ckpt}: the model's context is not recorded; give --max_length")
    if context < 2:
        raise ValueError(f"--max_length must be >= 2 (BOS and one byte), got {context}")
    return context


@contextlib.contextmanager
def stdout_to_stderr():
    """Everything written to stdout meanwhile goes to stderr: Python's prints and the C libraries' (gloo
    announces its connections there), so that stdout holds the results alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str]) -> int:
    args = parse(argv)
    with stdout_to_stderr():
        outcome = evaluate(args)
    if outcome is None:  # not process 0
        return 0
    results, note = outcome
    if args.json:
        print(results_json(results))
    else:
        print(note, file=sys.stderr)
        print(results_table(results))
    return 0


def evaluate(args):
    """(results, a line about the run) on process 0, None on the others; writes --output_path."""
    from hybrid_jax.parallel import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    from hybrid_jax.config import default_config
    from hybrid_jax.evaluation import harness
    from hybrid_jax.evaluation.scoring import Scorer
    from hybrid_jax.parallel.sharding import make_mesh
    from hybrid_jax.storage.loading import load_any, resolve_source

    # An unknown task or an unreachable dataset fails before the model is loaded.
    manager = harness.task_manager(args.task_list, args.include_path)
    tasks = harness.load_tasks(manager, args.task_list)
    ckpt = resolve_source(args.ckpt)
    context = model_context(ckpt, args.max_length)
    model = load_any(ckpt)
    scorer = Scorer.of_model(model, make_mesh(default_config().mesh), context - 1, args.batch_size)
    lm = harness.HybridLM(scorer, seed=args.seeds[0] or 0)
    results = harness.evaluate_tasks(lm, args.task_list, args.include_path, args.num_fewshot, args.limit,
                                     args.gen_kwargs, args.log_samples, args.seeds, args.bootstrap_iters,
                                     manager=manager, tasks=tasks)
    if not distributed.is_main_process():
        return None
    if args.output_path:
        harness.save_results(results, args.output_path, args.log_samples)
    return results, (f"{args.ckpt}: context {context} bytes, {lm.truncated} of {lm.requests} loglikelihood "
                     "requests cut from the left")


def results_json(results) -> str:
    from hybrid_jax.evaluation.harness import results_json as dumps
    return dumps(results)


def results_table(results) -> str:
    from hybrid_jax.evaluation.harness import results_table as table
    return table(results)


if __name__ == "__main__":
    from hybrid_jax.cli.runner import run
    sys.exit(run(main))
