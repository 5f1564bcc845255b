"""`hybrid-jax lm-eval` (hybrid_jax.evaluation.harness) against Hugging Face `BltForCausalLM` on a `to-hf`
export of the same model, request by request: the local tasks of tests/harness_tasks (one per output
type) through the command, randomized requests through the LM, `evaluate bpb` on the rolling documents,
and one-line errors. Offline: HF_DATASETS_OFFLINE=1 (conftest.py)."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("lm_eval")
torch = pytest.importorskip("torch")

from harness_helpers import (exported_model, hf_generate_until, hf_loglikelihood,  # noqa: E402
                             hf_rolling)

from hybrid_jax.cli import evaluate, runner  # noqa: E402
from hybrid_jax.cli.lm_eval import main as lm_eval_main  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = os.path.join(ROOT, "tests", "harness_tasks")
LOCAL = ["hj_choice", "hj_loglik", "hj_rolling", "hj_generate"]
MAX_LENGTH = 48  # the model's context in the tests: some requests and documents are longer
TOL = 1e-4


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    # HF runs one small row at a time: its thread pool only adds contention (0.65 s per forward with the
    # default threads on the 2-core CI machine, 0.02 s with one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield exported_model(str(tmp_path_factory.mktemp("hf") / "model"))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def command_run(export, tmp_path_factory):
    """(results object printed by `--json`, samples by task) of the local tasks through the command."""
    _, path = export
    out = tmp_path_factory.mktemp("lm_eval_out")
    rc, stdout, stderr = lm_eval(["--ckpt", path, "--include_path", TASKS, "--tasks", ",".join(LOCAL),
                                  "--max_length", str(MAX_LENGTH), "--batch_size", "8", "--output_path", str(out),
                                  "--log_samples", "--bootstrap_iters", "0", "--json"])
    assert rc == 0, stderr[-3000:]
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout[:500]
    samples = {}
    for task in LOCAL:
        (name,) = glob.glob(str(out / "**" / f"samples_{task}_*.jsonl"), recursive=True)
        samples[task] = [json.loads(line) for line in open(name)]
    assert glob.glob(str(out / "**" / "results_*.json"), recursive=True)
    return json.loads(lines[0]), samples


def lm_eval(argv):
    """(exit code, stdout, stderr) of `hybrid-jax lm-eval ARGV` run in this process, from the repository
    root (the tasks' data_files are relative to it)."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = runner.run(lm_eval_main, argv)
    finally:
        os.chdir(cwd)
    return rc, out.getvalue(), err.getvalue()


def test_local_tasks_through_the_command_equal_hf(export, command_run):
    hf, _ = export
    results, samples = command_run
    assert set(LOCAL) <= set(results["results"])
    info = results["config"]
    assert info["model_context_bytes"] == MAX_LENGTH and info["truncated_contexts"] >= 1
    assert len({length for _, length, _ in info["compiled_shapes"]}) <= 3  # buckets 16, 32, 47
    worst, greedy_seen = 0.0, set()
    for task in ("hj_choice", "hj_loglik"):
        for s in samples[task]:
            for args, (resp,) in zip(s["arguments"].values(), s["resps"]):
                context, continuation = args["arg_0"], args["arg_1"]
                want, want_greedy = hf_loglikelihood(hf, context, continuation, MAX_LENGTH)
                got, got_greedy = float(resp[0]), resp[1] == "True"
                worst = max(worst, abs(got - want))
                assert got_greedy == want_greedy, (context, continuation)
                greedy_seen.add(got_greedy)
    print(f"max |Δ loglikelihood| vs HF over the local tasks: {worst:.2e}")
    assert worst <= TOL
    for s in samples["hj_rolling"]:
        text = s["arguments"]["gen_args_0"]["arg_0"]
        assert abs(float(s["resps"][0][0]) - hf_rolling(hf, text, MAX_LENGTH)) <= TOL, text[:40]
    assert max(len(s["arguments"]["gen_args_0"]["arg_0"].encode()) for s in samples["hj_rolling"]) > 2 * MAX_LENGTH
    for s in samples["hj_generate"]:
        prompt, kwargs = s["arguments"]["gen_args_0"]["arg_0"], s["arguments"]["gen_args_0"]["arg_1"]
        assert s["resps"][0][0] == hf_generate_until(hf, prompt, kwargs["until"], kwargs["max_gen_toks"])


def test_rolling_equals_evaluate_bpb(export, command_run, tmp_path, capsys):
    """Per document: the rolling log-likelihood in bits per byte is `evaluate bpb --no_eos` on a file
    holding that document, with windows of the context less one prediction."""
    _, path = export
    _, samples = command_run
    for i, s in enumerate(samples["hj_rolling"]):
        text = s["arguments"]["gen_args_0"]["arg_0"]
        (tmp_path / f"{i}.txt").write_bytes(text.encode())
        rc = runner.run(evaluate.main, ["bpb", "--ckpt", path, "--data", str(tmp_path / f"{i}.txt"), "--no_eos",
                                        "--seq_len", str(MAX_LENGTH - 1), "--json"])
        out = capsys.readouterr().out
        assert rc == 0
        bpb = json.loads(out)["bpb"]
        n = len(text.encode())
        assert abs(bpb - -float(s["resps"][0][0]) / n / np.log(2)) <= 1e-5, (text[:40], bpb)


def random_text(rng, n: int) -> str:
    pieces = ["a", "b", " ", "\n", "é", "ß", "€", "日本", "🙂", "def ", "x = 1", ".", ","]
    return "".join(rng.choice(pieces) for _ in range(n))


def test_randomized_requests_equal_hf(export):
    """Empty continuations, ones starting with a space or a newline, multi-byte characters on both sides
    of the boundary, contexts longer than the model's, and continuations that greedy decoding writes."""
    from lm_eval.api.instance import Instance

    from hybrid_jax.config import default_config
    from hybrid_jax.evaluation.harness import HybridLM
    from hybrid_jax.evaluation.scoring import Scorer
    from hybrid_jax.parallel.sharding import make_mesh
    from hybrid_jax.storage.loading import load_any

    hf, path = export
    rng = np.random.default_rng(0)
    pairs = []
    for k in range(24):
        context = random_text(rng, int(rng.integers(0, 40)))
        continuation = ["", " " + random_text(rng, 3), "\n" + random_text(rng, 2), "日本語", "🙂x",
                        random_text(rng, int(rng.integers(1, 8)))][k % 6]
        pairs.append((context, continuation))
    written = []  # continuations greedy decoding writes (those that are whole UTF-8): is_greedy must hold
    for context in ("€uro", "Hello wor", "def f(x):", "日本", "x = [1, 2,"):
        text = hf_generate_until(hf, context, [], 5)
        if len(text.encode()) == 5 and "\ufffd" not in text:
            written.append(len(pairs))
            pairs.append((context, text))
    assert written
    assert any(len((c + x).encode()) >= MAX_LENGTH for c, x in pairs)
    scorer = Scorer.of_model(load_any(path), make_mesh(default_config().mesh), MAX_LENGTH - 1, 8)
    lm = HybridLM(scorer)
    got = lm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)])
    for (context, continuation), (ll, greedy) in zip(pairs, got):
        want, want_greedy = hf_loglikelihood(hf, context, continuation, MAX_LENGTH)
        assert abs(ll - want) <= TOL and greedy == want_greedy, (context, continuation, ll, want)
    assert all(got[i][1] for i in written) and got[0] == (0.0, True)
    assert lm.truncated == sum(len((c + x).encode()) + 1 > MAX_LENGTH for c, x in pairs)


def test_last_byte_reads_the_patch_before_its_own_as_in_hf(tmp_path):
    """An export with `max_patch_length`, which Hugging Face runs without `include_next_token` (the last
    byte of a sequence reads the patch before its own): requests of every length, alone and sharing
    their contexts, equal HF's, rows that fill their padded length or not."""
    from lm_eval.api.instance import Instance

    from hybrid_jax.config import default_config
    from hybrid_jax.evaluation.harness import HybridLM
    from hybrid_jax.evaluation.scoring import Scorer
    from hybrid_jax.parallel.sharding import make_mesh
    from hybrid_jax.storage.loading import load_any

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hf, path = exported_model(str(tmp_path / "model"), max_patch_length=3, include_next_token=False)
        rng = np.random.default_rng(1)
        pairs = [(random_text(rng, int(rng.integers(0, 30))), random_text(rng, int(rng.integers(1, 6))))
                 for _ in range(40)]
        for k in range(6):
            context = random_text(rng, [14, 5, 20, 0, 9, 3][k])
            pairs += [(context, random_text(rng, int(rng.integers(1, 6)))) for _ in range(2 + k % 3)]
        want = [hf_loglikelihood(hf, context, continuation, MAX_LENGTH) for context, continuation in pairs]
        for share in (False, True):
            scorer = Scorer.of_model(load_any(path), make_mesh(default_config().mesh), MAX_LENGTH - 1, 8)
            lm = HybridLM(scorer, share_contexts=share)
            got = lm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)])
            assert bool(scorer.shared_shapes) == share
            for pair, (ll, greedy), (ll_hf, greedy_hf) in zip(pairs, got, want):
                assert abs(ll - ll_hf) <= TOL and greedy == greedy_hf, (pair, share, ll, ll_hf)
    finally:
        torch.set_num_threads(threads)


def test_errors_are_one_line(export, tmp_path):
    _, path = export
    (tmp_path / "offline.yaml").write_text("task: hj_offline\ndataset_path: nobody/no_such_dataset_xyz\n"
                                           "output_type: loglikelihood\ntest_split: test\n"
                                           "doc_to_text: '{{a}}'\ndoc_to_target: '{{b}}'\n")
    cases = [
        (["--ckpt", path, "--tasks", "hj_no_such_task", "--include_path", TASKS], "unknown task hj_no_such_task"),
        (["--ckpt", path, "--tasks", "hj_offline", "--include_path", str(tmp_path)], "could not be loaded"),
        (["--ckpt", str(tmp_path / "nope"), "--tasks", "hj_choice", "--include_path", TASKS], "no such checkpoint"),
        (["--ckpt", path, "--tasks", "hj_choice", "--include_path", TASKS, "--limit", "0"], "--limit"),
        (["--ckpt", path, "--tasks", "hj_choice", "--seed", "1,2"], "--seed"),
        (["--ckpt", path, "--tasks", "hj_choice", "--output_path", str(tmp_path / "offline.yaml")], "--output_path"),
    ]
    for argv, fragment in cases:
        rc, out, err = lm_eval(argv)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert rc == 2 and out == "" and len(lines) == 1 and fragment in lines[0], (argv, err[-1000:])


@pytest.mark.slow  # a process of its own (imports jax, torch and lm_eval)
def test_module_entry_point_reports_a_bad_checkpoint(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hybrid_jax.cli.lm_eval", "--ckpt", str(tmp_path / "nope"),
                        "--tasks", "hj_choice", "--include_path", TASKS], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and "no such checkpoint" in r.stderr


def event_tags(logdir: str) -> set[str]:
    """The scalar tags in the TensorBoard event files under `logdir` (TFRecord framing: length u64,
    its crc u32, the record, its crc u32)."""
    import struct

    from tensorboardX.proto import event_pb2

    tags = set()
    for path in glob.glob(os.path.join(logdir, "*")):
        data = open(path, "rb").read()
        at = 0
        while at < len(data):
            (n,) = struct.unpack("<Q", data[at:at + 8])
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + n])
            tags |= {v.tag for v in event.summary.value}
            at += 16 + n
    return tags


@pytest.mark.slow  # trains, then loads the checkpoint and compiles again (~45 s of one core)
def test_training_hook_logs_harness_rows_equal_to_the_command(tmp_path):
    """`eval.harness.*` during training: harness/<task>/<metric> rows in metrics.jsonl and TensorBoard,
    equal to `lm-eval` on the checkpoint of that step (the run's context: data.seq_len + 1)."""
    from train_helpers import tiny_config, write_corpus

    from hybrid_jax.training import train
    from hybrid_jax.training.metrics import read_metrics

    import jax
    cfg = tiny_config(write_corpus(tmp_path / "corpus", n_files=4, words=200), steps=2, mesh=(2, 1, 1))
    cfg.eval.harness.update(tasks="hj_choice,hj_rolling", every=2, limit=3, include_path=TASKS)
    workdir = str(tmp_path / "run")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        train(cfg, workdir, devices=jax.devices()[:2])  # the command below shards over all 8
    finally:
        os.chdir(cwd)
    (row,) = [r for r in read_metrics(workdir) if any(k.startswith("harness/") for k in r)]
    assert row["step"] == 2 and {"harness/hj_choice/acc", "harness/hj_rolling/bits_per_byte"} <= set(row)
    assert "harness/hj_rolling/bits_per_byte" in event_tags(os.path.join(workdir, "tb"))
    rc, out, err = lm_eval(["--ckpt", workdir, "--include_path", TASKS, "--tasks", "hj_choice,hj_rolling",
                            "--limit", "3", "--bootstrap_iters", "0", "--json"])
    assert rc == 0, err[-2000:]
    results = json.loads(out)["results"]
    assert results["hj_choice"]["acc,none"] == row["harness/hj_choice/acc"]
    assert abs(results["hj_rolling"]["bits_per_byte,none"] - row["harness/hj_rolling/bits_per_byte"]) <= 1e-5


def samples_of(out_dir) -> dict:
    """{task: [responses of each sample]} from lm-eval's samples_<task>_*.jsonl under `out_dir`."""
    found = {}
    for task in LOCAL:
        (name,) = glob.glob(os.path.join(str(out_dir), "**", f"samples_{task}_*.jsonl"), recursive=True)
        found[task] = [json.loads(line)["resps"] for line in open(name)]
    return found


@pytest.mark.slow  # two processes of 2 devices each, and one process of one device
def test_two_processes_equal_one_process(export, tmp_path):
    """Every process runs the same requests, each batch sharded over the 4 devices of both; process 0
    alone prints (one JSON line: gloo's own lines go to stderr) and writes."""
    _, path = export
    args = ["--ckpt", path, "--include_path", TASKS, "--tasks", ",".join(LOCAL), "--max_length", str(MAX_LENGTH),
            "--batch_size", "8", "--bootstrap_iters", "0", "--json", "--log_samples"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    two = subprocess.run([sys.executable, "-m", "hybrid_jax", "launch", "--command", "lm-eval", "--processes", "2",
                          "--devices_per_process", "2", "--", *args, "--output_path", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "hybrid_jax", "lm-eval", *args, "--output_path", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=1"))
    assert one.returncode == 0, one.stderr[-3000:]
    assert len(two.stdout.strip().splitlines()) == 1 and len(one.stdout.strip().splitlines()) == 1
    a, b = samples_of(tmp_path / "two"), samples_of(tmp_path / "one")
    for task in LOCAL:
        flat_a = [x for resp in a[task] for x in np.ravel(resp)]
        flat_b = [x for resp in b[task] for x in np.ravel(resp)]
        assert len(flat_a) == len(flat_b) > 0
        for x, y in zip(flat_a, flat_b):
            try:  # log-likelihoods: the two shardings sum in other orders
                assert abs(float(x) - float(y)) <= TOL, (task, x, y)
            except ValueError:  # generated text and is_greedy flags
                assert x == y, (task, x, y)
    ra, rb = json.loads(two.stdout)["results"], json.loads(one.stdout)["results"]
    for task in LOCAL:
        for key, value in ra[task].items():
            if isinstance(value, float):
                assert abs(value - rb[task][key]) <= 1e-5 * max(1.0, abs(value)), (task, key)
