"""``.venv/bin/python -m scripts.proof.bench``: run the benchmark, write its report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "functions"))

from scripts.local import localstack
from scripts.proof.bench import charts, report, run

DEFAULT_OUT = localstack.ROOT / "docs" / "benchmarks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.proof.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--size", choices=tuple(run.SIZES), default="small")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a ratio misses its target"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    res = run.run(args.size)
    all_checks = report.checks(res)
    (args.out / "results.md").write_text(report.markdown(res, all_checks))
    charts.charts(res, args.out)
    for c in all_checks:
        mark = report.verdict(c.ok).strip("*")
        print(f"{mark:5} {c.value:6.2f}x  {c.what} ({c.detail}; {c.target})")
    print(f"results: {args.out / 'results.md'} ({res.elapsed_s:.0f} s)")
    failed = [c for c in all_checks if c.ok is False]
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
