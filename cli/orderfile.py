#!/usr/bin/env python3
"""The link order of the release CLI on x86_64 Linux (see build.rs).

`nextword bench` runs about 3 MB of the binary's 22 MB of machine code (tract's generic ops
and ndarray make up most of the rest), but scattered over the whole `.text`: the kernel maps
code in 64 KB windows around each page fault, so that run kept 14 MB of code resident, half
the process's peak RSS. `orderfile.txt` lists the functions the run executes (mangled names,
as the linker sees them); the linker places them first, together.

    python3 cli/orderfile.py            # rewrite orderfile.txt from a run under callgrind
    python3 cli/orderfile.py --check    # how many listed functions the binary still has

Regenerate after a toolchain or dependency update, or when `--check` reports a low share:
symbol names carry hashes of their crate's build, so those changes rename functions (an
edited function keeps its name). A name the binary lacks is skipped at link time. Needs
valgrind (Debian package `valgrind`) and a release build: `cargo build --release -p nextword`.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDERFILE = HERE / "orderfile.txt"
DEFAULT_BINARY = HERE.parent / "target" / "release" / "nextword"
BUNDLE = HERE.parent / "models" / "en"


def text_symbols(binary: Path) -> set[str]:
    """Mangled names of the functions defined in `binary`."""
    out = subprocess.run(
        ["nm", "--defined-only", str(binary)], check=True, capture_output=True, text=True
    ).stdout
    return {p[2] for p in (line.split() for line in out.splitlines()) if len(p) == 3 and p[1] in "tTwW"}


def executed_functions(binary: Path) -> set[str]:
    """Mangled names of every function `nextword bench` runs, from callgrind's profile."""
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "callgrind.out"
        # Without RUST_BACKTRACE, as an app runs: tract's optimizer builds errors it discards,
        # and with the variable set each one captures a backtrace.
        env = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}
        subprocess.run(
            ["valgrind", "-q", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={profile}",
             str(binary), "bench", "--iterations", "1", "--bundle", str(BUNDLE)],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )
        names = set()
        with open(profile, errors="replace") as f:
            for line in f:
                m = re.match(r"^c?fn=\(\d+\) (.+)$", line)
                if m:
                    # callgrind marks recursion levels with 'N
                    names.add(re.sub(r"'\d+$", "", m.group(1).strip()))
        return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", type=Path, default=DEFAULT_BINARY)
    ap.add_argument("--check", action="store_true",
                    help="report how many listed functions the binary has; fail under --min")
    ap.add_argument("--min", type=float, default=0.9, help="share that --check requires")
    args = ap.parse_args()
    defined = text_symbols(args.binary)
    if args.check:
        listed = ORDERFILE.read_text().split()
        found = sum(name in defined for name in listed)
        share = found / max(len(listed), 1)
        print(f"{found} of {len(listed)} functions in {ORDERFILE.name} are in {args.binary} "
              f"({share:.1%})")
        return 0 if share >= args.min else 1
    ordered = sorted(executed_functions(args.binary) & defined)
    ORDERFILE.write_text("".join(name + "\n" for name in ordered))
    print(f"{ORDERFILE}: {len(ordered)} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
