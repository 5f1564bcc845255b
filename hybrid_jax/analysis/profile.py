"""Where a profiled step's time went: `hybrid-jax profile PROFILE_DIR [--json]`.

PROFILE_DIR is what `train` (config `train.profile_steps`) or `bench train --profile` traced into.
`op_times` reads the trace back (the `xplane.pb` that `jax.profiler` writes) and sums the time of each
XLA instruction; `source_table` / `kind_table` attribute those times to lines of hybrid_jax and to kinds
of work, using what `instructions` reads from the compiled HLO text that `train` stores beside the trace.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re

import hybrid_jax

# What `write_traced` stores beside a trace: the traced step's compiled HLO, and how many steps on how
# many devices were traced.
HLO_FILE = "train_step.hlo.txt"
STEPS_FILE = "traced_steps.json"

_DEVICE_PLANES = ("/device:GPU", "/device:TPU")
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def write_traced(logdir: str, hlo: str, steps: int, devices: int) -> str:
    """Store what a summary of the trace in `logdir` needs besides the trace; returns the HLO file's path."""
    path = os.path.join(logdir, HLO_FILE)
    with open(path, "w") as f:
        f.write(hlo)
    with open(os.path.join(logdir, STEPS_FILE), "w") as f:
        json.dump({"steps": steps, "devices": devices}, f)
    return path


def summarize_dir(logdir: str) -> dict:
    """`summary` of a profile directory that `train` or `bench train --profile` wrote; OSError, ValueError
    or KeyError when it lacks a trace or what `write_traced` stores."""
    with open(os.path.join(logdir, HLO_FILE)) as f:
        hlo = f.read()
    with open(os.path.join(logdir, STEPS_FILE)) as f:
        traced = json.load(f)
    return summary(logdir, hlo, traced["steps"], traced["devices"])


def newest_trace(logdir: str) -> str:
    """Path of the newest `*.xplane.pb` under `logdir` (FileNotFoundError if there is none)."""
    files = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    if not files:
        raise FileNotFoundError(f"no jax.profiler trace (*.xplane.pb) under {logdir}")
    return max(files, key=os.path.getmtime)


def _timeline(path: str) -> tuple[list, bool]:
    """(planes, on_device) of trace file `path`: its device planes (GPU/TPU) where it has them, else all
    of them (the host's CPU threads)."""
    from jax.profiler import ProfileData

    planes = list(ProfileData.from_file(path).planes)
    device = [p for p in planes if p.name.startswith(_DEVICE_PLANES)]
    return (device, True) if device else (planes, False)


def op_times(path: str, module: str) -> dict[str, float]:
    """Seconds per XLA instruction of HLO module `module` (e.g. `jit_step`) in trace file `path`,
    summed over devices and traced steps. Device planes (GPU/TPU) when the trace has them, else the
    host's CPU threads; an event that encloses others on its thread (a while loop, a call) is left out,
    so nothing is counted twice."""
    return _op_times(*_timeline(path), module)


def _op_times(planes: list, on_device: bool, module: str) -> dict[str, float]:
    times = collections.Counter()
    for plane in planes:
        for line in plane.lines:
            events = []
            for ev in line.events:
                stats = dict(ev.stats)
                if str(stats.get("hlo_module", "")) == module and "hlo_op" in stats:
                    events.append((ev.start_ns, ev.start_ns + ev.duration_ns, str(stats["hlo_op"])))
                elif on_device and line.name.startswith("Stream") and "hlo_op" not in stats:
                    # On an H200, 96 % of a step's kernel time was in GPU stream events without HLO
                    # stats; a kernel's name is its fusion's name (library kernels stay `other`).
                    events.append((ev.start_ns, ev.start_ns + ev.duration_ns, ev.name))
            events.sort()
            for i, (start, end, op) in enumerate(events):
                if i + 1 < len(events) and events[i + 1][0] < end:
                    continue  # encloses the next event: a container, not work of its own
                times[op] += (end - start) * 1e-9
    return dict(times)


def _busiest_lines(planes: list, top: int) -> list[list]:
    """[[plane / line, seconds, events]] of the `top` busiest timeline lines of `planes`, every event
    summed, nested ones too: what `op_times` chose from, for a trace whose ops it could not place."""
    out = []
    for plane in planes:
        for line in plane.lines:
            durations = [ev.duration_ns for ev in line.events]
            out.append([f"{plane.name} / {line.name}", sum(durations) * 1e-9, len(durations)])
    return sorted(out, key=lambda row: -row[1])[:top]


def module_name(hlo: str) -> str:
    """The HLO module's name (what trace events call it, e.g. `jit_step`) from compiled HLO text."""
    m = re.match(r"HloModule ([^\s,]+)", hlo)
    if not m:
        raise ValueError("not HLO module text")
    return m.group(1)


def _frame_tables(hlo: str):
    """{stack frame id: (file, line, function, parent id)} from the tables at the end of HLO text."""
    sections = collections.defaultdict(dict)
    name = None
    for line in hlo.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            name = line
        elif not line.strip():
            name = None
        elif name:
            key, value = line.split(" ", 1)
            sections[name][key] = value.strip().strip('"') if name in ("FileNames", "FunctionNames") else \
                dict(re.findall(r"(\w+)=(\d+)", value))
    frames = {}
    for fid, f in sections["StackFrames"].items():
        loc = sections["FileLocations"].get(f.get("file_location_id"), {})
        frames[fid] = (sections["FileNames"].get(loc.get("file_name_id"), "?"), loc.get("line", "?"),
                       sections["FunctionNames"].get(loc.get("function_name_id"), "?"), f.get("parent_frame_id", "0"))
    return frames


def _our_frames(frames, fid: str | None, depth: int = 2) -> str:
    """`file:line function < caller...`: the innermost `depth` frames inside hybrid_jax ("" if none)."""
    package = os.path.dirname(os.path.abspath(hybrid_jax.__file__))
    ours, seen = [], set()
    while fid in frames and fid not in seen and len(ours) < depth:
        seen.add(fid)
        file, line, func, parent = frames[fid]
        if os.path.abspath(file).startswith(package + os.sep):
            ours.append(f"{os.path.relpath(file, package)}:{line} {func.split('.<locals>.')[-1]}")
        fid = str(int(parent) - 1)  # the text form's parent ids are one above the frame they name
    return " < ".join(ours)


def instructions(hlo: str) -> dict[str, dict]:
    """{instruction name: {source, backward, kind}} of every instruction in compiled HLO text.

    source: innermost line of hybrid_jax that emitted it; backward: it belongs to a gradient
    (`transpose(...)` in its JAX name); kind: matmul / attention (cuDNN's fused kernel) / collective /
    copy / other fusion or op."""
    frames = _frame_tables(hlo)
    bodies = {m.group(1): m.group(2) for m in re.finditer(r"^%?([\w.-]+) \(.*?\{\n(.*?)\n\}", hlo, re.M | re.S)}
    out = {}
    for m in re.finditer(r"^\s+(?:ROOT )?%?([\w.-]+) = .*$", hlo, re.M):
        name, text = m.group(1), m.group(0)
        called = re.search(r"calls=%?([\w.-]+)", text)
        # What the instruction does: its opcode, call target and config, and what it calls (not its
        # operands or predecessors: a fusion that reads a gemm fusion's output is no matmul).
        own = re.sub(r"\(%.*?\)|control-predecessors=\{.*?\}", "", text)
        opcode = re.search(r"([\w-]+)\(", text.split(" = ", 1)[1])  # the shape before it has no "word("
        body = (own + (f" {opcode.group(1)}(" if opcode else "")
                + (bodies.get(called.group(1), "") if called else ""))
        op_name = re.search(r'op_name="([^"]*)"', text)
        frame = re.search(r"stack_frame_id=(\d+)", text)
        if any(f" {c}(" in text or f" {c}-start(" in text for c in _COLLECTIVES):
            kind = "collective"
        elif "__cudnn$fmha" in body:
            kind = "attention"
        elif re.search(r" (dot|convolution)\(|__cublas|cudnn\$conv|gemm", body):
            kind = "matmul"
        elif name.startswith(("copy", "transpose")):
            kind = "copy / transpose"
        else:
            kind = "other"
        out[name] = {"source": _our_frames(frames, frame.group(1) if frame else None),
                     "backward": bool(op_name and "transpose(" in op_name.group(1)), "kind": kind}
    return out


def source_table(times: dict[str, float], info: dict[str, dict], per: float = 1.0) -> list[tuple[str, float]]:
    """[(where, seconds / per)] largest first: `times` (see `op_times`) grouped by the line of this package
    that emitted each instruction (`info` from `instructions`), `fwd` / `bwd` for model code; collectives
    apart (their metadata names one of the tensors they carry, and their time includes waiting for the
    other devices)."""
    table = collections.Counter()
    for op, t in times.items():
        i = info.get(op, {})
        if i.get("kind") == "collective":
            where = f"collective {op.split('.')[0]} (with waits)"
        elif i.get("source", "").startswith("model/"):
            where = f"{'bwd' if i['backward'] else 'fwd'} {i['source']}"
        else:
            where = i.get("source") or "(outside this package)"
        table[where] += t / per
    return table.most_common()


_LIBRARY_KERNELS = (("matmul", r"nvjet|gemm|cublas|cutlass|xmma"), ("attention", r"cudnn|sdpa|flash|fmha"),
                    ("copy / transpose", r"memcpy|memset"))


def by_instruction(times: dict[str, float], info: dict[str, dict]) -> dict[str, float]:
    """`times` with GPU kernel names mapped to the HLO instructions they run (`info` from `instructions`):
    XLA names a fusion's kernel after the instruction, `.` and `-` written `_` (`loop_add_fusion_7` is
    `loop_add_fusion.7`). Library kernels (cuBLAS, cuDNN, copies) keep their own names."""
    alias = {re.sub(r"[.-]", "_", name): name for name in info}
    out = collections.Counter()
    for op, t in times.items():
        out[op if op in info else alias.get(op, op)] += t
    return dict(out)


def _kind(op: str, info: dict[str, dict]) -> str:
    if op in info:
        return info[op]["kind"]
    return next((kind for kind, names in _LIBRARY_KERNELS if re.search(names, op, re.I)), "other")


def kind_table(times: dict[str, float], info: dict[str, dict], per: float = 1.0) -> list[tuple[str, float]]:
    """[(kind, seconds / per)] largest first (kinds as in `instructions`, which gives `info`; a library
    kernel outside it by its name: cuBLAS matmul, cuDNN attention, memcpy)."""
    table = collections.Counter()
    for op, t in times.items():
        table[_kind(op, info)] += t / per
    return table.most_common()


def unplaced(times: dict[str, float], info: dict[str, dict], per: float = 1.0, top: int = 8) -> list:
    """[(op, seconds / per)] largest first of the ops in `times` (after `by_instruction`) that are neither
    an instruction of the step's HLO nor a kernel `kind_table` knows by name."""
    rest = collections.Counter({op: t / per for op, t in times.items()
                                if op not in info and _kind(op, info) == "other"})
    return rest.most_common(top)


def summary(logdir: str, hlo: str, steps: int, devices: int, top: int = 12) -> dict:
    """Where the traced steps' time went, from the newest trace under `logdir` and the step's compiled
    HLO text: {trace, devices, ms_per_step, by_kind, by_source (top `top`), unplaced (ops matched to
    nothing), lines (the trace's busiest timeline lines: ms per step, events)}, milliseconds per step
    summed over devices."""
    path, module = newest_trace(logdir), module_name(hlo)
    planes, on_device = _timeline(path)  # parsed once for the op times and the busiest lines
    times = _op_times(planes, on_device, module)
    if not times:
        raise ValueError(f"the trace {path} holds no XLA op of {module}")
    info = instructions(hlo)
    times = by_instruction(times, info)
    ms = lambda table: [[name, 1e3 * t] for name, t in table]
    return {"trace": path, "devices": devices, "ms_per_step": 1e3 * sum(times.values()) / steps,
            "by_kind": ms(kind_table(times, info, steps)), "by_source": ms(source_table(times, info, steps)[:top]),
            "unplaced": ms(unplaced(times, info, steps)),
            "lines": [[name, 1e3 * t / steps, n] for name, t, n in _busiest_lines(planes, top)]}


def format_summary(p: dict) -> str:
    """`summary`'s tables as text."""
    lines = [f"where a step's time goes: {p['ms_per_step']:.1f} ms of XLA ops per step, summed over "
             f"{p['devices']} device(s); trace: {p['trace']}"]
    for title, key in (("by kind", "by_kind"), ("by source line (innermost < caller)", "by_source")):
        lines.append(f"  {title}:")
        lines += [f"    {ms:9.1f} ms  {100 * ms / p['ms_per_step']:5.1f} %  {name}" for name, ms in p[key]]
    if p.get("unplaced"):  # the tables above could not say what these are: show what the trace holds
        lines.append("  not matched to an HLO instruction or a known library kernel:")
        lines += [f"    {ms:9.1f} ms  {name}" for name, ms in p["unplaced"]]
        lines.append("  the trace's busiest lines (every event, nested ones too; ms per step, events):")
        lines += [f"    {ms:9.1f} ms  {n:7d}  {name}" for name, ms, n in p["lines"]]
    return "\n".join(lines)
