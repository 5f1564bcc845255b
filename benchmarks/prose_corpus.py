"""A public-domain English prose corpus for the patching study: the King James Bible, one file per book.

    python -m benchmarks.prose_corpus --out data/kjv      # writes data/kjv/{train,eval}/NN_Book.txt

The text comes from the Debian packages `bible-kjv` (program) and `bible-kjv-text` (its compressed
text), fetched with `apt-get download` (no root, nothing installed) and unpacked with `dpkg -x`; the
program then prints every verse. 66 books, 4.4 MB; every `--every`-th book (by canonical order,
offset 5) goes to `eval/`, so the held-out split is by document and the same on every machine.
Exits 2 with one line if the packages cannot be fetched.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

PACKAGES = ("bible-kjv", "bible-kjv-text")
VERSE = re.compile(r"^([1-3]?[A-Za-z]+)\d+:\d+ (.*)$")


def fetch(workdir: str) -> str:
    """Download and unpack the packages under `workdir`; return the unpacked root."""
    root = os.path.join(workdir, "root")
    for pkg in PACKAGES:
        r = subprocess.run(["apt-get", "download", pkg], cwd=workdir, capture_output=True, text=True)
        debs = glob.glob(os.path.join(workdir, f"{pkg}_*.deb"))
        if r.returncode or not debs:
            raise OSError(f"cannot fetch the Debian package {pkg!r} "
                             f"({(r.stderr.strip().splitlines() or ['no apt-get'])[-1]})")
        subprocess.run(["dpkg", "-x", debs[0], root], check=True)
    return root


def books(root: str) -> list[tuple[str, str]]:
    """[(abbreviation, text)] in canonical order, one verse per line."""
    prog = os.path.join(root, "usr", "bin", "bible")
    out = subprocess.run([prog, "-p", os.path.join(root, "usr", "lib"), "-f", "gen1:1-rev22:21"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True).stdout
    result: list[tuple[str, list[str]]] = []
    for line in out.splitlines():
        m = VERSE.match(line)
        if not m:
            continue
        if not result or result[-1][0] != m.group(1):
            result.append((m.group(1), []))
        result[-1][1].append(m.group(2))
    return [(name, "\n".join(lines) + "\n") for name, lines in result]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/kjv", help="output directory (train/ and eval/ under it)")
    p.add_argument("--every", type=int, default=11, help="every N-th book is held out")
    args = p.parse_args(argv)
    if args.every < 2:
        p.error("--every must be >= 2")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            found = books(fetch(tmp))
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"prose_corpus: {e}", file=sys.stderr)
        return 2
    if len(found) != 66:
        print(f"prose_corpus: expected 66 books, the program printed {len(found)}", file=sys.stderr)
        return 2
    for split in ("train", "eval"):
        os.makedirs(os.path.join(args.out, split), exist_ok=True)
    held = [i % args.every == 5 % args.every for i in range(len(found))]
    for i, (name, text) in enumerate(found):
        with open(os.path.join(args.out, "eval" if held[i] else "train", f"{i + 1:02d}_{name}.txt"), "w") as f:
            f.write(text)
    n_eval = sum(held)
    print(f"{len(found) - n_eval} training and {n_eval} held-out books under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
