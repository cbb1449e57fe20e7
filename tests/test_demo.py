"""The main job end to end, as a user runs it: the console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.servers
HIPPOLYTE = [sys.executable, "-m", "hippolyte"]


def test_demo_backs_up_and_verifies_sample_tables(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*HIPPOLYTE, "demo", "--dir", str(tmp_path / "repo"), "--items", "400"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    summary = orjson.loads(proc.stdout)
    counts = {r["table"]: r["item_count"] for r in summary["results"]}
    assert counts == {"demo-orders": 400, "demo-sessions": 133}  # demo-empty: skipped by the plan
    assert all(r["ok"] for r in summary["results"])
    assert all(": ok (" in line for line in summary["verify"])
    assert any("pipeline 1: demo-orders" in line for line in summary["plan"])
    assert any("skip demo-empty" in line for line in summary["plan"])
    assert (tmp_path / "repo" / "plan.html").read_text().startswith("<!DOCTYPE html>")
    assert sorted((p["table"], p["items"], p["proven"]) for p in summary["restores"]) == [
        ("demo-orders-restored", 400, True),
        ("demo-sessions-restored", 133, True),
    ]
    assert any("demo-orders: last backup" in line for line in summary["status"])
    assert summary["monitor"]["ok"]
    (message,) = summary["monitor"]["received"]
    assert message["ok"] and message["run_id"] == summary["run"]
    notes = [
        orjson.loads(line)["text"] for line in proc.stderr.splitlines() if '"event":"demo"' in line
    ]
    pid = next(int(n.split("pid ")[1].rstrip(")")) for n in notes if "is up at" in n)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the demo stopped its DynamoDB Local


def test_module_and_help() -> None:
    proc = subprocess.run([*HIPPOLYTE, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "backup" in proc.stdout and "verify" in proc.stdout


def test_bad_config_file_exit_2_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text("read_percent = 3\n")
    proc = subprocess.run(
        [*HIPPOLYTE, "--config", str(cfg), "list", "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "read_percent" in proc.stderr and "Traceback" not in proc.stderr
