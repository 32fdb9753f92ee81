"""The Airflow DAG (orchestration/): loaded by Airflow's DagBag when Airflow is installed (CI's
separate Airflow environment, see README), and held to the cron semantics either way."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from nelo_etl import cli

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow

DAG_FILE = Path(__file__).resolve().parent.parent / "orchestration" / "nelo_growth_dag.py"


def test_the_dag_keeps_the_cron_schedule_and_exit_codes_without_airflow():
    tree = ast.parse(DAG_FILE.read_text(encoding="utf-8"))
    assigned = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    assert assigned["SCHEDULE"] == "*/15 * * * *"
    assert assigned["EXIT_SKIPPED"] == cli.EXIT_SKIPPED == 75
    operators = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "BashOperator"]
    assert operators and all(any(k.arg == "skip_on_exit_code" for k in op.keywords) for op in operators)


@pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="Airflow is not installed here "
                    "(CI installs it in a separate environment and runs this test there)")
def test_the_dag_loads_in_airflows_dagbag(monkeypatch):
    try:
        from airflow.dag_processing.dagbag import DagBag          # Airflow 3
    except ImportError:
        from airflow.models.dagbag import DagBag                  # Airflow 2

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    for spark in ("0", "1"):
        monkeypatch.setenv("NELO_SPARK_ENGINE", spark)
        bag = DagBag(dag_folder=str(DAG_FILE.parent))
        assert bag.import_errors == {}
        dag = bag.dags.get("nelo_growth_analytics")     # no metadata database needed
        assert dag is not None and dag.max_active_runs == 1 and not dag.catchup
        tasks = {t.task_id: t for t in dag.tasks}
        assert set(tasks) == ({"etl", "spark_silver", "spark_gold"} if spark == "1" else {"etl"})
        assert all(t.skip_on_exit_code == [75] or t.skip_on_exit_code == 75 for t in tasks.values())
        assert "etl.py --json" in tasks["etl"].bash_command
