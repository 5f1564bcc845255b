"""Bad paths given to every command, as a table: a directory where a file is expected and the reverse, an
empty file, a truncated `config.json`, a read-only workdir.

  python -m benchmarks.fault_sweep [--root DIR] [--json]

Each case runs as a process of its own (`python -m hybrid_jax COMMAND ...`); a row gives its exit code,
how many lines it wrote to stderr, the first of them, and whether any file it was given changed on disk.
`tests/test_fault_sweep.py` runs the same cases in-process and asserts one line and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.py")


def make_inputs(root: str) -> dict:
    """The files the cases point at, under `root`: a small saved model (a workdir), a copy of it whose
    config.json is cut in half, an empty file, an empty directory, a text file and a ProsQA-style file."""
    from flax import nnx

    from hybrid_jax.config import load_config
    from hybrid_jax.model import BLT
    from hybrid_jax.storage.checkpoint import save_model
    from hybrid_jax.storage.workdir import Workdir

    os.makedirs(root, exist_ok=True)
    p = {name: os.path.join(root, name) for name in ("model", "truncated", "empty.txt", "empty_dir", "text.txt",
                                                     "qa.json", "readonly")}
    if not os.path.isdir(p["model"]):
        save_model(BLT(load_config(TINY).model, nnx.Rngs(0)), p["model"])
    for copy in ("truncated", "readonly"):
        if not os.path.isdir(p[copy]):
            shutil.copytree(p["model"], p[copy])
    config = str(Workdir(p["truncated"]).config_file)
    text = open(config).read()
    if text.rstrip().endswith("}"):
        with open(config, "w") as f:
            f.write(text[:len(text) // 2])
    open(p["empty.txt"], "w").close()
    os.makedirs(p["empty_dir"], exist_ok=True)
    with open(p["text.txt"], "w") as f:
        f.write("def main():\n    return 0\n" * 20)
    with open(p["qa.json"], "w") as f:
        json.dump([{"question": "q?", "steps": ["s"], "answer": "a"}], f)
    return p


def cases(p: dict, out: str) -> list[tuple[str, list[str]]]:
    """(what is wrong, the command's arguments) for each case; `out` is a scratch directory for outputs."""
    model, trunc, empty, edir, text = p["model"], p["truncated"], p["empty.txt"], p["empty_dir"], p["text.txt"]
    train = ["train", "--config", TINY, "--config.train.steps=3", f"--config.data.train={text}"]
    return [
        ("train: --config a directory", ["train", "--config", edir, "--workdir", f"{out}/t1"]),
        ("train: --config an empty file", ["train", "--config", empty, "--workdir", f"{out}/t2"]),
        ("train: --workdir a file", [*train, "--workdir", text]),
        ("train: --workdir with a truncated config.json", [*train, "--workdir", trunc]),
        ("train: --workdir read-only", [*train, "--workdir", p["readonly"]]),
        ("train: data.train a directory", [*train[:-1], f"--config.data.train={edir}", "--workdir", f"{out}/t3"]),
        ("train: data.train an empty file", [*train[:-1], f"--config.data.train={empty}", "--workdir", f"{out}/t4"]),
        ("generate: --ckpt a file", ["generate", "--ckpt", text, "--prompt", "a"]),
        ("generate: --ckpt an empty directory", ["generate", "--ckpt", edir, "--prompt", "a"]),
        ("generate: --ckpt with a truncated config.json", ["generate", "--ckpt", trunc, "--prompt", "a"]),
        ("generate: --prompt_file a directory", ["generate", "--ckpt", model, "--prompt_file", edir]),
        ("evaluate bpb: --ckpt a file", ["evaluate", "bpb", "--ckpt", text, "--data", text]),
        ("evaluate bpb: --ckpt with a truncated config.json", ["evaluate", "bpb", "--ckpt", trunc, "--data", text]),
        ("evaluate bpb: --data a directory", ["evaluate", "bpb", "--ckpt", model, "--data", edir]),
        ("evaluate bpb: --data an empty file", ["evaluate", "bpb", "--ckpt", model, "--data", empty]),
        ("evaluate qa: --data a directory", ["evaluate", "qa", "--ckpt", model, "--data", edir]),
        ("evaluate qa: --data an empty file", ["evaluate", "qa", "--ckpt", model, "--data", empty]),
        ("inspect: --ckpt a file", ["inspect", "--ckpt", text, "--text", "x"]),
        ("inspect: --ckpt with a truncated config.json", ["inspect", "--ckpt", trunc, "--text", "x"]),
        ("inspect: --file a directory", ["inspect", "--ckpt", model, "--file", edir]),
        ("inspect: --out a directory", ["inspect", "--ckpt", model, "--text", "x", "--out", edir]),
        ("inspect: --html a directory", ["inspect", "--ckpt", model, "--text", "x", "--html", edir]),
        ("convert to-hf: source a file", ["convert", "to-hf", text, "--out", f"{out}/hf1"]),
        ("convert to-hf: source with a truncated config.json", ["convert", "to-hf", trunc, "--out", f"{out}/hf2"]),
        ("convert to-hf: --out a file", ["convert", "to-hf", model, "--out", text]),
        ("convert from-hf: source an empty directory", ["convert", "from-hf", edir, "--out", f"{out}/w1"]),
        ("convert from-hf: source a file", ["convert", "from-hf", text, "--out", f"{out}/w2"]),
        ("prepare: --data a directory", ["prepare", "--data", edir, "--out", f"{out}/p1"]),
        ("prepare: --data an empty file", ["prepare", "--data", empty, "--out", f"{out}/p2"]),
        ("prepare: --out a file", ["prepare", "--data", text, "--out", text]),
        ("calibrate: --ckpt a file", ["calibrate", "--ckpt", text, "--data", text, "--target_patch_len", "4"]),
        ("calibrate: --data a directory", ["calibrate", "--ckpt", model, "--data", edir, "--target_patch_len", "4"]),
        ("calibrate: --data an empty file", ["calibrate", "--ckpt", model, "--data", empty, "--target_patch_len", "4"]),
        ("estimate: --config a directory", ["estimate", "--config", edir]),
        ("estimate: --config an empty file", ["estimate", "--config", empty]),
        ("prosqa: --out a file", ["prosqa", "--out", text, "--n_train", "2", "--n_valid", "1", "--n_test", "1"]),
        ("prosqa: --out read-only", ["prosqa", "--out", p["readonly"], "--n_train", "2", "--n_valid", "1",
                                     "--n_test", "1"]),
        ("profile: logdir a file", ["profile", text]),
        ("profile: logdir an empty directory", ["profile", edir]),
    ]


def snapshot(p: dict) -> dict:
    """(size, mtime) of every file under the inputs, to tell whether a case changed any of them."""
    files = {}
    for path in p.values():
        walk = os.walk(path) if os.path.isdir(path) else [(os.path.dirname(path), [], [os.path.basename(path)])]
        for d, _, names in walk:
            for n in names:
                st = os.stat(os.path.join(d, n))
                files[os.path.join(d, n)] = (st.st_size, st.st_mtime_ns)
    return files


@contextlib.contextmanager
def read_only(path: str):
    """`path` read-only for this process's children: a read-only bind mount over it as root (chmod does
    not stop root), chmod 555 otherwise. Yields False where neither is possible."""
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        try:
            yield True
        finally:
            os.chmod(path, 0o755)
        return
    r = subprocess.run(["mount", "--bind", "-o", "ro", path, path], capture_output=True)
    try:
        yield r.returncode == 0
    finally:
        if r.returncode == 0:
            subprocess.run(["umount", path], capture_output=True)


def run_case(argv: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-m", "hybrid_jax", *argv], capture_output=True, text=True, timeout=600,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))
    lines = r.stderr.strip().splitlines()
    return {"rc": r.returncode, "stderr_lines": len(lines), "first": lines[0] if lines else ""}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fault_sweep", description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/tmp/fault_sweep", help="scratch directory for the inputs")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    args = p.parse_args(argv)
    inputs = make_inputs(os.path.join(args.root, "in"))
    out = os.path.join(args.root, "out")
    shutil.rmtree(out, ignore_errors=True)
    rows = []
    with read_only(inputs["readonly"]) as ro:
        for name, case in cases(inputs, out):
            if "read-only" in name and not ro:
                rows.append({"case": name, "rc": None, "stderr_lines": 0, "first": "(no read-only mount here)"})
                continue
            before = snapshot(inputs)
            row = {"case": name, **run_case(case)}
            row["inputs_changed"] = before != snapshot(inputs)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    if args.json:
        print(json.dumps(rows))
        return 0
    print("| case | exit | stderr lines | inputs changed | first line |")
    print("|---|---|---|---|---|")
    for r in rows:
        first = r["first"].replace("|", "\\|").replace(args.root, "ROOT")
        print(f"| {r['case']} | {r['rc']} | {r['stderr_lines']} | {'yes' if r.get('inputs_changed') else 'no'} | "
              f"{first[:150]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
