"""The dashboard's size and speed on a long history: ``python -m bench.dashboard``.

Loads simulated traffic spread over a year (default 30,000 events, 365 days) into a scratch
project, builds the page from the analytics file, and opens it in headless Chromium (from the file,
no network) three times. Prints the page size, the build time, and the browser's time from
navigation to every chart drawn (the page's own ``ready_ms``), against the targets: at most 5 MB
(e-mail), under 2 s to render.

    python -m bench.dashboard
    python -m bench.dashboard --events 5000 --days 120     # quicker
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MB = 5.0
TARGET_RENDER_S = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--days", type=float, default=365.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("chromium is not installed: make browser", file=sys.stderr)
        return 2

    from nelo_etl import dashboard, gold, simulate, staging
    from nelo_etl.config import ROOT, load_config

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        base = Path(tmp)
        for name in ("staging", "processed", "archive", "dead_letter", "warehouse"):
            (base / name).mkdir()
        (base / "config.json").write_text((ROOT / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
        cfg = load_config(base / "config.json")
        messages = simulate.Simulator(simulate.SimConfig(events=args.events, seed=11, days=args.days)).messages()
        files = simulate.write_batches(messages, str(base / "files"), batches=4)
        run = staging.process_files(cfg, [Path(p) for p in files], move=False)
        if not run.ok:
            print(f"loading failed: {run.gold_line()}", file=sys.stderr)
            return 1
        dashboard.write_from_file(gold.analytics_path(cfg), base / "site", gold.dashboard_cache(cfg))   # warm cache
        started = time.perf_counter()
        page = dashboard.write_from_file(gold.analytics_path(cfg), base / "site", gold.dashboard_cache(cfg))
        build_s = time.perf_counter() - started
        ready = []
        for n in range(args.runs):
            out = subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--proxy-server=127.0.0.1:9",
                 "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={base / f'profile{n}'}",
                 "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
                capture_output=True, text=True, timeout=120)
            m = re.search(r'<div id="dashboard-status" data-done="true">(.*?)</div>', out.stdout, re.S)
            if not m:
                print("the page did not finish rendering", file=sys.stderr)
                return 1
            status = json.loads(m.group(1))
            if status["errors"]:
                print(f"the page has errors: {status['errors'][:3]}", file=sys.stderr)
                return 1
            ready.append(status["ready_ms"] / 1000)
        size_mb = page.stat().st_size / 2**20
        result = {"events": args.events, "days": args.days, "page_mb": round(size_mb, 2),
                  "build_s": round(build_s, 2), "render_s_median": round(statistics.median(ready), 2),
                  "target_mb": TARGET_MB, "target_render_s": TARGET_RENDER_S,
                  "meets_targets": size_mb <= TARGET_MB and statistics.median(ready) < TARGET_RENDER_S}
        print(f"dashboard of {args.events:,} events over {args.days:g} days: {size_mb:.2f} MB (target <= {TARGET_MB} MB), "
              f"built in {build_s:.2f} s, drawn {statistics.median(ready):.2f} s after navigation "
              f"(median of {args.runs}; target < {TARGET_RENDER_S} s)")
        print(json.dumps(result))
        return 0 if result["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
