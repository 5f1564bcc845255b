"""A Markdown table of `bench train --json` results, one row per run, in the columns of the GPU table in
docs/results/2026-11-27-gpu.md.

  python -m benchmarks.bench_table DIR NAME...   # reads DIR/NAME.json (what benchmarks/gpu_bench.sh writes)
"""

import json
import os
import sys

from hybrid_jax.cli import ArgumentParser, run

HEADER = ("| run | device | batch × bytes | step | bytes/s | TFLOP/s | MFU | peak memory | HF step | ratio |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def row(name: str, result: dict) -> str:
    """One table row for one `bench train --json` object."""
    j, c = result["jax"], result["config"]
    mfu = f"{100 * j['mfu']:.1f} %" if j.get("mfu") is not None else "–"
    peak = j.get("peak_memory_bytes_per_device")
    cells = [name, f"{j['devices']} × {j['device']}", f"{c['batch_size']} × {c['seq_len']}",
             f"{j['step_time'] * 1e3:.1f} ms", f"{j['bytes_per_sec']:,.0f}", f"{j['tflops']:.1f}", mfu,
             f"{peak / 2**30:.1f} GiB" if peak else "–"]
    if "hf" in result:
        cells += [f"{result['hf']['step_time'] * 1e3:.1f} ms", f"{result['ratio']:.2f}×"]
    else:
        cells += ["–", "–"]
    return "| " + " | ".join(cells) + " |"


def read(path: str):
    """The run's JSON object, or None when the run left no (complete) JSON."""
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, IndexError, json.JSONDecodeError):
        return None


def table(directory: str, names: list[str]) -> str:
    lines = [HEADER]
    for name in names:
        result = read(os.path.join(directory, f"{name}.json"))
        lines.append(row(name, result) if result else f"| {name} | no result: see {name}.log |"
                     + " |" * 8)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = ArgumentParser(prog="python -m benchmarks.bench_table", description="The table of GPU benchmark runs "
                       "that benchmarks/gpu_bench.sh wrote into DIR (NAME.json and NAME.log per run).",
                       example="python -m benchmarks.bench_table /tmp/gpu_bench 1b toy")
    p.add_argument("dir", help="the directory gpu_bench.sh wrote")
    p.add_argument("names", nargs="+", help="the runs, in table order")
    args = p.parse_args(argv)
    print(table(args.dir, args.names))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
