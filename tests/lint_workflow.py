"""`snakemake --lint` on every shipped config, failing on any finding but the ones we keep.

Kept on purpose: "Specify a conda environment or container for each rule". Every rule runs
`mtpd` from the one environment that runs Snakemake (set up by setup.sh, or environment.yml on a
cluster): a per-rule conda environment would have to rebuild mmcv's compiled ops against CUDA
torch for each rule, which is impractical. Run by `make lint` (part of `make test`).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEPT = ("Specify a conda environment or container for each rule.",)


def findings(configfile: Path) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--configfile",
                        str(configfile)], cwd=REPO, capture_output=True, text=True)
    text = r.stdout + r.stderr
    if r.returncode not in (0, 1) or "Lints for" not in text and r.returncode:
        return [f"snakemake --lint failed on {configfile.name}:\n{text[-2000:]}"]
    found, where = [], ""
    for line in text.splitlines():
        if line.startswith("Lints for"):
            where = line
        elif line.startswith("    * ") and not line[6:].startswith(KEPT):
            found.append(f"{configfile.name}: {where.strip()} {line.strip()}")
    return found


def main() -> int:
    problems = [f for c in sorted((REPO / "config").glob("*.yaml")) for f in findings(c)]
    for p in problems:
        print(p, file=sys.stderr)
    print(f"snakemake --lint: {len(problems)} finding(s) besides the kept ones")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
