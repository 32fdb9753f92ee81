"""process_staging.py: parse, validate and load each batch file atomically; the ledger adds up."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from nelo_etl import sql, staging
from nelo_etl.config import load_config
from nelo_etl.simulate import SimConfig, Simulator, write_batches

from .conftest import ROOT, SAMPLES, copy_samples

SAMPLE_NAME = "processing_batch_20251017T155740_samples.jsonl"


def run_ps(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, **(env or {}))
    if not env or "NELO_CRASH_AT" not in env:
        full.pop("NELO_CRASH_AT", None)
    return subprocess.run([sys.executable, str(ROOT / "process_staging.py"), "--config", str(project / "config.json"),
                           *args], env=full, capture_output=True, text=True, timeout=300)


def query(project: Path, q: str) -> list[tuple]:
    con = duckdb.connect(str(project / "warehouse" / "nelo.duckdb"), read_only=True)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def snapshot(project: Path) -> dict[str, list[tuple]]:
    """The warehouse's content without load metadata (load ids and times)."""
    return {
        "stg_events": query(project, "SELECT * EXCLUDE (load_id) FROM stg_events ORDER BY event_id, item_index"),
        "dead_letters": query(project, "SELECT * EXCLUDE (load_id) FROM dead_letter_messages ORDER BY ALL"),
        "ledger": query(project, "SELECT batch_id, file_name, sha256, received, loaded_events, duplicate_events, "
                                 "dead_lettered, status FROM etl_batches WHERE status = 'committed' AND NOT is_reprocess "
                                 "ORDER BY ALL"),
    }


def ledger(project: Path) -> list[tuple]:
    return query(project, "SELECT file_name, received, loaded_events, duplicate_events, dead_lettered, status, "
                          "is_reprocess FROM etl_batches ORDER BY load_id")


def test_samples_batch_dead_letters_three_and_counts_the_duplicate_once(project):
    copy_samples(project / "staging", SAMPLE_NAME)
    out = run_ps(project)
    assert out.returncode == 0, out.stderr
    assert "received=12 loaded=8 duplicates=1 dead_lettered=3" in out.stdout
    assert ledger(project) == [(SAMPLE_NAME, 12, 8, 1, 3, "committed", False)]
    assert query(project, "SELECT line_number, reason FROM dead_letter_messages ORDER BY 1") == [
        (9, "invalid_json"), (10, "missing_field:user_id"), (11, "items_unparseable")]
    dead = [json.loads(l) for l in (project / "dead_letter" / SAMPLE_NAME).read_text().splitlines()]
    assert [d["reason"] for d in dead] == ["invalid_json", "missing_field:user_id", "items_unparseable"]
    raw_lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    assert dead[0]["Body"] == json.loads(raw_lines[8])["Body"]          # the raw body, exactly
    assert dead[2]["MessageId"] == json.loads(raw_lines[10])["MessageId"]
    # one row per item row; the event without items keeps one row; sample 5 is not there twice
    assert query(project, "SELECT count(*), count(DISTINCT event_id) FROM stg_events") == [(10, 8)]
    assert query(project, "SELECT count(*) FROM stg_events WHERE item_index IS NULL") == [(1,)]
    assert query(project, "SELECT line_number FROM stg_events WHERE event_name = 'purchase'") == [(4,)]
    assert query(project, "SELECT count(*) FROM stg_events WHERE raw_body IS NOT NULL") == [(8,)]
    assert query(project, "SELECT extra_fields::VARCHAR FROM stg_events WHERE event_name = 'add_to_cart'") == \
        [('{"app_version": "4.18.0"}',)]
    assert (project / "processed" / SAMPLE_NAME).exists() and not (project / "staging" / SAMPLE_NAME).exists()
    for f in (project / "warehouse" / "nelo.duckdb", project / "dead_letter" / SAMPLE_NAME):
        assert f.stat().st_mode & 0o077 == 0, f                         # owner-only


def test_same_file_twice_is_skipped_and_reprocess_changes_nothing(project):
    copy_samples(project / "staging", SAMPLE_NAME)
    assert run_ps(project).returncode == 0
    before = snapshot(project)
    copy_samples(project / "staging", SAMPLE_NAME)                      # the same bytes again
    out = run_ps(project)
    assert out.returncode == 0 and "skipped (already loaded" in out.stdout
    assert not (project / "staging" / SAMPLE_NAME).exists()
    archived = copy_samples(project / "archive", SAMPLE_NAME)
    out = run_ps(project, "--reprocess", str(archived))
    assert out.returncode == 0, out.stderr
    assert "received=12 loaded=0 duplicates=9 dead_lettered=3" in out.stdout
    assert snapshot(project) == before                                  # nothing that was right changed
    assert archived.exists()                                            # the archive keeps its copy
    assert ledger(project)[-1] == (SAMPLE_NAME, 12, 0, 9, 3, "committed", True)


def test_empty_only_bad_and_only_duplicate_files(project):
    copy_samples(project / "staging", SAMPLE_NAME)
    assert run_ps(project).returncode == 0
    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    (project / "staging" / "processing_batch_20251018T000000_empty.jsonl").write_text("")
    (project / "staging" / "processing_batch_20251018T000001_bad.jsonl").write_text(
        "\n".join(lines[8:11] + ["not json at all"]) + "\n")
    (project / "staging" / "processing_batch_20251018T000002_dupes.jsonl").write_text(
        "\n".join([lines[0], lines[3], lines[4]]) + "\n")
    out = run_ps(project)
    assert out.returncode == 0, out.stderr
    assert ledger(project)[1:] == [
        ("processing_batch_20251018T000000_empty.jsonl", 0, 0, 0, 0, "committed", False),
        ("processing_batch_20251018T000001_bad.jsonl", 4, 0, 0, 4, "committed", False),
        ("processing_batch_20251018T000002_dupes.jsonl", 3, 0, 3, 0, "committed", False)]
    assert query(project, "SELECT reason FROM dead_letter_messages WHERE line_number = 4") == [("invalid_envelope",)]
    assert list((project / "staging").glob("*.jsonl")) == []


@pytest.mark.slow
@pytest.mark.parametrize("point", ["during_load", "before_commit"])
def test_kill_9_during_the_load_leaves_nothing_and_a_rerun_equals_a_clean_run(project, tmp_path_factory, point):
    copy_samples(project / "staging", SAMPLE_NAME)
    crashed = run_ps(project, env={"NELO_CRASH_AT": point})
    assert crashed.returncode == -9
    assert (project / "staging" / SAMPLE_NAME).exists()                 # the file stays where it was
    assert query(project, "SELECT count(*) FROM etl_batches") == [(0,)]
    assert run_ps(project).returncode == 0
    clean = tmp_path_factory.mktemp("clean")
    for name in ("staging", "processed", "archive", "dead_letter", "warehouse"):
        (clean / name).mkdir()
    shutil.copy(project / "config.json", clean / "config.json")
    copy_samples(clean / "staging", SAMPLE_NAME)
    assert run_ps(clean).returncode == 0
    assert snapshot(project) == snapshot(clean)
    assert (project / "processed" / SAMPLE_NAME).exists()
    assert (project / "dead_letter" / SAMPLE_NAME).read_bytes() == (clean / "dead_letter" / SAMPLE_NAME).read_bytes()


def test_a_failing_check_rolls_back_names_the_check_and_other_files_go_on(project, monkeypatch, tmp_path):
    """A check that fails on every event of a file is a systematic fault: the whole file fails
    (isolating stops: it would dead-letter most of the file). tests/reliability/test_poison.py
    has the one-message case, where only that message is dead-lettered."""
    cfg = load_config(project / "config.json")
    bad_check = tmp_path / "checks" / "zz_no_purchases_allowed.sql"
    bad_check.parent.mkdir()
    bad_check.write_text("-- a check that fails on purpose\nSELECT event_id, event_name FROM stg_events "
                         "WHERE load_id = $load_id AND (event_name = 'purchase' OR $batch_id LIKE '%samples')")
    monkeypatch.setattr(sql, "check_files", lambda: sorted(bad_check.parent.glob("*.sql")))
    copy_samples(project / "staging", SAMPLE_NAME)
    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    other = project / "staging" / "processing_batch_20251018T000000_nopurchase.jsonl"
    other.write_text(lines[0] + "\n")
    run = staging.process_files(cfg, staging.staging_files(cfg))
    failed, ok = run.files
    assert failed.status == "failed" and "zz_no_purchases_allowed" in failed.error and "purchase" in failed.error
    assert ok.status == "committed" and ok.loaded_events == 1
    assert (project / "staging" / SAMPLE_NAME).exists()
    assert query(project, "SELECT count(DISTINCT event_id) FROM stg_events") == [(1,)]
    assert query(project, "SELECT status FROM etl_batches ORDER BY file_name") == [("failed",), ("committed",)]


@pytest.mark.slow
def test_a_held_database_is_retried_then_reported_in_one_line(project):
    from nelo_etl.config import load_config as load
    copy_samples(project / "staging", SAMPLE_NAME)
    cfg_path = project / "config.json"
    raw = json.loads(cfg_path.read_text())
    raw["db_lock_timeout_seconds"] = 1.0
    cfg_path.write_text(json.dumps(raw))
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('ready', flush=True); time.sleep(30)", str(load(cfg_path).database_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        out = run_ps(project)
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert f"held by process {holder.pid}" in out.stderr
    assert (project / "staging" / SAMPLE_NAME).exists()
    assert run_ps(project).returncode == 0                                # free again: it loads


def test_dry_run_and_help(project):
    copy_samples(project / "staging", SAMPLE_NAME)
    out = run_ps(project, "--dry-run")
    assert out.returncode == 0 and "would load" in out.stdout and SAMPLE_NAME in out.stdout
    assert not (project / "warehouse" / "nelo.duckdb").exists()
    help_text = run_ps(project, "--help").stdout
    assert "--reprocess" in help_text and "examples:" in help_text


def test_both_parsers_give_the_same_rows(project, tmp_path):
    """The DuckDB parser accepts only what it can vouch for; the contract parser takes the rest.
    Both must give identical parsed rows and rejections on the samples and on chaotic traffic."""
    cfg = load_config(project / "config.json")
    messages = Simulator(SimConfig.chaos(events=3000, seed=11, bad_rate=0.03)).messages()
    (chaos,) = write_batches(messages, str(tmp_path), batches=1)
    odd = tmp_path / "odd.jsonl"
    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    body = json.loads(json.loads(lines[5])["Body"])
    variants = []
    for items in [body["items"].replace("int_value=1,", "int_value=1.0,"),        # in_stock as 1.0
                  body["items"].replace("quantity=2", "quantity=2.0"),
                  body["items"].replace("price=1271.0", "price= 1271.0"),
                  body["items"].replace("price=1271.0", "price=1_271.0"),
                  body["items"].replace("HOTSALE", " HOTSALE | (not set)|HOTSALE"),
                  body["items"].replace("HOTSALE", "NELO_XP_A__B|NELO_XP_|X_NELO_XP_Y_Z"),
                  # poison values and strict money text (issue 12): rejected alike by both parsers
                  body["items"].replace("price=1271.0", "price=1.0E33"),
                  body["items"].replace("price=1271.0", "price=999999999999.9999995"),
                  body["items"].replace("price=1271.0", "price=999999999999.999999"),
                  body["items"].replace("price=1271.0", "price=0.0000005"),
                  body["items"].replace("price=1271.0", "price=1.299,50"),
                  body["items"].replace("price=1271.0", "price=12abc"),
                  body["items"].replace("price=1271.0", "price=1,2,3.4"),
                  body["items"].replace("price=1271.0", "price=$1,271.00"),
                  body["items"].replace("price_in_usd=64.19", "price_in_usd=MXN 1,299.50"),
                  body["items"].replace("price_in_usd=64.19", "price_in_usd=USD 1,299.50"),
                  body["items"].replace("quantity=2", "quantity=100001"),
                  body["items"].replace("quantity=2", "quantity=100000"),
                  "[ ]", "[{item_id=A}, {foo=1}]", "[{item_id=A, item_params=[]}]",
                  "[{item_id=A, item_params=[{key=in_stock, value={string_value=, int_value=null, "
                  "float_value=null, double_value=null}}]}]"]:
        variants.append(json.dumps({"MessageId": f"m{len(variants)}", "Attributes": {"SentTimestamp": "1760720259500"},
                                    "Body": json.dumps(dict(body, items=items))}))
    variants.append(json.dumps({"MessageId": "dup-keys", "Body": '{"event_timestamp": 1760720259123456, '
                                '"user_id": "a", "user_id": "b", "event_name": "x", "platform": "IOS", "items": "[]"}'}))
    # SQS attributes out of range and text DuckDB cannot store: the event loads without them
    for n, attrs in enumerate([{"SentTimestamp": "99999999999999999999"}, {"SentTimestamp": "999999999999999"},
                               {"ApproximateReceiveCount": "99999999999"}, {"SentTimestamp": "-5"}]):
        variants.append(json.dumps({"MessageId": f"attrs{n}", "Attributes": attrs, "Body": json.dumps(body)}))
    variants.append(json.dumps({"MessageId": "surrogate-extra", "Body": json.dumps(dict(body, x="\udcff"))}))
    variants.append(json.dumps({"MessageId": "surrogate-replay", "Body": json.dumps(dict(body, replay_timestamp="\udcff"))}))
    variants.append(json.dumps({"MessageId": "\udcff-id", "Body": json.dumps(dict(body, user_id="u-sur"))}))
    variants.append("   ")
    odd.write_text("\n".join(lines + variants) + "\n", encoding="utf-8")
    for path in (SAMPLES, Path(chaos), odd):
        python, _ = parsed_by(cfg, Path(path), "python")
        duck, fell_back = parsed_by(cfg, Path(path), "duckdb")
        assert python == duck, path
        if path == Path(chaos):
            assert 0 <= fell_back < 0.1 * len(messages)                   # DuckDB did most of the work


def parsed_by(cfg, path: Path, parser: str) -> tuple[tuple, int]:
    """One file through one parser on a fresh connection: (parsed rows, rejected lines, dead
    letters), and how many lines the DuckDB parser left to the contract parser (0 for python)."""
    con = duckdb.connect()
    try:
        dead: list = []
        staging.create_parse_tables(con)
        fell_back = 0
        if parser == "python":
            staging.parse_with_python(con, cfg, path, dead)
        else:
            fell_back = staging.parse_with_duckdb(con, cfg, path, dead)
            assert con.execute("SELECT current_database()").fetchall()[0][0] == "memory"   # home again
        return (con.execute("SELECT * FROM parsed_items ORDER BY line_number, item_index").fetchall(),
                con.execute("SELECT * FROM rejected_lines ORDER BY line_number").fetchall(), dead), fell_back
    finally:
        con.close()


@pytest.mark.slow
def test_parallel_parsing_equals_serial_parsing(project, tmp_path, monkeypatch):
    cfg = load_config(project / "config.json")
    messages = Simulator(SimConfig.chaos(events=2500, seed=13, bad_rate=0.02)).messages()
    (path,) = write_batches(messages, str(tmp_path), batches=1)
    monkeypatch.setattr(staging, "CHUNK_LINES", 300)          # many chunks, out of a small file
    monkeypatch.setattr(staging, "PARALLEL_MIN_BYTES", 1)
    results = []
    for workers in (1, 2):
        con = duckdb.connect()
        dead: list = []
        staging.create_parse_tables(con)
        staging.parse_with_python(con, cfg, Path(path), dead, workers=workers)
        results.append((con.execute("SELECT * FROM parsed_items ORDER BY line_number, item_index").fetchall(),
                        con.execute("SELECT * FROM rejected_lines ORDER BY line_number").fetchall(), dead))
        con.close()
    assert results[0] == results[1] and results[0][2]


def test_a_duckdb_parse_failure_hands_the_whole_file_to_the_contract_parser(project, tmp_path, monkeypatch):
    """Out of memory (or any DuckDB error) while DuckDB parses: the parse ran outside the batch's
    transaction, so the contract parser takes the whole file on the same connection and the load
    commits exactly what the Python parser alone would have loaded."""
    cfg = load_config(project / "config.json")
    messages = Simulator(SimConfig.chaos(events=400, seed=5, bad_rate=0.05)).messages()
    (path,) = write_batches(messages, str(tmp_path / "in"), batches=1)
    results = {}
    for name in ("python", "duckdb_fails"):
        (project / "warehouse" / "nelo.duckdb").unlink(missing_ok=True)
        if name == "duckdb_fails":
            calls = []

            def out_of_memory(con, cfg_, path_):
                calls.append(path_)
                con.execute("CREATE TEMP TABLE parsed_lines AS SELECT 1 AS line_number").fetchall()
                raise duckdb.OutOfMemoryException("could not allocate block of size 256.0 KiB")

            monkeypatch.setattr(staging, "_duckdb_parse", out_of_memory)
            result = staging.load_file(cfg, Path(path), parser="duckdb")
            assert calls and result.python_parsed_lines == -1
        else:
            result = staging.load_file(cfg, Path(path), parser="python")
        assert result.status == "committed" and result.dead_lettered > 0
        results[name] = (snapshot(project), (result.received, result.loaded_events, result.duplicate_events,
                                             result.dead_lettered))
    assert results["python"] == results["duckdb_fails"]


@pytest.mark.parametrize("shards", [1, 3])
def test_the_duckdb_parse_gives_the_same_rows_in_any_number_of_shards(project, tmp_path, monkeypatch, shards):
    """The DuckDB parser runs one shard of the lines per core (line_number % shards): the rows
    and rejections do not depend on how many, and equal the contract parser's."""
    cfg = load_config(project / "config.json")
    messages = Simulator(SimConfig.chaos(events=600, seed=17, bad_rate=0.05)).messages()
    (path,) = write_batches(messages, str(tmp_path), batches=1)
    python, _ = parsed_by(cfg, Path(path), "python")
    monkeypatch.setattr(staging, "parse_shards", lambda lines: shards)
    duck, fell_back = parsed_by(cfg, Path(path), "duckdb")
    assert fell_back < 0.1 * len(messages)
    assert python == duck and python[0]
