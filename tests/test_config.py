"""config.json: validated at start, paths relative to the file, one clear line and exit 2 when bad."""
from __future__ import annotations

import json
import re

import pytest

from nelo_etl import cli, config
from nelo_etl.config import ConfigError, load_config

from .conftest import ROOT, write_config


def test_the_shipped_config_is_valid_and_equals_the_defaults():
    cfg = load_config(ROOT / "config.json")
    assert cfg.staging_dir == ROOT / "staging" and cfg.database_path == ROOT / "warehouse" / "nelo.duckdb"
    raw = json.loads((ROOT / "config.json").read_text())
    raw.pop("$comment")
    assert config.Settings.model_validate(raw) == config.Settings()   # the file documents the defaults
    assert (cfg.session_timeout_minutes, cfg.attribution_window_minutes, cfg.high_value_cart_usd,
            cfg.current_campaign_days, cfg.experiment_pattern) == (30, 30, 500, 7, "NELO_XP_")
    assert cfg.message_cache_ttl_seconds == 14 * 24 * 3600 and cfg.queue.wait_time_seconds == 20


def test_relative_paths_resolve_against_the_config_folder(project, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    cfg = load_config(project / "config.json")
    assert cfg.staging_dir == project / "staging" and cfg.log_dir == project / "logs"


def test_etl_config_is_honoured_and_flag_wins(project, monkeypatch):
    monkeypatch.setenv("ETL_CONFIG", str(project / "config.json"))
    assert load_config(None).path == project / "config.json"
    assert load_config(ROOT / "config.json").path == ROOT / "config.json"


@pytest.mark.parametrize("changes, message", [
    ({"stagin_dir": "staging"}, "unknown key 'stagin_dir'"),
    ({"session_timeout_minutes": "30"}, "session_timeout_minutes: input should be a valid number"),
    ({"high_value_cart_usd": True}, "high_value_cart_usd"),
    ({"queue": {"region": "us-east-1", "wait_time_seconds": 60}}, "queue.wait_time_seconds"),
    ({"queue": {"regoin": "x"}}, "unknown key 'queue.regoin'"),
    ({"staging_dir": "nowhere"}, "staging_dir: folder does not exist"),
    ({"database_path": "nowhere/x.duckdb"}, "database_path: folder does not exist"),
])
def test_bad_configs_are_one_clear_line(project, changes, message):
    path = write_config(project, **changes)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unreadable_configs(project):
    (project / "config.json").write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(project / "config.json")
    with pytest.raises(ConfigError, match="not found"):
        load_config(project / "missing.json")


def test_scripts_exit_2_with_one_line_before_touching_anything(project, capsys):
    path = write_config(project, bogus=1)
    touched = []
    code = cli.run(lambda args, cfg: touched.append(cfg) or 0,
                   cli.make_parser("x", "test", ["x"]), ["--config", str(path)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG and touched == []
    assert err.count("\n") == 1 and "unknown key 'bogus'" in err


def test_failures_are_exit_1_with_one_line(project, capsys):
    def boom(args, cfg):
        raise RuntimeError("disk on fire\nsecond line")
    code = cli.run(boom, cli.make_parser("x", "test", ["x"]), ["--config", str(project / "config.json")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED and err == "error: RuntimeError: disk on fire\n"
    assert "Traceback" in (project / "logs" / "nelo.log").read_text()   # the detail goes to the log


def test_env_file_fills_but_never_overrides_the_environment(project, monkeypatch):
    (project / ".env").write_text("SQS_QUEUE_URL=from-file\nAWS_DEFAULT_REGION=from-file\n")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "from-env")
    monkeypatch.delenv("SQS_QUEUE_URL", raising=False)
    config.load_env(load_config(project / "config.json"))
    import os
    assert os.environ["SQS_QUEUE_URL"] == "from-file" and os.environ["AWS_DEFAULT_REGION"] == "from-env"
    monkeypatch.delenv("SQS_QUEUE_URL")


def test_readme_documents_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for key, _type, default, _meaning in config.settings_table():
        row = re.search(r"^\| `" + re.escape(key) + r"` \|[^\n]*\|", readme, re.M)
        assert row, f"README's config table lacks {key}"
        assert f"`{default}`" in row.group(0), f"README gives another default for {key}"


def test_env_example_names_every_secret_and_holds_none():
    text = (ROOT / ".env.example").read_text()
    for name in ("SQS_QUEUE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        assert name in text
    assert re.search(r"^AWS_SECRET_ACCESS_KEY=\s*$", text, re.M)
