"""The benchmark suite: ``make bench`` (or ``python -m bench``).

Generates chaotic traffic with the simulator, runs each case ``--runs`` times in a child process
(wall time and peak RSS from the kernel's accounting of that child), prints a table of medians
and writes bench/RESULTS.md (machine, date, commit, figures, targets). Not a test; CI runs
``--smoke`` (tiny sizes, one run) only to keep the suite working.

    python -m bench                    # full sizes (1M-event backfill, 5M-event history: long)
    python -m bench --scale 0.1        # a tenth of every size
    python -m bench --smoke            # seconds; what CI runs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from nelo_etl.cpus import usable_cpus

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: (case, what it measures, target in seconds for full size or None, compare-to)
TARGETS = {
    "backfill_1_file": 30.0,
    "incremental_on_5M": 2.0,
}


def run_case(args: list[str]) -> tuple[float, float, dict]:
    """Run ``python -m bench.case ARGS`` in a child; (wall seconds, peak RSS MB, its JSON report)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.case", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"bench case {args[0]} failed: {err.strip().splitlines()[-1] if err.strip() else '?'}")
    return wall, usage.ru_maxrss / 1024, json.loads(out.strip().splitlines()[-1])


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores, machine_cores = usable_cpus(), os.cpu_count() or "?"
    of = "" if cores == machine_cores else f" of the machine's {machine_cores}"
    return f"{cores} cores{of} ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip() or "?"
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="runs per case; the median is reported (default 3)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run (CI)")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="where to write the results")
    parser.add_argument("--cases", nargs="*", help="only these cases")
    parser.add_argument("--work", help="keep the prepared histories here (reused by the next run; the cases' "
                                       "own copies go at the end; default: a temp folder, removed)")
    args = parser.parse_args()
    scale, runs = (0.002, 1) if args.smoke else (args.scale, args.runs)
    n = lambda size: max(200, int(size * scale))           # noqa: E731
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="nelo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    chosen: list[tuple[str, list[str], int]] = []
    try:
        backfill = n(1_000_000)
        batch = 300 if args.smoke else 16_000          # the batch stays a real 15-minute batch at any scale
        cases = [
            ("backfill_1_file", ["backfill", "--events", str(backfill), "--files", "1"], backfill),
            ("backfill_64_files", ["backfill", "--events", str(backfill), "--files", "64"], backfill),
            *[(f"incremental_on_{label}", ["incremental", "--history", str(n(size)), "--batch", str(batch)], batch)
              for label, size in (("100k", 100_000), ("1M", 1_000_000), ("5M", 5_000_000))],
            # the profile of the lake export's share: the same batches without it
            *[(f"incremental_on_{label}_no_lake", ["incremental", "--history", str(n(size)), "--batch", str(batch),
                                                   "--no-lake"], batch)
              for label, size in (("100k", 100_000), ("5M", 5_000_000))],
            # the 5M traffic's own batch on the newest 100k and 500k events of its history: the same
            # batch on histories that differ in size only (each size's own traffic is another world)
            *[(f"incremental_on_{label}_of_5M", ["incremental", "--history", str(n(size)), "--batch", str(batch),
                                                 "--world", str(n(5_000_000))], batch)
              for label, size in (("100k", 100_000), ("500k", 500_000)) if n(size) < n(5_000_000)],
            ("floor_read_json", ["read_json", "--events", str(backfill)], backfill),
            ("naive_pandas_rowwise", ["naive", "--events", str(n(20_000))], n(20_000)),
            ("reprocess_96_files", ["reprocess", "--events", str(n(200_000)), "--files", "96"], n(200_000)),
            ("receive_20k", ["receive", "--events", str(n(20_000))], n(20_000)),
            ("rebuild_silver", ["rebuild", "--events", str(backfill)], backfill),
        ]
        chosen = [c for c in cases if not args.cases or c[0] in args.cases]
        for name, case_args, _events in chosen:
            if case_args[0] in ("incremental", "rebuild", "reprocess"):   # the history is built untimed, in its own child
                run_case(case_args + ["--work", str(work / name), "--prepare"])
        # round-robin, not case after case: this machine's speed drifts by tens of percent over
        # minutes, and the ratios between cases are what the targets compare
        measured: dict[str, list[tuple[float, float, dict]]] = {name: [] for name, _, _ in chosen}
        for _ in range(runs):
            for name, case_args, _events in chosen:
                wall, peak, report = run_case(case_args + ["--work", str(work / name)])
                measured[name].append((report.get("seconds", wall), peak, report))
        for name, case_args, events in chosen:
            walls = [w for w, _, _ in measured[name]]
            median = statistics.median(walls)
            # the stages of the run whose time is the median (the lower middle one for an even count)
            middle = sorted(measured[name], key=lambda m: m[0])[(len(walls) - 1) // 2]
            row = {"case": name, "events": events, "args": " ".join(case_args), "median_s": median, "events_per_s": events / median,
                   "peak_rss_mb": max(p for _, p, _ in measured[name]), "runs": [round(w, 3) for w in walls],
                   "stages": middle[2].get("stages", {}), "publish_keys": middle[2].get("publish_keys"),
                   "cpu_s": (statistics.median(m[2]["cpu_s"] for m in measured[name])
                             if all("cpu_s" in m[2] for m in measured[name]) else None),
                   "lake_rows": middle[2].get("lake_rows"), "batch": middle[2].get("batch"),
                   # the split of the run whose time is the median, like its stages: its parts add up
                   "split": middle[2].get("split")}
            rows.append(row)
            print(f"{name:22s} {events:>10,} events  median {median:8.2f} s  {events / median:>12,.0f} events/s  "
                  f"peak RSS {row['peak_rss_mb']:7.0f} MB  runs {row['runs']}", flush=True)
        write_results(Path(args.out), rows, scale, runs)
        print(f"results written to {args.out}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            # --work keeps what a later run reuses (the prepared histories, splits and bases); each
            # case's own folder is made again by every run (at 5M an 8 GB copy): it goes
            from .case import CASE_MARK

            for name, _, _ in chosen:
                if (work / name / CASE_MARK).exists():
                    shutil.rmtree(work / name)
    return 0


def verdicts(by: dict[str, dict]) -> list[tuple[str, str, str, bool | None]]:
    """The performance issue's table: (case, figure, target, met; None: no target) for each row
    this run measured."""
    out = []
    floor = by.get("floor_read_json", {}).get("median_s")
    one, many = by.get("backfill_1_file"), by.get("backfill_64_files")
    if floor and one:
        parse = one["stages"].get("parse", 0) + one["stages"].get("stage", 0)
        out.append(("parse + stage vs DuckDB read_json of the same bytes",
                    f"{parse:.2f} s vs {floor:.2f} s = {parse / floor:.1f}x", "at most 4x", parse / floor <= 4))
        out.append((f"{one['events']:,} events, one file, end to end (load + Gold + publication) vs read_json",
                    f"{one['median_s']:.1f} s = {one['median_s'] / floor:.1f}x; peak RSS {one['peak_rss_mb']:.0f} MB",
                    "at most 6x; peak RSS at most 1.5 GB",
                    one["median_s"] / floor <= 6 and one["peak_rss_mb"] <= 1536))
    if floor and one and one.get("split"):
        out.append(_budget("backfill_1_file", one, 6 * floor))
    if one and many:
        ratio = many["median_s"] / one["median_s"]
        out.append((f"{many['events']:,} events as 64 files vs as 1 file",
                    f"{many['median_s']:.1f} s vs {one['median_s']:.1f} s = {ratio:.2f}x", "at most 1.5x", ratio <= 1.5))
    small, big = by.get("incremental_on_100k"), by.get("incremental_on_5M")
    if small and big:
        ratio = big["median_s"] / small["median_s"]
        out.append(("a 16k batch on the 5M history vs on the 100k one (each size's own traffic)",
                    f"{big['median_s']:.2f} s vs {small['median_s']:.2f} s = {ratio:.2f}{_cpu(big, small)}; "
                    f"batches: {_shape(big)} vs {_shape(small)}",
                    "at most 1.3, and at most 2 s at 5M", ratio <= 1.3 and big["median_s"] <= 2.0))
    for name in ("incremental_on_5M", "incremental_on_5M_no_lake"):
        if by.get(name, {}).get("split"):
            out.append(_budget(name, by[name], 2.0))
    for label in ("100k", "500k"):
        same = by.get(f"incremental_on_{label}_of_5M")
        if big and same:
            # the same batch file (the 5M traffic's) on the newest events of the same traffic:
            # what differs is the history's size only
            r = big["median_s"] / same["median_s"]
            out.append((f"the same 16k batch (the 5M traffic's) on its 5M history vs on the newest {label} of it "
                        f"({_holds(same)})",
                        f"{big['median_s']:.2f} s vs {same['median_s']:.2f} s = {r:.2f}{_cpu(big, same)}; "
                        f"batch: {_shape(same)}; lake rows written {big.get('lake_rows')} vs {same.get('lake_rows')}",
                        "at most 1.3, and at most 2 s at 5M", r <= 1.3 and big["median_s"] <= 2.0))
    if small and big:
        ps, pb = small["stages"].get("publish_s", 0), big["stages"].get("publish_s", 0)
        out.append(("analytics publication (in the 16k batch) on the 5M history vs on the 100k one",
                    f"{pb:.2f} s vs {ps:.2f} s = {pb / max(ps, 1e-9):.2f} (journal keys applied: "
                    f"{big.get('publish_keys')} vs {small.get('publish_keys')})", "independent of history size (at most 1.3)",
                    pb / max(ps, 1e-9) <= 1.3))
        mid = by.get("incremental_on_1M")
        if mid:
            # the batch's late events reach about 3 days back; the 100k history is one day, so
            # there the batch finds less to recompute. 1M (16 days) and 5M (71 days) both hold
            # the whole window: their ratio is the batch's growth with history alone
            out.append(("a 16k batch on the 5M history vs on the 1M one (both longer than the late events' reach)",
                        f"{big['median_s']:.2f} s vs {mid['median_s']:.2f} s = {big['median_s'] / mid['median_s']:.2f}; "
                        f"publication {pb:.2f} s vs {mid['stages'].get('publish_s', 0):.2f} s",
                        "(reported: growth with history past the window)", None))
        ts, tb = small["stages"].get("team_refresh_s", 0), big["stages"].get("team_refresh_s", 0)
        out.append(("team files refresh (hourly, team_refresh_minutes) on the 5M history vs on the 100k one",
                    f"{tb:.2f} s vs {ts:.2f} s = {tb / max(ts, 1e-9):.2f}", "(whole-history Gold aggregates; no target)", None))
        ls, lb = small["stages"].get("lake_export_s", 0), big["stages"].get("lake_export_s", 0)
        out.append(("lake export after the 16k batch (on by default, beside the publication) on the 5M history vs on the 100k one",
                    f"{lb:.2f} s vs {ls:.2f} s = {lb / max(ls, 1e-9):.2f} (rows written: {big.get('lake_rows')} vs "
                    f"{small.get('lake_rows')}); publication and lake together "
                    f"{big['stages'].get('gold_and_lake_s', 0):.2f} s vs {small['stages'].get('gold_and_lake_s', 0):.2f} s",
                    "(not in a target; reported)", None))
        bare_small, bare_big = by.get("incremental_on_100k_no_lake"), by.get("incremental_on_5M_no_lake")
        if bare_small and bare_big:
            # the profile of the lake's share: the same timed batches with the export switched off
            out.append(("the same 16k batches without the lake export: 5M vs 100k",
                        f"{bare_big['median_s']:.2f} s vs {bare_small['median_s']:.2f} s = "
                        f"{bare_big['median_s'] / bare_small['median_s']:.2f}{_cpu(bare_big, bare_small)}; "
                        f"publication alone {bare_big['stages'].get('publish_s', 0):.2f} s vs "
                        f"{bare_small['stages'].get('publish_s', 0):.2f} s; the lake adds "
                        f"{big['median_s'] - bare_big['median_s']:.2f} s at 5M, {small['median_s'] - bare_small['median_s']:.2f} s "
                        f"at 100k{_lake_cpu(big, bare_big, small, bare_small)}",
                        "(reported: the profile of the batch row)", None))
    if "reprocess_96_files" in by:
        r = by["reprocess_96_files"]
        out.append(("reprocessing a day of archives (96 files) through --reprocess",
                    f"{r['median_s']:.1f} s for {r['events']:,} events ({r['events_per_s']:,.0f} events/s)",
                    "(measured; no target)", None))
    if "receive_20k" in by:
        r = by["receive_20k"]
        out.append(("etl.py receive rate (in-memory SQS-protocol server)", f"{r['events_per_s']:,.0f} messages/s",
                    "at least 300 messages/s", r["events_per_s"] >= 300))
    return out


def _budget(name: str, row: dict, target_s: float) -> tuple[str, str, str, None]:
    """The median run of a case before and after its commit, in wall and CPU seconds. On n cores a
    wall time of w seconds holds at most n*w CPU seconds: the CPU a run needs bounds how fast it
    can be however well its steps overlap, and a target of w seconds bounds the CPU it may use."""
    sp, cores = row["split"], usable_cpus()
    cpu = sp["load_cpu_s"] + sp["after_cpu_s"]
    return (f"{name}: its median run before and after its commit, in CPU seconds on {cores} cores",
            f"load to the commit {sp['load_s']:.2f} s wall, {sp['load_cpu_s']:.2f} CPU s; after it (Gold views, "
            f"publication{'' if name.endswith('_no_lake') else ' beside the lake export'}, team files when due) "
            f"{sp['after_s']:.2f} s wall, {sp['after_cpu_s']:.2f} CPU s; in all {cpu:.2f} CPU s, which {cores} cores "
            f"run in no less than {cpu / cores:.2f} s; the target's {target_s:.2f} s holds at most "
            f"{target_s * cores:.2f} CPU s", "(reported: the profile of the time target)", None)


def _shape(row: dict) -> str:
    """What a case's timed batch asks (bench.case.batch_shape)."""
    b = row.get("batch")
    if not b:
        return "?"
    return (f"{b['events']:,} events of {b['users']:,} users, {b['late_1d']:,} of them a day or more late, "
            f"reaching {b['reach_days']} days back, on {b['history_days']} days of arrivals")


def _holds(row: dict) -> str:
    """Whether the history under a case's batch holds every day the batch reaches back to."""
    b = row.get("batch")
    if not b:
        return "?"
    return ("its arrivals span the days the batch reaches" if b["history_days"] >= b["reach_days"]
            else "shorter than the days the batch reaches")


def _cpu(big: dict, small: dict) -> str:
    """The two cases' median CPU seconds and their ratio (steadier than wall time here), if measured."""
    if big.get("cpu_s") is None or small.get("cpu_s") is None:
        return ""
    return f" (CPU {big['cpu_s']:.2f} s vs {small['cpu_s']:.2f} s = {big['cpu_s'] / small['cpu_s']:.2f})"


def _lake_cpu(big: dict, bare_big: dict, small: dict, bare_small: dict) -> str:
    """The lake export's CPU seconds at each size: the batch's with it minus without it."""
    if any(r.get("cpu_s") is None for r in (big, bare_big, small, bare_small)):
        return ""
    return (f"; in CPU time {big['cpu_s'] - bare_big['cpu_s']:.2f} s at 5M, "
            f"{small['cpu_s'] - bare_small['cpu_s']:.2f} s at 100k")


def write_results(path: Path, rows: list[dict], scale: float, runs: int) -> None:
    by = {r["case"]: r for r in rows}
    lines = [
        "# Benchmark results", "",
        f"- machine: {machine()}",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {commit()}",
        f"- scale: {scale} of the full sizes, {runs} run(s) per case, medians (`python -m bench --scale {scale}`)", "",
        "Case names give the full-scale sizes; the `args` column gives the sizes of this run.", "",
        "| case | args | events | median s | events/s | peak RSS MB | runs (s) |", "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | `{r.get('args', '')}` | {r['events']:,} | {r['median_s']:.2f} | {r['events_per_s']:,.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {', '.join(map(str, r['runs']))} |")
    lines += ["", "## Stages (median run of each case)", "", "| case | stage | seconds |", "|---|---|---:|"]
    for r in rows:
        top = [kv for kv in r["stages"].items() if not kv[0].startswith("silver.")]
        for stage, seconds in sorted(top, key=lambda kv: -kv[1])[:8]:
            lines.append(f"| {r['case']} | {stage} | {seconds:.3f} |")
    incremental = [r for r in rows if r["case"].startswith("incremental_on_")]
    if incremental:
        models = sorted({k for r in incremental for k in r["stages"] if k.startswith("silver.")},
                        key=lambda k: -incremental[-1]["stages"].get(k, 0))
        lines += ["", "## Silver models in the 16k batch, by history (median run; seconds)", "",
                  "| model | " + " | ".join(r["case"] for r in incremental) + " |",
                  "|---|" + "---:|" * len(incremental)]
        lines += [f"| {m[len('silver.'):]} | " + " | ".join(f"{r['stages'].get(m, 0):.3f}" for r in incremental) + " |"
                  for m in models]
    lines += ["", f"## Against the targets ({usable_cpus()} cores, medians of this run)", ""]
    if scale != 1:
        lines += [f"A scaled run: every size is {scale} of the one a target names (see `args`); compare rates "
                  "and ratios, not seconds.", ""]
    lines += ["| case | figure | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {case} | {figure} | {target} | {'reported' if ok is None else 'met' if ok else 'missed'} |"
              for case, figure, target, ok in verdicts(by)]
    # the Spark section (python -m bench.spark) is measured separately: keep it
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if "<!-- spark:begin -->" in old and "<!-- spark:end -->" in old:
        lines += ["", old[old.index("<!-- spark:begin -->"):old.index("<!-- spark:end -->") + len("<!-- spark:end -->")]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
