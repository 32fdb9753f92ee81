"""One benchmark case, run in a child process by ``python -m bench`` (so its peak RSS is its own).
Prints one JSON line: {"seconds": ..., "stages": {...}}."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from nelo_etl import gold, simulate, staging, wire
from nelo_etl.config import load_config
from nelo_etl.db import connect, ensure_schema, mark_vacuumed, transaction
from nelo_etl.staging import process_files

from .parsers import workspace

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"


def traffic(events: int, files: int, seed: int = 1) -> list[Path]:
    """Chaotic simulated traffic cut into ``files`` batch files, cached in bench/data/."""
    folder = DATA / f"e{events}_f{files}_s{seed}"
    if not folder.exists() or not any(folder.glob("*.jsonl")):
        shutil.rmtree(folder, ignore_errors=True)
        days = max(1.0, 14 * events / 1_000_000)
        messages = simulate.Simulator(simulate.SimConfig.chaos(events=events, seed=seed, days=days)).messages()
        # a temp folder of its own: two processes (test workers) may make the same traffic at once;
        # the first rename wins and the other's equal copy is dropped
        DATA.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=DATA))
        simulate.write_batches(messages, str(tmp), batches=files)
        try:
            tmp.rename(folder)
        except OSError:
            if not any(folder.glob("*.jsonl")):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted(folder.glob("*.jsonl"))


def merged_stages(results) -> dict[str, float]:
    stages: dict[str, float] = {}
    for f in results.files:
        for k, v in f.timings.items():
            stages[k] = stages.get(k, 0.0) + v
    if isinstance(results.gold, dict):
        stages.update(results.gold)
    if getattr(results.lake, "seconds", None) is not None:     # the lake export, on by default
        stages["lake_export_s"] = results.lake.seconds
    return stages


#: Marks a folder a case made: only such a folder (or an empty one) is wiped for the next run.
CASE_MARK = ".nelo-bench-case"


def _clean_case_folder(work: Path) -> None:
    """Empty ``work`` for a run. A folder this module did not make is refused, not wiped: once
    ``--work`` named the parent of the histories (``python -m bench`` passes <work>/<case>), and
    the case deleted them."""
    if work.exists() and any(work.iterdir()) and not (work / CASE_MARK).exists():
        raise SystemExit(f"{work} is not a case's folder (no {CASE_MARK}); not deleting it. "
                         "Pass the case's own folder, as python -m bench does (<work>/<case>).")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / CASE_MARK).touch()


def _warm(paths: list[Path]) -> None:
    """Read the input once, untimed: the floor and the backfills then read it from the page cache
    alike. Run round-robin after a 5M case's 8 GB copy, the floor read its file from disk
    (3.0-3.9 s against 2.5 s warm) and flattered every ratio to it."""
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass


def backfill(args) -> dict:
    files = traffic(args.events, args.files)
    _clean_case_folder(args.work)                       # every run starts from an empty warehouse
    _warm(files)
    cfg = load_config(workspace(args.work))
    run, seconds, cpu, split = timed_run(cfg, files)
    assert run.ok
    return {"seconds": seconds, "cpu_s": cpu, "split": split, "stages": merged_stages(run)}


def timed_run(cfg, paths: list[Path]):
    """process_files on ``paths`` (not moved), timed: (run, wall seconds, CPU seconds, split), the
    split being the wall and CPU seconds on either side of the commit: the load (parse to COMMIT)
    and what follows it (the publication beside the lake export). On 2 cores a wall time of w
    seconds holds at most 2w CPU seconds, so the CPU a run needs bounds how fast it can be."""
    committed: list[tuple[float, float]] = []
    real_refresh = staging.refresh_gold_layer

    def after_commit(*a, **k):
        committed.append((time.perf_counter(), _cpu_seconds()))
        return real_refresh(*a, **k)

    staging.refresh_gold_layer = after_commit   # called once, after the last commit
    try:
        t, cpu = time.perf_counter(), _cpu_seconds()
        run = process_files(cfg, paths, move=False)
        end, cpu_end = time.perf_counter(), _cpu_seconds()
    finally:
        staging.refresh_gold_layer = real_refresh
    if len(committed) != 1:
        raise AssertionError(f"the run published {len(committed)} times, not once after its commit: "
                             + "; ".join(f"{f.name} {f.status} {f.error or ''}" for f in run.files))
    (t_commit, cpu_commit), = committed
    split = {"load_s": t_commit - t, "load_cpu_s": cpu_commit - cpu,
             "after_s": end - t_commit, "after_cpu_s": cpu_end - cpu_commit}
    return run, end - t, cpu_end - cpu, split


#: lines per history file: the history arrives as batch files, as in the field (and a 5M-event
#: history in one 10 GB file would measure nothing but that file)
HISTORY_FILE_LINES = 100_000


#: the two newest batch files of a split history: the timed batch, and the one loaded untimed before it
PREVIOUS_FILE = "processing_batch_99999999T999998_previous.jsonl"
BATCH_FILE = "processing_batch_99999999T999999_batch.jsonl"
#: the sizes a split was made for (a split of other sizes is made again, with its history)
SPLIT_META = "split.json"
#: marks a prepared history whose preparation finished (a killed one is made again)
PREPARED = ".prepared"


def _lines(files: list[Path]) -> Iterator[str]:
    """The lines of ``files``, one after the other."""
    for p in files:
        with open(p, encoding="utf-8") as fh:
            yield from fh


def _write_split(lines: Iterable[str], folder: Path, cut: int, cut2: int, meta: dict,
                 linked: tuple[Path, ...] = ()) -> None:
    """Write a split at ``folder`` (made beside it, then renamed): the lines before ``cut`` as
    history files of HISTORY_FILE_LINES lines, those before ``cut2`` as the previous batch, the
    rest as the timed batch; ``linked`` files hard-linked in, and ``meta`` as its split.json."""
    tmp = folder.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out = None
    for n, line in enumerate(lines):
        if n % HISTORY_FILE_LINES == 0 and n < cut or n in (cut, cut2):
            if out:
                out.close()
            name = (f"processing_batch_00000000T{n // HISTORY_FILE_LINES:06d}_history.jsonl" if n < cut
                    else PREVIOUS_FILE if n < cut2 else BATCH_FILE)
            out = open(tmp / name, "w", encoding="utf-8")
        out.write(line)
    if out:
        out.close()
    for path in linked:
        os.link(path, tmp / path.name)
    (tmp / SPLIT_META).write_text(json.dumps(meta))
    tmp.rename(folder)


def _split_history(files: list[Path], history: int, batch: int, folder: Path) -> Path:
    """Stream the traffic into history files of HISTORY_FILE_LINES lines and two batch files of
    the newest arrivals (each batch/(history+2*batch) of the lines): the previous batch, then the
    timed one. Returns the timed batch file."""
    total = sum(1 for _ in _lines(files))
    _write_split(_lines(files), folder, total * history // (history + 2 * batch),
                 total * (history + batch) // (history + 2 * batch), {"history": history, "batch": batch})
    return folder / BATCH_FILE


def _newest_of(world_split: Path, history: int, world: int, batch: int, folder: Path) -> None:
    """A split of the ``world`` traffic's own two batches over only the newest arrivals of its
    history (``history`` of its ``world`` events' share of the lines): the same timed batch on a
    smaller history of the same traffic. The batch files are linked, not copied."""
    files = sorted(world_split.glob("*_history.jsonl"))
    if not files:
        raise SystemExit(f"{world_split} holds no history files")
    # counted, not assumed: the split may be of another file size
    counts = [sum(1 for _ in _lines([p])) for p in files]
    keep = sum(counts) * history // world
    skip, first, older = sum(counts) - keep, 0, 0
    while first < len(files) and older + counts[first] <= skip:     # wholly older: not read again
        older += counts[first]
        first += 1
    newest = itertools.islice(_lines(files[first:]), skip - older, None)
    _write_split(newest, folder, keep, keep, {"history": history, "batch": batch, "world": world},
                 linked=(world_split / PREVIOUS_FILE, world_split / BATCH_FILE))


def _split(work: Path, history: int, batch: int, world: int | None = None) -> tuple[Path, bool]:
    """The split files of a history (made when missing or made for other sizes), and whether they
    were already there. ``world``: the newest ``history`` events of the ``world`` traffic's split,
    with its batches (made again whenever that split is not the one its batch files came from)."""
    if world and world <= history:
        raise SystemExit(f"--world {world} must be larger than --history {history}")
    data = work / (f"split_{history}_of_{world}" if world else f"split_{history}")
    meta = data / SPLIT_META
    expected: dict = {"history": history, "batch": batch, **({"world": world} if world else {})}
    current = meta.exists() and json.loads(meta.read_text()) == expected
    world_split = None
    if world:
        world_split, world_current = _split(work, world, batch)
        current = (current and world_current and (data / BATCH_FILE).exists()
                   and (data / BATCH_FILE).samefile(world_split / BATCH_FILE))
    if current:
        return data, True
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(work / data.name.replace("split_", "history_", 1), ignore_errors=True)    # loaded from the old one
    if world_split:
        _newest_of(world_split, history, world, batch, data)
    else:
        files = traffic(history + 2 * batch, max(2, history // 500_000))
        _split_history(files, history, batch, data)
    return data, False


def prepared_history(work: Path, history: int, batch: int, world: int | None = None) -> tuple[Path, Path]:
    """The prepared history (a workspace) and its split files under ``work``, made when missing:
    the traffic of history + two batches, the history loaded and published twice (both
    generations of the analytics file exist, as in steady state). A history whose split was made
    for other sizes, or before the split held a previous batch back (no split.json), or whose
    preparation did not finish, is made again (both folders are the bench's own).

    ``world`` (larger than ``history``): the history is the newest ``history`` events of the
    ``world`` traffic, and the batches are that traffic's. Each size's own traffic is a different
    simulated world (a 100k one lasts 1.8 days with 3,300 users, a 5M one 70 days with 125,000),
    so its batch is another batch: this times the same batch on histories that differ in size only."""
    world = world if world and world != history else None
    base = work / (f"history_{history}_of_{world}" if world else f"history_{history}")
    data, current = _split(work, history, batch, world)
    if base.exists() and not (current and (base / PREPARED).exists()):     # other sizes, or half made
        shutil.rmtree(base)
    if not base.exists():
        cfg = load_config(workspace(base))
        assert process_files(cfg, sorted(data.glob("*_history.jsonl")), move=False).ok
        _publish(cfg)               # the load's publication and these two: both generations current
        _publish(cfg)
        (base / PREPARED).touch()
    _steady(base)
    return base, data


#: loads one file into a workspace, in a process of its own (argv: config, file)
_LOAD_ONE = ("import sys; from pathlib import Path; from nelo_etl.config import load_config; "
             "from nelo_etl.staging import process_files; "
             "sys.exit(0 if process_files(load_config(sys.argv[1]), [Path(sys.argv[2])], move=False).ok else 1)")


def field_copy(base: Path, data: Path, work: Path):
    """A fresh copy of the prepared history with the previous batch loaded (untimed): its spare
    analytics generation lags the live one by that batch, as a running job's does. The previous
    batch loads in a process of its own, so the timed run still pays what a job's first load in
    a fresh process pays (cron starts one every 15 minutes). Returns (config, journal rows the
    spare lacks)."""
    cfg = _fresh_copy(base, work)
    subprocess.run([sys.executable, "-c", _LOAD_ONE, str(work / "config.json"), str(data / PREVIOUS_FILE)],
                   cwd=ROOT, check=True)
    os.sync()                       # as in _fresh_copy: its writes are not the timed run's to flush
    con = connect(cfg.database_path, 60)
    try:
        (behind, ahead), = con.execute("SELECT min(journal_id), max(journal_id) FROM publish_gens").fetchall()
        lacking = con.execute("SELECT count(*) FROM publish_journal WHERE journal_id > $j",
                              {"j": behind}).fetchall()[0][0]
    finally:
        con.close()
    assert behind < ahead and lacking > 0, "the spare generation does not lag the previous batch"
    return cfg, lacking


def incremental(args) -> dict:
    """A batch of the same traffic on top of a history (loaded untimed, then copied per run).

    Each run first loads the previous batch untimed: a running job's spare analytics generation
    is the one published two runs ago, so its publication applies two batches' changes. Without
    it both generations of the prepared history are current and the timed publication would
    apply one batch's (the bias of sessions 7 and 8's figures)."""
    base, data = prepared_history(args.work.parent, args.history, args.batch, args.world)
    if args.prepare:
        return {"seconds": 0.0}
    cfg, lacking = field_copy(base, data, args.work)
    if args.no_lake:
        # the profile of what the lake export adds to the batch: the same timed batch without it
        # (the previous batch was exported, so only the timed run differs)
        body = json.loads((args.work / "config.json").read_text())
        body["lakehouse_path"] = None
        (args.work / "config.json").write_text(json.dumps(body, indent=2))
        cfg = load_config(args.work / "config.json")
    published: list[dict] = []
    real_update = gold.update_generation

    def recording(*a, **k):
        published.append(real_update(*a, **k))
        return published[-1]

    gold.update_generation = recording       # to check what the timed publication did (not timed)
    try:
        run, seconds, cpu, split = timed_run(cfg, [data / BATCH_FILE])
    finally:
        gold.update_generation = real_update
    assert run.ok and (run.lake is None) == args.no_lake
    # the figure is the field's only if the publication took both batches' keys into the spare
    (stats,) = published
    assert stats["publish_mode"] == "incremental" and stats["publish_keys"] > lacking, (stats, lacking)
    stages = merged_stages(run)
    stages["team_refresh_s"] = _team_refresh(cfg)      # what the run that finds them due adds (hourly)
    return {"seconds": seconds, "cpu_s": cpu, "split": split, "stages": stages, "publish_keys": stats["publish_keys"],
            "lake_rows": sum(run.lake.rows.values()) if run.lake else 0, "batch": batch_shape(cfg)}


def batch_shape(cfg) -> dict:
    """What the timed batch (the newest load) asks of the pipeline, beside its size: its events
    (stg_events holds a row per item), the users it touches (their sessions are recomputed), its
    events a day or more older than its newest one, how far back in event time it reaches (days
    before its newest event), and the days of arrivals in the history under it (from the
    history's first message to the batch's first): a history shorter than the reach does not hold
    every day the batch changes."""
    con = connect(cfg.database_path, 60, read_only=True)
    try:
        (events, users, late, reach, days), = con.execute("""
            WITH b AS (SELECT * FROM stg_events WHERE load_id = (SELECT max(load_id) FROM stg_events)),
                 newest AS (SELECT max(event_ts) AS ts, min(sent_ts) AS first_sent FROM b)
            SELECT count(DISTINCT event_id), count(DISTINCT user_id),
                   count(DISTINCT event_id) FILTER (WHERE event_ts <= (SELECT ts FROM newest) - INTERVAL 1 DAY),
                   date_diff('second', min(event_ts), (SELECT ts FROM newest)) / 86400,
                   date_diff('second', (SELECT min(sent_ts) FROM stg_events WHERE load_id < (SELECT max(load_id) FROM b)),
                             (SELECT first_sent FROM newest)) / 86400
            FROM b""").fetchall()
    finally:
        con.close()
    return {"events": events, "users": users, "late_1d": late, "reach_days": round(reach, 1),
            "history_days": round(days, 1)}


def _cpu_seconds() -> float:
    """CPU time of this process so far, every thread (DuckDB's and the lake export's), user + system,
    and of its children that ended (the contract parser's workers, which a big file gets): on
    this machine far steadier than wall time, whose medians drift by a fifth between runs."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _publish(cfg) -> None:
    """One more publication (the history's load made the first)."""
    con = connect(cfg.database_path, 60)
    try:
        gold.create_views(con)
        gold.publish(cfg, con, teams=False)
    finally:
        con.close()


def _steady(base: Path) -> None:
    """Bring a prepared history to the state a running job keeps: both generations of the
    analytics file published by this version (their Gold views made once, not per run). A
    generation whose views this version would make again gets untimed publications (at most two:
    each publishes the spare one)."""
    cfg = load_config(base / "config.json")
    for _ in range(2):
        if all(gold.views_current_in(gen) for gen in gold.gen_paths(cfg)):
            return
        _publish(cfg)
    assert all(gold.views_current_in(gen) for gen in gold.gen_paths(cfg)), "the generations' views are made every run"


def _copy_tree(base: Path, work: Path) -> None:
    """copytree that keeps hard links: ``analytics.duckdb`` is a link to one generation, as in
    the field. Copied apart, it is a third 2 GB file at 5M, its generation is not recognised as
    the live one, and the publication's rename frees it (0.47 s of unlinking extents, timed)."""
    seen: dict[tuple[int, int], str] = {}

    def copy(src: str, dst: str) -> str:
        st = os.stat(src)
        if st.st_nlink > 1:
            first = seen.setdefault((st.st_dev, st.st_ino), dst)
            if first != dst:
                os.link(first, dst)
                return dst
        return shutil.copy2(src, dst)

    shutil.copytree(base, work, dirs_exist_ok=True, copy_function=copy)


def _fresh_copy(base: Path, work: Path):
    """A copy of a prepared workspace to time a run on. Its team files are made fresh: the timed
    run is one of the three in four that find them so (team_refresh_minutes); _team_refresh
    times the fourth's extra work."""
    _clean_case_folder(work)
    _copy_tree(base, work)
    (work / "config.json").write_text((base / "config.json").read_text())
    for team_file in (work / "warehouse").glob("team_*.duckdb"):
        team_file.touch()
    cfg = load_config(work / "config.json")
    # likewise the compaction of deleted rows (vacuum_minutes): done within the hour, as for
    # three runs in four; a run that finds it due pays it in its commit and publication
    for name in ["warehouse"] + [gen.name for gen in gold.gen_paths(cfg)]:
        mark_vacuumed(cfg, name)
    # The copy's pages are still dirty in the page cache (up to gigabytes at 5M): flushed here,
    # untimed, or the timed run's first fsync (its commit's checkpoint) writes them back instead.
    # A running job's files are not freshly copied. Measured on the 1M history: the staging's
    # checkpoint 0.33 s without this, 0.07 s with it (0.06 s on the 100k one either way).
    os.sync()
    return cfg


def _team_refresh(cfg) -> float:
    con = connect(cfg.database_path, 60)
    try:
        t = time.perf_counter()
        gold.publish_teams(cfg, con)
        return time.perf_counter() - t
    finally:
        con.close()


def reprocess(args) -> dict:
    """A day of archives (``--files``, 96 by default) reloaded by hand through ``--reprocess`` on
    top of the warehouse they made (loaded untimed, copied per run)."""
    files = traffic(args.events, args.files)
    base = args.work.parent / f"reprocess_base_{args.events}_{args.files}"
    if not base.exists():
        cfg = load_config(workspace(base))
        assert process_files(cfg, files, move=False).ok
        _publish(cfg)
    _steady(base)
    if args.prepare:
        return {"seconds": 0.0}
    cfg = _fresh_copy(base, args.work)
    t = time.perf_counter()
    run = process_files(cfg, files, reprocess=True, move=False)
    assert run.ok
    return {"seconds": time.perf_counter() - t, "stages": merged_stages(run)}


def receive(args) -> dict:
    """etl.py's receive rate against bench.receive's in-memory SQS-protocol server (etl.py's own
    wall time, not the simulator's or the server's set-up)."""
    from . import receive as receiver

    result = receiver.drain(args.events)
    assert result["ok"], result["report"] + "\n" + result["stderr"][-2000:]
    return {"seconds": result["seconds"], "report": result["report"]}


#: The floor: DuckDB's read_json of a batch file's lines ($p) into a table (the bodies not parsed).
READ_JSON_FLOOR = ("CREATE OR REPLACE TABLE raw AS SELECT * FROM read_json($p, format = 'newline_delimited', "
                   "columns = {'MessageId': 'VARCHAR', 'Attributes': 'JSON', 'Body': 'VARCHAR'})")


def read_json(args) -> dict:
    import duckdb

    (path,) = traffic(args.events, 1)
    _warm([path])
    con = duckdb.connect()
    t = time.perf_counter()
    con.execute(READ_JSON_FLOOR, {"p": str(path)}).fetchall()
    return {"seconds": time.perf_counter() - t}


def naive(args) -> dict:
    """The naive route: pandas read_json of the lines, a per-row Python parse, row-wise INSERTs."""
    import duckdb
    import pandas as pd

    (path,) = traffic(args.events, 1)
    con = duckdb.connect()
    con.execute("CREATE TABLE rows (event_id VARCHAR, item_index INTEGER, user_id VARCHAR, event_name VARCHAR, "
                "item_id VARCHAR, price DOUBLE, quantity BIGINT)")
    t = time.perf_counter()
    frame = pd.read_json(path, lines=True, dtype=False)
    for body in frame["Body"]:
        try:
            event = wire.parse_body(body)
        except wire.RejectedMessage:
            continue
        for item in event.items or [None]:
            con.execute("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)", [
                event.event_id, item and item.item_index, event.user_id, event.event_name,
                item and item.values["item_id"], item and item.values["price"], item and item.values["quantity"]])
    return {"seconds": time.perf_counter() - t}


def rebuild(args) -> dict:
    from nelo_etl import silver

    base = args.work.parent / f"rebuild_base_{args.events}"
    if not base.exists():
        cfg = load_config(workspace(base))
        assert process_files(cfg, traffic(args.events, 1), move=False).ok
    if args.prepare:
        return {"seconds": 0.0}
    cfg = load_config(base / "config.json")
    con = connect(cfg.database_path, 60, memory_limit=cfg.duckdb_memory_limit)
    try:
        ensure_schema(con)
        t = time.perf_counter()
        with transaction(con):
            silver.rebuild(con, cfg)
        return {"seconds": time.perf_counter() - t}
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["backfill", "incremental", "reprocess", "receive", "read_json", "naive", "rebuild"])
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--history", type=int, default=0)
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--prepare", action="store_true", help="only build what the case reads (untimed)")
    parser.add_argument("--no-lake", action="store_true", help="incremental: the timed batch without the lake export")
    parser.add_argument("--world", type=int, default=None,
                        help="incremental: the traffic's size when larger than --history (the history is its newest "
                             "events, the batch is its batch)")
    args = parser.parse_args()
    args.work.parent.mkdir(parents=True, exist_ok=True)
    report = globals()[args.case](args)
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
