"""An analyst holds the analytics file open, and queries it, through ten runs: every run succeeds."""
from __future__ import annotations

import subprocess
import sys

from nelo_etl.simulate import SimConfig, Simulator, write_batches

from ..test_staging import run_ps
import pytest

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def test_a_reader_holding_the_analyst_database_through_ten_runs(project, tmp_path):
    messages = Simulator(SimConfig.chaos(events=1000, seed=3, days=2)).messages()
    files = write_batches(messages, str(tmp_path), batches=11)
    (project / "staging" / files[0].rsplit("/", 1)[1]).write_bytes(open(files[0], "rb").read())
    assert run_ps(project).returncode == 0
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys\n"
         "con = duckdb.connect(sys.argv[1], read_only=True)\n"
         "for line in sys.stdin:\n"
         "    if line.strip() == 'reconnect':\n"
         "        con.close(); con = duckdb.connect(sys.argv[1], read_only=True)\n"
         "    print(con.execute('SELECT count(*) FROM fct_events').fetchall()[0][0],\n"
         "          con.execute('SELECT count(*) FROM vw_platform_daily_performance_sessions').fetchall()[0][0],"
         " flush=True)\n", str(project / "warehouse" / "analytics.duckdb")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        def ask(word: str = "query") -> tuple[int, int]:
            reader.stdin.write(word + "\n")
            reader.stdin.flush()
            a, b = reader.stdout.readline().split()
            return int(a), int(b)

        first = ask()
        for path in files[1:]:                       # ten more runs under the reader's feet
            (project / "staging" / path.rsplit("/", 1)[1]).write_bytes(open(path, "rb").read())
            out = run_ps(project)
            assert out.returncode == 0, out.stderr
            assert "analytics file published" in out.stdout
            assert ask() == first                    # the open connection keeps its snapshot
        latest = ask("reconnect")
    finally:
        reader.kill()
        reader.wait()
    assert latest[0] > first[0]
