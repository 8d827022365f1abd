"""A pytest-benchmark JSON file -> a markdown table of the figures, their targets and the device.

    pytest benchmarks/test_gpu_bench.py --benchmark-only --benchmark-json=gpu-bench.json
    python benchmarks/report.py gpu-bench.json --out docs/GPU_BENCH.md

One row per figure: every number in a benchmark's `extra_info`, plus its median time. Targets are
issue #6's, for the GPU: the data pipeline at least 80% of the model alone (`pipeline_over_model`),
and the ViT-B/16 linear-probe grid within `target_seconds` (set for one H100). CPU cases show the
targets but are not held to them. Without --out the table goes to stdout.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

#: figure -> (comparison, bound) for figures with a fixed target.
RATIO_TARGETS = {"pipeline_over_model": (">=", 0.8), "warm_pipeline_over_model": (">=", 0.8)}


def _device(bench: dict, machine: dict) -> str:
    """The GPU's name (or the CPU's, for CPU cases), with the torch version when recorded."""
    info = bench.get("extra_info", {}) or {}
    name = str(info.get("device_name") or "")
    if not name or name == "cpu":
        param = str(bench.get("param") or bench.get("name", ""))
        cpu = f"CPU: {machine.get('cpu', {}).get('brand_raw') or 'unknown'}"
        name = "cuda (name not recorded)" if not name and "cuda" in param else cpu
    return f"{name}, torch {info['torch']}" if info.get("torch") else name


def _target(figure: str, info: dict, device: str) -> tuple[str, bool | None]:
    """(target text, met?) for a figure; met is None where there is no target or it does not apply."""
    applies = not device.startswith("CPU")  # issue #6's targets are for the GPU fast path
    if figure in RATIO_TARGETS:
        op, bound = RATIO_TARGETS[figure]
        value = info.get(figure)
        text = f"{op} {bound}" + ("" if applies else " (GPU target; not applied here)")
        return text, (value >= bound) if applies and isinstance(value, (int, float)) else None
    if figure == "seconds_grid" and "target_seconds" in info:
        bound = info["target_seconds"]
        note = "" if "H100" in device else (" (set for one H100)" if applies else " (GPU target; not applied here)")
        text = f"< {bound} s{note}"
        value = info.get(figure)
        return text, (value < bound) if applies and isinstance(value, (int, float)) else None
    return "", None


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|")


def report(data: dict) -> str:
    """The markdown text (header and table) for a parsed pytest-benchmark JSON document."""
    benches = data.get("benchmarks")
    if not isinstance(benches, list):
        raise ValueError("not a pytest-benchmark JSON file (no 'benchmarks' list)")
    machine = data.get("machine_info", {})
    commit = data.get("commit_info", {}) or {}
    lines = [
        f"Benchmarks of {data.get('datetime', _dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds'))}"
        f" (commit {str(commit.get('id', 'unknown'))[:12]}{', dirty' if commit.get('dirty') else ''};"
        f" Python {machine.get('python_version', '?')}; CPU {machine.get('cpu', {}).get('brand_raw', '?')})",
        "",
        "| benchmark | figure | value | target | met | device |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    skip = {"target_seconds", "target_applies", "device_name", "torch", "note"}
    for bench in benches:
        name = str(bench.get("name", "?"))
        info = bench.get("extra_info", {}) or {}
        device = _device(bench, machine)
        median = bench.get("stats", {}).get("median")
        rows = [("median_seconds", round(median, 3) if isinstance(median, (int, float)) else "?")]
        rows += [(k, v) for k, v in info.items() if k not in skip]
        for figure, value in rows:
            target, met = _target(figure, info, device)
            met_text = "" if met is None else ("yes" if met else "**no**")
            lines.append(f"| {name} | {figure} | {_cell(value)} | {target} | {met_text} | {_cell(device)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file", type=Path, help="a file written by pytest --benchmark-json")
    parser.add_argument("--out", type=Path, help="write the markdown here (default: stdout)")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.json_file.read_text(encoding="utf-8"))
        text = report(data)
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        print(f"{args.json_file}: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
