"""The build benchmark's pure parts: argument parsing, medians and the result table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_bench() -> ModuleType:
    """bench/bench_build.py as a module (bench/ is a directory of scripts, not a package)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_build", BENCH / "bench_build.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_build"] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_arguments_parse() -> None:
    bench = load_bench()
    args = bench.parse_args(["--runs", "7", "--skip-bigctx", "--no-peer"])
    assert args.runs == 7 and args.skip_bigctx and args.no_peer and not args.skip_cold


def test_table_has_medians_and_ratios() -> None:
    bench = load_bench()
    timing = sys.modules["peers"].Timing
    cell = bench.Cell("multistage warm")
    cell.runs["forklift"] = [timing(0.3, 0.2), timing(0.1, 0.1), timing(0.2, 0.1)]
    cell.runs["buildkit"] = [timing(0.4, 0.0), timing(0.4, 0.0), timing(0.4, 0.0)]
    table = bench.render([cell], peer_live=True, extra_lines=[])
    assert "| multistage warm | 0.20 | 0.10 | 0.40 | 0.50x | 0.09 |" in table


def test_table_falls_back_to_readme_figures_without_the_peer() -> None:
    bench = load_bench()
    timing = sys.modules["peers"].Timing
    cell = bench.Cell("bigctx warm")
    cell.runs["forklift"] = [timing(0.5, 0.2)]
    table = bench.render([cell], peer_live=False, extra_lines=["note"])
    assert "peer unavailable" in table and "| bigctx warm | 0.50 | 0.20 | 0.25 | 2.00x | 0.25 |" in table
    assert table.endswith("note\n")
