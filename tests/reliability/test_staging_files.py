"""Only our own, complete, regular files are loaded; archived batches are immutable (issue 12).

Each case was reproduced on the code before the fix: a symlink was followed (its target chmod-ed
and loaded), a FIFO or a link to /dev/zero hung the loader forever, a file still being written
was half loaded and moved on, a processed_dir on another filesystem failed every run after the
first, two loaders at once died with a traceback, an edited archive file was loaded again, and
a truncated copy followed by the whole file left dead letters for lines that had loaded.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ..conftest import ROOT, SAMPLES, copy_samples, write_config
from ..test_staging import SAMPLE_NAME, query, run_ps

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow

LINES = SAMPLES.read_text(encoding="utf-8").splitlines()


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look untouched for ``seconds`` (no writer is busy with it)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_symlink_in_staging_is_reported_and_never_followed(project, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text(LINES[0] + "\n")
    secret.chmod(0o644)
    (project / "staging" / "processing_batch_20251020T000000_link.jsonl").symlink_to(secret)
    out = run_ps(project)
    assert out.returncode == 0, out.stderr
    assert "ignored: a symbolic link, not a regular file; left alone" in out.stdout
    assert (secret.stat().st_mode & 0o777) == 0o644                       # target untouched
    assert (project / "staging" / "processing_batch_20251020T000000_link.jsonl").is_symlink()
    assert not (project / "warehouse" / "nelo.duckdb").exists() or \
        query(project, "SELECT count(*) FROM stg_events") == [(0,)]


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_a_fifo_or_a_link_to_a_device_never_hangs_the_loader(project, kind):
    special = project / "staging" / f"processing_batch_20251020T000000_{kind}.jsonl"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        special.symlink_to("/dev/zero")
    copy_samples(project / "staging", SAMPLE_NAME)
    started = time.monotonic()
    out = run_ps(project)                                  # timeout=300 in run_ps; it used to hang
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 60
    assert "not a regular file; left alone" in out.stdout
    assert (project / "processed" / SAMPLE_NAME).exists()  # the real file still loads
    assert os.path.lexists(special)


def test_hidden_and_partial_names_are_not_batch_files(project):
    for name in (".processing_batch_x.jsonl", "processing_batch_x.jsonl.tmp", "processing_batch_x.jsonl.part",
                 "notes.txt"):
        (project / "staging" / name).write_text(LINES[0] + "\n")
    out = run_ps(project)
    assert out.returncode == 0 and "nothing to do" in out.stdout


def test_a_file_still_being_written_waits_and_then_loads_whole(project):
    data = SAMPLES.read_bytes()
    target = project / "staging" / SAMPLE_NAME
    target.write_bytes(data[: len(data) // 2])              # a writer is half way through a line
    out = run_ps(project)
    assert out.returncode == 0, out.stderr
    assert "waiting: its last line is incomplete" in out.stdout
    assert target.exists() and not (project / "processed" / SAMPLE_NAME).exists()
    assert not (project / "warehouse" / "nelo.duckdb").exists() or \
        query(project, "SELECT count(*) FROM etl_batches") == [(0,)]
    target.write_bytes(data)                                # the writer finishes
    out = run_ps(project)
    assert out.returncode == 0 and "loaded=8" in out.stdout, out.stdout
    assert query(project, "SELECT count(*) FROM dead_letter_messages") == [(3,)]      # the three bad samples


def test_a_file_that_changes_during_its_load_is_not_committed(project):
    target = copy_samples(project / "staging", SAMPLE_NAME)
    env = dict(os.environ, NELO_PAUSE_AT="during_load:4")
    proc = subprocess.Popen([sys.executable, str(ROOT / "process_staging.py"), "--config", str(project / "config.json")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)                                         # inside the transaction now
    with open(target, "a", encoding="utf-8") as fh:         # someone appends a message meanwhile
        fh.write(LINES[11] + "\n")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "waiting: changed during its load" in stdout
    assert query(project, "SELECT count(*) FROM stg_events") == [(0,)]
    assert target.exists()
    out = run_ps(project)                                   # the next run loads the file as it is now
    assert out.returncode == 0 and "received=13" in out.stdout, out.stdout


def test_two_loaders_at_once_one_skips_in_one_line(project):
    copy_samples(project / "staging", SAMPLE_NAME)
    env = dict(os.environ, NELO_PAUSE_AT="during_load:4")
    first = subprocess.Popen([sys.executable, str(ROOT / "process_staging.py"), "--config", str(project / "config.json")],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    second = run_ps(project)
    assert second.returncode == 75, second.stderr
    assert second.stderr.count("\n") == 1 and second.stderr.startswith("skipped: another process is loading")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert query(project, "SELECT count(DISTINCT event_id) FROM stg_events") == [(8,)]


def test_a_processed_dir_on_another_filesystem_is_moved_by_copy(project):
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(project).st_dev:
        pytest.skip("no second filesystem (/dev/shm) on this machine")
    processed = Path(tempfile.mkdtemp(dir=other, prefix="nelo-processed-"))
    try:
        write_config(project, processed_dir=str(processed))
        copy_samples(project / "staging", SAMPLE_NAME)
        second = project / "staging" / "processing_batch_20251020T000000_second.jsonl"
        second.write_text(LINES[0] + "\n")
        out = run_ps(project)
        assert out.returncode == 0, out.stderr
        assert sorted(p.name for p in processed.iterdir()) == sorted([SAMPLE_NAME, second.name])
        assert (processed / SAMPLE_NAME).read_bytes() == SAMPLES.read_bytes()
        assert list((project / "staging").glob("*.jsonl")) == []
    finally:
        shutil.rmtree(processed, ignore_errors=True)


def test_an_edited_archive_file_is_refused_on_reprocess(project):
    archived = copy_samples(project / "archive", SAMPLE_NAME)
    copy_samples(project / "staging", SAMPLE_NAME)
    assert run_ps(project).returncode == 0
    before = query(project, "SELECT sum(quantity) FROM stg_events WHERE event_name = 'purchase'")
    archived.write_text(archived.read_text(encoding="utf-8").replace("quantity=1,", "quantity=7,"), encoding="utf-8")
    out = run_ps(project, "--reprocess", str(archived))
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "was loaded before with other content" in out.stderr and "immutable" in out.stderr
    assert query(project, "SELECT sum(quantity) FROM stg_events WHERE event_name = 'purchase'") == before


def test_a_truncated_copy_completed_by_the_archive_leaves_one_open_dead_letter_per_bad_message(project):
    archived = copy_samples(project / "archive", SAMPLE_NAME)
    data = archived.read_bytes()
    cut = project / "staging" / SAMPLE_NAME
    line_11 = sum(len(line) for line in data.splitlines(keepends=True)[:10])
    cut.write_bytes(data[: line_11 + 20])                     # cut inside line 11 (lines 1-10 whole)
    age(cut, 3600)                                           # nobody is writing it: load what is there
    assert run_ps(project).returncode == 0
    assert query(project, "SELECT line_number, reason FROM dead_letter_messages ORDER BY 1") == \
        [(9, "invalid_json"), (10, "missing_field:user_id"), (11, "invalid_envelope")]
    out = run_ps(project, "--reprocess", str(archived))
    assert out.returncode == 0, out.stderr
    # line 11 was cut in the staging copy; the whole file has sample 11 there (a bad message too)
    rows = query(project, "SELECT line_number, reason, resolution FROM dead_letter_messages ORDER BY 1")
    assert rows == [(9, "invalid_json", None), (10, "missing_field:user_id", None), (11, "items_unparseable", None)]
    assert query(project, "SELECT count(DISTINCT event_id) FROM stg_events") == [(8,)]


def test_a_cut_line_that_loads_later_is_resolved_not_open(project):
    archived = copy_samples(project / "archive", SAMPLE_NAME)
    data = archived.read_bytes()
    cut = project / "staging" / SAMPLE_NAME
    cut.write_bytes(data[: len(data) // 2])                  # cut inside a good message's line
    age(cut, 3600)
    assert run_ps(project).returncode == 0
    (cut_line,) = query(project, "SELECT line_number FROM dead_letter_messages WHERE reason = 'invalid_envelope'")
    assert run_ps(project, "--reprocess", str(archived)).returncode == 0
    assert query(project, f"SELECT resolution, resolved_by_load_id IS NOT NULL FROM dead_letter_messages "
                          f"WHERE line_number = {cut_line[0]}") == [("superseded", True)]
    open_rows = query(project, "SELECT line_number, reason FROM dead_letter_messages WHERE resolved_ts IS NULL ORDER BY 1")
    assert open_rows == [(9, "invalid_json"), (10, "missing_field:user_id"), (11, "items_unparseable")]
    assert query(project, "SELECT count(DISTINCT event_id) FROM stg_events") == [(8,)]
