"""The acceptance of the Silver layer: the same traffic gives the same Silver tables whatever
the batching, the order, the duplicates and the reprocessing, and equals a rebuild."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from nelo_etl.simulate import SimConfig, Simulator, write_batches

from .conftest import ROOT
from .silver_helpers import gold_views, load, make_project, silver_tables

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    """Chaotic traffic (redeliveries, re-sends, late and bad messages) as 1 and as 20 files."""
    messages = Simulator(SimConfig.chaos(events=4000, seed=5, days=3, late_rate=0.08)).messages()
    base = tmp_path_factory.mktemp("traffic")
    one = [Path(p) for p in write_batches(messages, str(base / "one"), batches=1)]
    twenty = [Path(p) for p in write_batches(messages, str(base / "twenty"), batches=20)]
    return one, twenty


@pytest.fixture(scope="module")
def reference(traffic, tmp_path_factory):
    one, _ = traffic
    cfg = make_project(tmp_path_factory.mktemp("one"))
    load(cfg, one)
    tables = silver_tables(cfg)
    assert all(tables[name] for name in ("fct_events", "silver_user_sessions", "dim_products"))
    views = gold_views(cfg)
    assert {"gold_user_features_v", "vw_experiment_srm"} <= set(views)      # the added views are held too
    empty = [name for name, rows in views.items() if not rows]
    assert not empty, f"the traffic leaves these Gold views empty: {empty}"
    return cfg, tables, views


def test_twenty_batches_in_arrival_order_equal_one_batch(traffic, reference, tmp_path):
    _, twenty = traffic
    cfg = make_project(tmp_path)
    load(cfg, twenty)
    assert silver_tables(cfg) == reference[1]
    assert gold_views(cfg) == reference[2]


def test_shuffled_batches_some_twice_equal_one_batch(traffic, reference, tmp_path):
    _, twenty = traffic
    order = twenty[:]
    random.Random(3).shuffle(order)
    cfg = make_project(tmp_path)
    load(cfg, order)
    load(cfg, order[:4], reprocess=True)          # processed twice, by hand
    assert silver_tables(cfg) == reference[1]
    assert gold_views(cfg) == reference[2]


def test_rebuild_equals_the_incremental_result(reference):
    cfg, tables, views = reference
    out = subprocess.run([sys.executable, str(ROOT / "silver_transforms.py"), "--config", str(cfg.path), "--rebuild"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("rebuilt fct_events=")
    assert silver_tables(cfg) == tables
    refresh = subprocess.run([sys.executable, str(ROOT / "gold_transforms.py"), "--config", str(cfg.path)],
                             capture_output=True, text=True)
    assert refresh.returncode == 0, refresh.stderr
    assert gold_views(cfg) == views
