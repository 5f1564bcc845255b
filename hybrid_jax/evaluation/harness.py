"""An lm-evaluation-harness backend: `HybridLM` answers lm_eval's three request types with any BLT, and
`evaluate_tasks` runs lm_eval's tasks on it (the `lm-eval` command, the training hook). The only module
of the library that imports lm_eval.

- loglikelihood(context, continuation): the continuation's summed byte log-probabilities after
  `[BOS] + context`, and whether greedy decoding gives exactly it; a sequence longer than the model's
  context is cut from the left and counted (`truncated`, reported in the results' config). Requests
  that share a context (a multiple-choice question's choices) compute it once
  (`hybrid_jax.evaluation.shared`).
- loglikelihood_rolling(text): `[BOS] + text` in windows, every byte scored once, the last window with
  a full window of left context (`hybrid_jax.evaluation.bpb.windows`, as `evaluate bpb --no_eos`).
- generate_until(context, gen_kwargs): the cached generator; `until` stop strings, `max_gen_toks` in
  bytes, `do_sample` / `temperature` / `top_p` / `top_k`. A row's text ends where a stop string begins,
  and a batch stops as soon as every row has produced one (or EOS, or its budget).

Several processes (`jax.distributed`): every process runs lm_eval on the same requests; the forward of
each batch is sharded over the mesh's batch axes, its results replicated, so every process sees the
same numbers, and only process 0 writes or prints anything.
"""

from __future__ import annotations

import contextlib
import json
import sys

import jax
import numpy as np
from lm_eval import simple_evaluate
from lm_eval.api.model import LM
from lm_eval.tasks import TaskManager

from hybrid_jax import tokenizer
from hybrid_jax.errors import ConfigError, DataError
from hybrid_jax.evaluation.scoring import Scorer, loglikelihood_row, rolling_rows
from hybrid_jax.evaluation.shared import Group
from hybrid_jax.inference.generate import run as generate_run
from hybrid_jax.inference.sampling import Sampling

DEFAULT_MAX_GEN = 256
GEN_KEYS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", "top_k"}


class _AllStopped(Exception):
    """Raised from the generator's byte callback once every row of a batch has stopped."""


class HybridLM(LM):
    """lm_eval's `LM` over a `Scorer` (a BLT placed on a mesh)."""

    def __init__(self, scorer: Scorer, seed: int = 0, stream_every: int = 16, share_contexts: bool = True):
        super().__init__()
        self.scorer = scorer
        self.share_contexts = share_contexts
        self.seed = seed
        self.stream_every = stream_every
        self.truncated = 0
        self.requests = 0
        self._generator_model = None

    def new_parameters(self, params) -> None:
        """Score (and generate) with `params` from now on (a training run's latest), compiled code kept."""
        self.scorer.params = params
        self._generator_model = None

    def get_model_info(self) -> dict:
        """Added to the results' config by lm_eval."""
        return {"model_context_bytes": self.scorer.max_inputs + 1, "loglikelihood_requests": self.requests,
                "truncated_contexts": self.truncated, "compiled_shapes": sorted(self.scorer.shapes),
                "compiled_shared_context_shapes": sorted(self.scorer.shared_shapes)}

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        made = [loglikelihood_row(*r.args, self.scorer.max_inputs) for r in requests]
        truncated = sum(t for _, t in made)
        self.truncated += truncated
        self.requests += len(requests)
        if truncated:
            _say(f"{truncated} of {len(requests)} loglikelihood requests were longer than the model's context "
                 f"({self.scorer.max_inputs + 1} bytes) and were cut from the left")
        out: list = [None] * len(requests)
        alone = list(range(len(requests)))
        if self.share_contexts:
            groups, members, alone = shared_groups(requests, made, self.scorer.batch_size)
            for ids, (total, greedy) in zip(members, self.scorer.score_groups(groups)):
                for i, a, g in zip(ids, total, greedy):
                    out[i] = (float(a), bool(g))
        total, greedy = self.scorer.score([made[i][0] for i in alone])
        for i, a, g in zip(alone, total, greedy):
            out[i] = (float(a), bool(g))
        for r, o in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood", r.args, o)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        rows, owner = [], []
        for i, r in enumerate(requests):
            doc = rolling_rows(r.args[0], self.scorer.max_inputs)
            rows += doc
            owner += [i] * len(doc)
        total, _ = self.scorer.score(rows)
        out = [0.0] * len(requests)
        for i, t in zip(owner, total):
            out[i] += float(t)
        for r, o in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood_rolling", r.args, o)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):  # one decoding setting per batch
            groups.setdefault(json.dumps(r.args[1], sort_keys=True, default=str), []).append(i)
        for members in groups.values():
            until, max_gen, sampling = generation_settings(requests[members[0]].args[1])
            prompts = [fit_prompt(requests[i].args[0], self.scorer.max_inputs + 1 - max_gen) for i in members]
            b = min(self.scorer.batch_size, 1 << (len(members) - 1).bit_length())  # a few requests: a small batch
            for start in range(0, len(members), b):
                chunk = prompts[start:start + b]  # the last padded by repeating a prompt: one compiled shape
                texts = self._generate(chunk + [chunk[-1]] * (b - len(chunk)), until, max_gen, sampling)
                for i, text in zip(members[start:start + b], texts):
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out

    def _generate(self, prompts: list[str], until: list[str], max_gen: int, sampling: Sampling) -> list[str]:
        """Each prompt's text up to (not including) its first stop string, EOS or `max_gen` bytes."""
        if self._generator_model is None:
            self._generator_model = self.scorer.local_model()
        stops = [s.encode("utf-8") for s in until if s]
        got: list[list[int]] = [[] for _ in prompts]

        def stopped(ids: list[int]) -> bool:
            raw = tokenizer.ids_to_bytes(ids)
            return tokenizer.EOS_ID in ids or len(ids) >= max_gen or any(s in raw for s in stops)

        def on_bytes(row: int, new: list[int]) -> None:
            got[row] += new
            if row == len(prompts) - 1 and all(stopped(g) for g in got):
                raise _AllStopped

        self.seed += 1  # sampled batches differ from each other, and reruns repeat
        with contextlib.suppress(_AllStopped):
            generate_run(self._generator_model, prompts, max_gen, sampling, seed=self.seed, on_bytes=on_bytes,
                         stream_every=self.stream_every)
        return [cut_at_stop(g, stops) for g in got]


def shared_groups(requests, made, most: int) -> tuple[list[Group], list[list[int]], list[int]]:
    """(groups, request indices of each group, requests scored alone): loglikelihood requests with one
    context and non-empty continuations that fit the context uncut are scored as groups of at most
    `most` (`Scorer.score_groups`); a context asked once, the rest, alone."""
    by_context: dict[str, list[int]] = {}
    for i, r in enumerate(requests):
        row, truncated = made[i]
        if row.scored.any() and not truncated:
            by_context.setdefault(r.args[0], []).append(i)
    groups, members = [], []
    for ids in by_context.values():
        if len(ids) < 2:
            continue
        # A row's ids are [BOS] + context + continuation less its last, which is the last target.
        seqs = [np.append(made[i][0].inputs, made[i][0].targets[-1]) for i in ids]
        cuts = [len(s) - int(made[i][0].scored.sum()) for s, i in zip(seqs, ids)]
        for start in range(0, len(ids), most):
            part = range(start, min(start + most, len(ids)))
            groups.append(Group(seqs[start][:cuts[start]], [seqs[j][cuts[j]:] for j in part]))
            members.append([ids[j] for j in part])
    grouped = {i for part in members for i in part}
    return groups, members, [i for i in range(len(requests)) if i not in grouped]


def generation_settings(kwargs: dict) -> tuple[list[str], int, Sampling]:
    """(stop strings, byte budget, sampling) from lm_eval's gen_kwargs. `do_sample` absent: sample when a
    temperature above 0 is given; `do_sample=True` without a temperature samples at 1."""
    kw = dict(kwargs or {})
    unknown = sorted(set(kw) - GEN_KEYS)
    if unknown:
        _say(f"ignoring generation arguments this backend does not have: {', '.join(unknown)}")
    until = kw.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    max_gen = int(kw.get("max_gen_toks") or DEFAULT_MAX_GEN)
    temperature = float(kw.get("temperature") or 0.0)
    do_sample = kw.get("do_sample")
    do_sample = temperature > 0 if do_sample is None else bool(do_sample)
    if not do_sample:
        return until, max_gen, Sampling()
    top_p = kw.get("top_p")
    return until, max_gen, Sampling(temperature=temperature or 1.0, top_k=int(kw.get("top_k") or 0),
                                    top_p=1.0 if top_p is None else float(top_p))


def fit_prompt(context: str, room: int) -> str:
    """`context` cut from the left to at most `room - 1` bytes (BOS takes one), at a character boundary."""
    if room < 2:
        raise ConfigError(f"max_gen_toks leaves no room for a prompt in the model's context ({room} bytes left)")
    raw = context.encode("utf-8")
    if len(raw) <= room - 1:
        return context
    raw = raw[len(raw) - (room - 1):]
    while raw and (raw[0] & 0xC0) == 0x80:  # a continuation byte: the character began before the cut
        raw = raw[1:]
    return raw.decode("utf-8")


def cut_at_stop(ids: list[int], stops: list[bytes]) -> str:
    """The text of generated ids up to EOS and before the earliest stop string."""
    if tokenizer.EOS_ID in ids:
        ids = ids[:ids.index(tokenizer.EOS_ID)]
    raw = tokenizer.ids_to_bytes(ids)
    end = min([raw.find(s) for s in stops if s in raw] or [len(raw)])
    return raw[:end].decode("utf-8", errors="replace")


def _say(line: str) -> None:
    if jax.process_index() == 0:
        print(line, file=sys.stderr)


def task_manager(names: list[str], include_path: str | None) -> TaskManager:
    """lm_eval's TaskManager that knows every name: indexing lm_eval's own few thousand task files takes
    tens of seconds on a small CPU, so tasks all found under `include_path` are looked up there alone.
    An unknown name raises ConfigError."""
    if include_path:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(local.match_tasks([n]) for n in names):
            return local
    manager = TaskManager(include_path=include_path or None)
    missing = [n for n in names if not manager.match_tasks([n])]
    if missing:
        where = f" or under --include_path {include_path}" if include_path else ""
        raise ConfigError(f"unknown task {', '.join(missing)}: not one of lm-eval's tasks{where} "
                          "(`lm-eval ls tasks` lists them)")
    return manager


def load_tasks(manager: TaskManager, names: list[str]) -> list:
    """lm_eval's Task / Group objects of `names` with their datasets loaded. A dataset that cannot be
    had (offline and not cached, a missing data file) raises DataError naming the task."""
    built = []
    for name in names:
        try:
            obj = manager._load_spec(name)  # noqa: SLF001 -- load() alone would also flatten groups
        except Exception as e:  # noqa: BLE001 -- datasets / fsspec / huggingface_hub raise anything
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"task {name}: its dataset could not be loaded ({text}); offline "
                            "(HF_DATASETS_OFFLINE=1) only datasets already cached load") from None
        built += obj if isinstance(obj, list) else [obj]
    return built


def evaluate_tasks(lm: HybridLM, names: list[str], include_path: str | None = None, num_fewshot: int | None = None,
                   limit: float | None = None, gen_kwargs: str | None = None, log_samples: bool = False,
                   seeds: tuple = (0, 1234, 1234, 1234), bootstrap_iters: int = 100000,
                   manager: TaskManager | None = None, tasks: list | None = None) -> dict:
    """lm_eval's results object (with "results", as in its `results_*.json`; "samples" too when
    `log_samples`) of `names` (task names, groups or tags); `tasks`: their objects from `load_tasks`, if
    loaded already (they are run once)."""
    manager = manager or task_manager(names, include_path)
    tasks = tasks or load_tasks(manager, names)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the command's (`--json`: one line)
        return simple_evaluate(model=lm, tasks=tasks, task_manager=manager, num_fewshot=num_fewshot, limit=limit,
                               gen_kwargs=gen_kwargs or None, log_samples=log_samples,
                               bootstrap_iters=bootstrap_iters, random_seed=seeds[0], numpy_random_seed=seeds[1],
                               torch_random_seed=seeds[2], fewshot_random_seed=seeds[3])


def save_results(results: dict, output_path: str, log_samples: bool) -> None:
    """lm_eval's own files under `output_path`: results_<date>.json, and samples_<task>_<date>.jsonl."""
    from lm_eval.loggers import EvaluationTracker

    import glob
    import os

    tracker = EvaluationTracker(output_path=output_path)
    samples = results.get("samples") if log_samples else None
    tracker.save_results_aggregated(results={k: v for k, v in results.items() if k != "samples"}, samples=samples)
    # lm_eval logs a failed write as a warning and goes on: a missing file is our error to report.
    where = os.path.dirname(output_path) if output_path.endswith(".json") else output_path
    if not glob.glob(os.path.join(glob.escape(where), "**", f"*{tracker.date_id}.json"), recursive=True):
        raise OSError(f"--output_path {output_path}: lm-eval could not write its results there")
    for task in (results["configs"] if log_samples else []):
        tracker.save_results_samples(task_name=task, samples=samples[task])


def results_json(results: dict) -> str:
    """The results object as one line of JSON (samples left out, as in `results_*.json`)."""
    from lm_eval.utils import handle_non_serializable

    return json.dumps({k: v for k, v in results.items() if k != "samples"}, default=handle_non_serializable,
                      ensure_ascii=False)


def results_table(results: dict) -> str:
    from lm_eval.utils import make_table

    return make_table(results) + ("\n" + make_table(results, "groups") if results.get("groups") else "")


def metric_rows(results: dict) -> dict:
    """{"harness/<task>/<metric>": value} of the numeric results (stderr left out), for training logs."""
    out = {}
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            metric = key.split(",")[0]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "stderr" not in metric:
                out[f"harness/{task}/{metric}"] = float(value)
    return out
