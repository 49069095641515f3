"""llvm-mca estimates of the scan's inner loops, per kernel variant and target CPU.

Compiles csrc/variant_{avx2,avx512,neon}.cpp to assembly with ROTAQUANT_MCA defined (csrc/mca.h
wraps each inner loop body in LLVM-MCA-BEGIN/END markers named <variant>-b<bits>-q<queries>),
runs Debian's llvm-mca on every region for the CPUs below and converts its steady-state
cycles per iteration into cycles per 32-row block and per code (one code of one row, for one
query), at d = 768:

    python3 tools/mca.py [--out bench/results/mca.json]

Estimates, not measurements: llvm-mca models the core's ports and latencies for a loop whose
data is in L1, nothing else (no memory, no front end). The x86 estimates are set beside the
cycles bench.scan measures on this machine (docs/index.md) to show how far to trust the ARM
ones, which cannot be timed here. Needs g++, aarch64-linux-gnu-g++ and llvm-mca (Debian
packages g++, g++-aarch64-linux-gnu, llvm-19).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# LLVM 19 (Debian llvm-19) models znver4, Neoverse V1 and Apple M1; LLVM 14 (Debian's default
# llvm) lacks the first two
LLVM_MCA = next(
    (p for p in ("/usr/lib/llvm-19/bin/llvm-mca", "/usr/bin/llvm-mca-19") if Path(p).exists()),
    "llvm-mca",
)
DIM = 768
# variant -> (compiler, flags, CPUs for llvm-mca)
TARGETS = {
    "avx2": ("g++", ["-mavx2", "-mfma", "-mbmi2", "-mf16c"], ["znver3", "znver4", "skylake"]),
    "avx512": (
        "g++",
        ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vbmi", "-mavx512vnni"]
        + ["-mavx2", "-mfma", "-mbmi2", "-mf16c"],
        ["znver4", "icelake-server"],
    ),
    "neon": ("aarch64-linux-gnu-g++", [], ["apple-m1", "neoverse-v1", "neoverse-n1"]),
    "neon_dotprod": (
        "aarch64-linux-gnu-g++",
        ["-march=armv8.2-a+dotprod", "-DROTAQUANT_DOTPROD=1"],
        ["apple-m1", "neoverse-v1", "neoverse-n1"],
    ),
}


def iteration_shape(variant: str, bits: int, queries: int) -> tuple[int, int]:
    """(channels, rows) one iteration of the region scores, for all of its `queries` (region
    names: csrc/mca.h)."""
    if bits == 2 and variant != "avx512":
        return 4, 32  # pair tables: a whole group of 32 rows, both channel pairs
    if variant == "avx2":
        return 4, 8  # a group's quarter block
    if variant == "avx512":
        chains = 1 if queries >= 4 else 4 if queries == 1 else 2
        return 4 * chains, 16  # `chains` groups of a half block
    return 4, 4  # NEON: a group's quad of rows


def compile_asm(variant: str, workdir: Path) -> Path:
    compiler, flags, _ = TARGETS[variant]
    out = workdir / f"{variant}.s"
    source = ROOT / "csrc" / f"variant_{variant.split('_')[0]}.cpp"  # neon_dotprod: neon
    command = [compiler, "-std=c++17", "-O3", "-fno-math-errno", "-DROTAQUANT_MCA=1"]
    command += [*flags, f"-I{ROOT / 'csrc'}", "-S", str(source), "-o", str(out)]
    subprocess.run(command, check=True)
    return out


BRANCH = re.compile(r"^\s+(j\w+|b\.\w+|b|cbn?z|tbn?z)\s+.*?([.\w$]+)\s*$")


def regions(asm: Path) -> dict[str, str]:
    """region name -> its loop body (instructions only).

    The first BEGIN marker of a name with its END marker. The compiler often rotates a loop,
    so that END comes before BEGIN in the text: then the body runs from BEGIN to the branch
    back to the loop's top, and from that top to END."""
    lines = asm.read_text().splitlines()
    labels = {line.split(":")[0]: i for i, line in enumerate(lines) if re.match(r"^[.\w$]+:", line)}
    bodies: dict[str, str] = {}

    def keep(chunk: list[str]) -> list[str]:
        return [
            line
            for line in chunk
            if line.strip()
            and not line.strip().startswith((".", "#", "//"))
            and not re.match(r"^[.\w$]+:", line)
        ]

    for name in dict.fromkeys(re.findall(r"LLVM-MCA-BEGIN (\S+)", "\n".join(lines))):
        begin = next(i for i, line in enumerate(lines) if f"LLVM-MCA-BEGIN {name}" in line)
        ends = [i for i, line in enumerate(lines) if f"LLVM-MCA-END {name}" in line]
        after = [i for i in ends if i > begin]
        if after and not any("LLVM-MCA-" in line for line in lines[begin + 1 : after[0]]):
            bodies[name] = "\n".join(keep(lines[begin + 1 : after[0]])) + "\n"
            continue
        before = [i for i in ends if i < begin]
        if not before:
            print(f"mca: region {name}: no END marker found, left out", file=sys.stderr)
            continue
        end = before[-1]
        for j in range(begin + 1, len(lines)):  # the branch back to the loop's top
            match = BRANCH.match(lines[j])
            if match and labels.get(match.group(2), len(lines)) < end:
                top = labels[match.group(2)]
                bodies[name] = (
                    "\n".join(keep(lines[begin + 1 : j + 1] + lines[top + 1 : end])) + "\n"
                )
                break
    return bodies


def mca(body: str, cpu: str, triple: str) -> float:
    """Cycles per iteration of a loop body (llvm-mca's total cycles / iterations)."""
    run = subprocess.run(
        [
            LLVM_MCA,
            f"-mtriple={triple}",
            f"-mcpu={cpu}",
            "-iterations=200",
            "-skip-unsupported-instructions=parse-failure",
            "-",
        ],
        input=body,
        capture_output=True,
        text=True,
        check=True,
    )
    iterations = int(re.search(r"Iterations:\s+(\d+)", run.stdout).group(1))
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", run.stdout).group(1))
    return cycles / iterations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "mca.json"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant, (_, _, cpus) in TARGETS.items():
            asm = compile_asm(variant, Path(tmp))
            triple = "aarch64-linux-gnu" if variant.startswith("neon") else "x86_64-linux-gnu"
            bodies = regions(asm)
            for cpu in cpus:
                for name, body in sorted(bodies.items()):
                    cycles = mca(body, cpu, triple)
                    match = re.fullmatch(r".*-b(\d+)-q(\d+)", name)
                    bits, queries = int(match.group(1)), int(match.group(2))
                    channels, block_rows = iteration_shape(variant, bits, queries)
                    per_block = cycles * (DIM / channels) * (32 / block_rows)
                    rows.append(
                        {
                            "variant": variant,
                            "cpu": cpu,
                            "region": name,
                            "bits": bits,
                            "queries": queries,
                            "cycles_per_iteration": round(cycles, 2),
                            "cycles_per_block_per_query": round(per_block / queries, 1),
                            "cycles_per_code_query": round(per_block / queries / (32 * DIM), 4),
                        }
                    )
    header = (
        f"{'variant':13} {'cpu':15} {'region':22} {'cyc/iter':>9} {'cyc/block/q':>12} "
        f"{'cyc/code/q':>11}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['variant']:13} {r['cpu']:15} {r['region']:22} {r['cycles_per_iteration']:9.2f} "
            f"{r['cycles_per_block_per_query']:12.1f} {r['cycles_per_code_query']:11.4f}"
        )
    version = subprocess.run([LLVM_MCA, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"LLVM version (\S+)", version)
    meta = {"dim": DIM, "llvm_mca": found.group(1) if found else version.strip()}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
