"""Shared fixtures: the contract's samples, scratch project folders with their own config."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = Path(os.environ.get("NELO_CONTRACT_DIR", ROOT.parent / "shared" / "contract"))
SAMPLES = CONTRACT / "samples.jsonl"


@pytest.fixture(scope="session")
def samples_path() -> Path:
    assert SAMPLES.is_file(), f"the contract's samples are missing: {SAMPLES} (set NELO_CONTRACT_DIR)"
    return SAMPLES


@pytest.fixture(scope="session")
def sample_lines(samples_path: Path) -> list[str]:
    """The twelve sample messages; sample N is sample_lines[N - 1]."""
    lines = [line for line in samples_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(lines) == 12
    return lines


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scratch project: the data folders and a config.json whose paths are relative to it."""
    for name in ("staging", "processed", "archive", "dead_letter", "warehouse"):
        (tmp_path / name).mkdir()
    cfg = json.loads((ROOT / "config.json").read_text(encoding="utf-8"))
    cfg["queue"]["wait_time_seconds"] = 1
    (tmp_path / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return tmp_path


def write_config(project: Path, **changes: object) -> Path:
    """Rewrite the scratch project's config.json with top-level ``changes``; returns its path."""
    path = project / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.update(changes)
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return path


def copy_samples(dest: Path, name: str = "processing_batch_20251017T155740_samples.jsonl") -> Path:
    target = dest / name
    shutil.copyfile(SAMPLES, target)
    return target


@pytest.fixture(scope="session")
def moto_server():
    """One moto SQS server for the session; each test makes its own queue."""
    from nelo_etl.localsqs import MotoServer

    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def queue(moto_server, request):
    """A fresh queue on the shared server: (client, queue URL)."""
    import re as _re
    import uuid as _uuid

    sqs = moto_server.client()
    name = _re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:60] + "-" + _uuid.uuid4().hex[:6]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "spark: runs Apache Spark in local mode (one session for the whole run)")


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory):
    """One local SparkSession for every Spark test (starting one costs 10-20 s): two shuffle
    partitions (test data is small), no UI, bound to 127.0.0.1. Skipped without Java."""
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark tests need Java 17+ (java on PATH or JAVA_HOME)")
    from types import SimpleNamespace

    from nelo_etl import spark_engine

    cfg = SimpleNamespace(spark_master="local[2]", spark_driver_memory="1g", spark_jars="")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    work = tmp_path_factory.mktemp("spark")
    spark = spark_engine.session(cfg, app_name="nelo-tests", shuffle_partitions=2,
                                 extra={"spark.sql.warehouse.dir": str(work / "warehouse"),
                                        "spark.local.dir": str(work / "local")})
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()
