"""The benchmark suite keeps working: a tiny smoke size of it (the real figures come from `make bench`)."""
from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT
import pytest

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def test_bench_smoke_writes_a_results_table(tmp_path):
    out = tmp_path / "RESULTS.md"
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out),
                          "--cases", "backfill_1_file", "incremental_on_100k", "floor_read_json",
                          "naive_pandas_rowwise", "rebuild_silver"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    for case in ("backfill_1_file", "incremental_on_100k", "floor_read_json", "naive_pandas_rowwise", "rebuild_silver"):
        assert f"| {case} |" in text
    assert "- commit: " in text and "- machine: " in text
    assert "| backfill_1_file | stage |" in text            # stage timings are recorded
    # the end-to-end run's CPU seconds before and after its commit, against what 6x read_json allows
    budget = next(line for line in text.splitlines() if line.startswith("| backfill_1_file: its median run before and after"))
    assert "load to the commit " in budget and "beside the lake export" in budget and "the target's " in budget


def test_bench_explain_profiles_a_batch_on_a_kept_history(tmp_path):
    """--work keeps the prepared histories; bench.explain then profiles the batch's Silver SELECTs."""
    work = tmp_path / "work"
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path / "R.md"), "--work", str(work),
                          "--cases", "incremental_on_100k"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    history = next(work.glob("history_*")).name.split("_")[1]
    assert "| incremental_on_100k | publish_s |" in (tmp_path / "R.md").read_text()
    out = subprocess.run([sys.executable, "-m", "bench.explain", "--work", str(work), "--history", history,
                          "--batch", "300"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"history {int(history):,} events")
    assert any("silver_event_sessions" in line for line in lines[1:])
    assert not (work / f"explain_{history}").exists()          # its copy is removed
    # bench.batch_floors on the same kept history: the timed batch, then its writes the plainest way
    import re

    out = subprocess.run([sys.executable, "-m", "bench.batch_floors", "--work", str(work), "--history", history,
                          "--batch", "300", "--runs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    floors = {m.group(1): (int(m.group(2).replace(",", "")), float(m.group(3)), float(m.group(4))) for m in re.finditer(
        r"^floor (\w+)\s+([\d,]+) rows\s+([\d.]+) s\s+([\d.]+) CPU s$", out.stdout, re.M)}
    assert set(floors) == {"warehouse_rows", "generation_rows", "lake_rows"}, out.stdout
    assert all(rows > 0 and wall > 0 for rows, wall, _ in floors.values())
    stg = int(re.search(r"stg_events ([\d,]+) rows", out.stdout).group(1).replace(",", ""))
    assert 0 < stg < floors["warehouse_rows"][0]            # the load's Silver rows are there too
    # the publication applies two batches' rows (the spare generation lags by two), the load its own
    assert floors["generation_rows"][0] > floors["warehouse_rows"][0] - stg, out.stdout
    # a floor is no more than what the run spent on the same writes and more
    run_split = re.search(r"to the commit ([\d.]+) s / [\d.]+ CPU s; after it ([\d.]+) s", out.stdout)
    assert floors["warehouse_rows"][1] <= float(run_split.group(1)), out.stdout
    assert floors["generation_rows"][1] <= float(run_split.group(2)), out.stdout
    writes = re.search(r"writes alone: ([\d.]+) s \(warehouse ([\d.]+) s, then ([\d.]+) s", out.stdout)
    assert writes, out.stdout
    cores = int(re.search(r"(\d+) cores;", out.stdout).group(1))
    gen, lake = floors["generation_rows"], floors["lake_rows"]
    after = max(gen[1], (gen[2] + lake[2]) / cores)
    # printed to 0.01 from figures printed to 0.001
    assert abs(float(writes.group(2)) - floors["warehouse_rows"][1]) < 0.0075
    assert abs(float(writes.group(3)) - after) < 0.0075
    assert abs(float(writes.group(1)) - (floors["warehouse_rows"][1] + after)) < 0.012
    assert not (work / f"batch_floors_{history}").exists()     # its copy is removed


def test_bench_batch_floors_verdict_puts_the_commit_first_and_shares_the_cores_after_it():
    """The batch floors' arithmetic on fixed figures: the warehouse's write before the commit;
    after it the generation's and the lake's side by side, no shorter than the generation's
    (one file's transaction), nor than their CPU shared out on the cores. The lake's own wall
    time bounds nothing (its partitions could be written side by side)."""
    from bench.batch_floors import verdict

    floors = {"warehouse_rows": (0.3, 0.4), "generation_rows": (0.5, 0.6), "lake_rows": (0.7, 1.6)}
    v = verdict(floors, cores=2)
    assert v["after_commit_s"] == (0.6 + 1.6) / 2 and v["writes_s"] == 0.3 + 1.1
    assert abs(v["left_s"] - (2.0 - 1.4)) < 1e-9
    assert verdict(floors, cores=8)["after_commit_s"] == 0.5           # many cores: the generation's own
    assert verdict(dict(floors, lake_rows=(3.0, 0.1)), cores=8)["after_commit_s"] == 0.5


def test_the_timed_batch_publishes_onto_a_generation_two_batches_behind(tmp_path):
    """As in a running job, the spare analytics generation was published two runs ago: the bench
    loads the previous batch untimed, so the timed publication applies both batches' changes (with
    both generations current it applied one batch's and read low)."""
    from bench.case import BATCH_FILE, field_copy, prepared_history
    from nelo_etl.db import connect
    from nelo_etl.staging import process_files

    base, data = prepared_history(tmp_path, 2000, 300)
    con = connect(base / "warehouse" / "nelo.duckdb", 10)
    try:
        assert len({j for (j,) in con.execute("SELECT journal_id FROM publish_gens").fetchall()}) == 1
    finally:
        con.close()
    cfg, lacking = field_copy(base, data, tmp_path / "case")
    con = connect(cfg.database_path, 10)
    try:
        (behind, ahead), = con.execute("SELECT min(journal_id), max(journal_id) FROM publish_gens").fetchall()
        pending = con.execute("SELECT count(*) FROM publish_journal WHERE journal_id > $j", {"j": behind}).fetchall()[0][0]
    finally:
        con.close()
    assert behind < ahead and pending == lacking > 0          # the spare lacks the previous batch
    run = process_files(cfg, [data / BATCH_FILE], move=False)
    assert run.ok
    con = connect(cfg.database_path, 10)
    try:
        (now,) = con.execute("SELECT journal_id FROM publish_gens WHERE journal_id > $a", {"a": ahead}).fetchall()[0]
        live_behind = con.execute("SELECT min(journal_id) FROM publish_gens").fetchall()[0][0]
    finally:
        con.close()
    assert now > ahead and live_behind == ahead              # the spare caught up over both batches


def test_the_incremental_case_reports_the_keys_its_publication_applied(tmp_path):
    """The case asserts its timed publication was incremental and took more keys than the spare
    lacked before the timed batch (both batches'); it reports how many."""
    run = subprocess.run([sys.executable, "-m", "bench.case", "incremental", "--history", "2000", "--batch", "300",
                          "--work", str(tmp_path / "incremental_on_100k")], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    import json
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["publish_keys"] > 0 and report["seconds"] > 0
    assert (tmp_path / "split_2000" / "split.json").exists()
    # the time on either side of the commit: both sides did work, and they add up to the batch
    split = report["split"]
    assert split["load_s"] > 0 and split["after_s"] > 0 and split["load_cpu_s"] > 0 and split["after_cpu_s"] > 0
    assert abs(split["load_s"] + split["after_s"] - report["seconds"]) < 1e-6
    assert abs(split["load_cpu_s"] + split["after_cpu_s"] - report["cpu_s"]) < 1e-6
    # the split point is the commit: before it, the load's own steps; after it, the publication
    stages = report["stages"]
    assert split["load_s"] >= stages["stage"] + stages["silver"] + stages["checks"] + stages["commit"]
    assert split["after_s"] >= stages["publish_s"]


def test_the_batch_is_also_timed_without_the_lake_export_as_its_profile(tmp_path):
    """The no-lake cases time the same batch with the export switched off: the results show what
    the lake adds beside the publication at each history size."""
    out = tmp_path / "R.md"
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--work", str(tmp_path / "work"),
                          "--cases", "incremental_on_100k", "incremental_on_100k_no_lake", "incremental_on_5M",
                          "incremental_on_5M_no_lake"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    # the prepared histories stay for the next run; the cases' copies of them (8 GB at 5M) do not
    work = tmp_path / "work"
    assert len(list(work.glob("history_*"))) == 2 and not list(work.glob("incremental_on_*"))
    text = out.read_text()
    assert "| incremental_on_5M | lake_export_s |" in text
    assert "| incremental_on_5M_no_lake | publish_s |" in text
    assert "| incremental_on_5M_no_lake | lake_export_s |" not in text      # the export did not run
    row = next(line for line in text.splitlines() if line.startswith("| the same 16k batches without the lake export"))
    assert "the lake adds" in row and "in CPU time" in row and "reported" in row
    # the batch's CPU seconds beside its wall time: far steadier on a shared machine
    batch = next(line for line in text.splitlines() if line.startswith("| a 16k batch on the 5M history vs on the 100k"))
    assert "(CPU " in batch
    assert "journal keys applied: " in text and "journal keys applied: None" not in text
    lake_row = next(line for line in text.splitlines() if line.startswith("| lake export after the 16k batch"))
    assert "rows written: " in lake_row and "rows written: None" not in lake_row
    # the CPU budget of the batch at 5M, with the lake and without it
    for case, after in (("incremental_on_5M", " beside the lake export, team"), ("incremental_on_5M_no_lake", ", team")):
        budget = next(line for line in text.splitlines() if line.startswith(f"| {case}: its median run before and after"))
        assert f"publication{after}" in budget and "CPU s; in all " in budget and "the target's 2.00 s holds" in budget


def test_the_same_batch_is_timed_on_the_newest_events_of_its_own_traffic(tmp_path, monkeypatch):
    """Each size's own traffic is another simulated world (at full size a 100k one's batch touches
    2,800 users and reaches a day back, a 5M one's 6,200 users and three days), so the *_of_5M
    cases time the 5M traffic's own batch on the newest events of its history: only the history's
    size differs. The rows say what each batch asks."""
    import re

    import bench.case as case

    # the split: the same batch files, and the newest history lines in order (across files)
    monkeypatch.setattr(case, "HISTORY_FILE_LINES", 1000)
    work = tmp_path / "split"
    world = case._split(work, 10000, 300)[0]
    small = case._split(work, 1000, 300, world=10000)[0]
    for name in (case.BATCH_FILE, case.PREVIOUS_FILE):
        assert (small / name).samefile(world / name)

    def lines(folder):
        return [line for p in sorted(folder.glob("*_history.jsonl")) for line in open(p, encoding="utf-8")]

    whole, newest = lines(world), lines(small)
    assert len(list(world.glob("*_history.jsonl"))) > 3 and len(list(small.glob("*_history.jsonl"))) >= 2
    assert len(newest) == len(whole) * 1000 // 10000 and newest == whole[-len(newest):]
    assert case._split(work, 1000, 300, world=10000) == (small, True)     # kept once made
    # the world's split made again: the sub-split follows it (its batch files are the new ones)
    (world / case.SPLIT_META).unlink()
    assert case._split(work, 1000, 300, world=10000) == (small, False)
    assert (small / case.BATCH_FILE).samefile(world / case.BATCH_FILE) and lines(small) == newest
    with pytest.raises(SystemExit):
        case._split(work, 20000, 300, world=10000)

    out = tmp_path / "R.md"
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--work", str(tmp_path / "work"),
                          "--cases", "incremental_on_100k", "incremental_on_5M", "incremental_on_100k_of_5M",
                          "incremental_on_500k_of_5M"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| the same 16k batch (the 5M traffic's)")]
    assert len(rows) == 2 and "newest 100k" in rows[0] and "newest 500k" in rows[1]
    assert all("(its arrivals span the days the batch reaches)" in row or "(shorter than the days the batch reaches)"
               in row for row in rows)
    own = next(line for line in text.splitlines() if line.startswith("| a 16k batch on the 5M history"))
    shape = re.compile(r"([\d,]+) events of ([\d,]+) users, ([\d,]+) of them a day or more late, reaching "
                       r"([\d.]+) days back, on ([\d.]+) days of arrivals")
    (big, theirs), same = shape.findall(own), [shape.findall(row)[0] for row in rows]
    count = lambda s: int(s.replace(",", ""))       # noqa: E731
    # events, not item rows: at most one per message of the 300-message batch
    assert all(0 < count(b[0]) <= 300 and count(b[2]) <= count(b[0]) for b in (big, theirs, *same))
    # the same batch: on less of its history, staging knows fewer of its events already (resends of
    # older ones), so it stages at least what it staged on the whole history
    assert all(count(b[0]) >= count(big[0]) and count(b[1]) >= count(big[1]) for b in same)
    # each size's own history, and the 5M traffic's newest 100k and 500k (at smoke sizes: 200 and 1,000)
    assert {p.name for p in (tmp_path / "work").glob("history_*")} == {
        "history_200", "history_10000", "history_200_of_10000", "history_1000_of_10000"}


def test_bench_floors_prints_the_writes_a_run_cannot_skip_against_the_target(tmp_path):
    """bench.floors loads a traffic once, then times the plainest statement for each output the
    run must write (each checks it wrote every row), at default threads and at one; its verdict
    lines add up the lower figures, the lake at its cheapest way, against 6x read_json."""
    import re

    work = tmp_path / "not" / "made" / "yet"           # made when missing
    run = subprocess.run([sys.executable, "-m", "bench.floors", "--events", "2000", "--runs", "1", "--uncompressed",
                          "--work", str(work)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)), float(m.group(4))) for m in re.finditer(
        r"^(\w+)\s+wall\s+([\d.]+) s\s+CPU\s+([\d.]+) s\s+1 thread CPU\s+([\d.]+) s$", run.stdout, re.M)}
    assert set(rows) == {"read_json", "warehouse_tables", "generation_copy", "lake_export", "lake_copies",
                         "lake_partition_by", "read_stg_events", "read_silver", "warehouse_tables_uncompressed",
                         "generation_copy_uncompressed"}
    assert all(v >= 0 for figures in rows.values() for v in figures)
    low = {name: min(cpu, one) for name, (_, cpu, one) in rows.items()}
    lake = min(low["lake_export"], low["lake_copies"], low["lake_partition_by"])
    needed = low["read_json"] + low["warehouse_tables"] + low["generation_copy"] + lake
    with_lake = re.search(r"with the lake \(on by default\): floors ([\d.]+) CPU s \(the lake at ([\d.]+)\), "
                          r"net of their reads ([\d.]+): they (exceed|fit in) it", run.stdout)
    assert with_lake, run.stdout
    # the printed figures are rounded to 0.01 (at most 0.005 each, nine of them in the net)
    assert abs(float(with_lake.group(2)) - lake) < 0.01
    assert abs(float(with_lake.group(1)) - needed) < 0.03
    assert abs(float(with_lake.group(3)) - (needed - 2 * low["read_stg_events"] - 3 * low["read_silver"])) < 0.06
    target = re.search(r"6x read_json \(([\d.]+) s\) is ([\d.]+) s: ([\d.]+) CPU s on (\d+) cores", run.stdout)
    assert abs(float(target.group(1)) - rows["read_json"][0]) < 0.01
    assert abs(float(target.group(3)) - 6 * rows["read_json"][0] * int(target.group(4))) < 0.2
    assert re.search(r"without the lake: net [\d.]+: they (exceed|fit in) it", run.stdout)
    assert re.search(r"uncompressed DuckDB files, with the lake: net [\d.]+: they (exceed|fit in) it", run.stdout)
    counted = re.search(r"stg_events ([\d,]+) rows, Silver ([\d,]+) rows", run.stdout)
    assert int(counted.group(1).replace(",", "")) > 0 and int(counted.group(2).replace(",", "")) > 0
    assert not list(work.iterdir())                 # its scratch folder (warehouse, lake, copies) is gone


def test_bench_floors_budget_counts_the_cheapest_lake_and_takes_the_reads_off():
    """The verdict's arithmetic on fixed figures: the lake at its cheapest way, the reads of the
    warehouse taken off (stg_events twice and Silver three times with the lake; once and twice
    without), the target 6x read_json's wall time on every core."""
    from bench.floors import budget

    cpu = {"read_json": 4.0, "warehouse_tables": 13.0, "generation_copy": 10.0, "lake_export": 16.0,
           "lake_copies": 12.0, "lake_partition_by": 20.0, "read_stg_events": 1.0, "read_silver": 2.0}
    b = budget(cpu, read_json_wall_s=2.5, cores=2)
    assert b["lake_cpu_s"] == 12.0
    assert b["needed_cpu_s"] == 4.0 + 13.0 + 10.0 + 12.0
    assert b["net_cpu_s"] == 39.0 - 2 * 1.0 - 3 * 2.0
    assert b["no_lake_net_cpu_s"] == 27.0 - 1.0 - 2 * 2.0
    assert b["target_s"] == 15.0 and b["target_cpu_s"] == 30.0
    assert budget(cpu, read_json_wall_s=2.5, cores=4)["target_cpu_s"] == 60.0


def test_the_same_bench_traffic_made_twice_at_once_is_kept_once_and_both_get_it(tmp_path, monkeypatch):
    """bench/data caches simulated traffic; with two test workers two of them may make the same
    traffic at once (two threads stand in for them here). Each writes a temp folder of its own,
    the first rename wins, and both get the same files, with no temp folder left."""
    import threading

    from bench import case

    monkeypatch.setattr(case, "DATA", tmp_path / "data")
    got: list = [None, None]
    errors: list = []

    def make(i: int) -> None:
        try:
            got[i] = case.traffic(3000, 3, seed=5)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert got[0] == got[1] and len(got[0]) == 3 and all(path.stat().st_size > 0 for path in got[0])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["e3000_f3_s5"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs a CPU affinity of at least two CPUs to narrow")
def test_bench_budgets_divide_by_the_cores_the_process_may_use_not_the_machines():
    """Pinned to one CPU (taskset, a cpuset), a run's wall second holds one CPU second: the
    bench's budgets and its machine line say 1 core, though os.cpu_count() counts them all."""
    cpu = min(os.sched_getaffinity(0))
    code = (f"import os; os.sched_setaffinity(0, {{{cpu}}}); "          # pinned before anything starts a thread
            "from nelo_etl.cpus import usable_cpus; "
            "from bench.__main__ import _budget, machine; "
            "row = {'split': {'load_s': 1.0, 'load_cpu_s': 1.5, 'after_s': 1.0, 'after_cpu_s': 1.5}}; "
            "print(usable_cpus(), os.cpu_count()); print(machine()); "
            "print(_budget('case', row, 2.0)[0]); print(_budget('case', row, 2.0)[1])")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    counts, machine_line, budget_name, budget_text = run.stdout.splitlines()
    usable, machine_cores = map(int, counts.split())
    assert usable == 1
    assert machine_line.startswith(f"1 cores of the machine's {machine_cores} (")
    assert budget_name.endswith("in CPU seconds on 1 cores")
    # 3.0 CPU s on one core take at least 3.0 s; a 2 s target holds 2.0 CPU s there
    assert "which 1 cores run in no less than 3.00 s" in budget_text
    assert "the target's 2.00 s holds at most 2.00 CPU s" in budget_text
