"""The dashboard: `hippolyte dashboard --out`, and the page `serve` shows at `/` opened in a
real headless Chromium, over a repository of real backups and runs made on dynalite (two
nights of `backup --all`); `/metrics` seeded from the repository at start; an empty or
unreachable repository shown as such, never a crash."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte import cli
from hippolyte.adapters.storage import open_storage
from hippolyte.core import config
from hippolyte.core.dashboard_html import render
from hippolyte.repo import manifest
from hippolyte.serve.daemon import serve
from tests.helpers import db_for, run
from tests.support.servers import Server

pytestmark = pytest.mark.servers
NEVER = "0 0 1 1 *"  # serve's jobs: not during a test


@dataclass(frozen=True)
class Fleet:
    config: Path
    repo: Path
    stem: str
    tables: dict[str, str]  # role -> table name
    runs: list[str]


@pytest.fixture(scope="module")
def fleet(dynalite: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two nights of `backup --all` over `orders`, `users` and `late` (whose backups are then
    moved 30 h back: a backup id is its start time, as `status` reads it); afterwards
    `never` (selected, never backed up), `void` (selected, empty) and `skip` (excluded)."""
    tmp = tmp_path_factory.mktemp("dashboard")
    db = db_for(dynalite)
    stem = f"dash{tmp.name[-4:].replace('_', '')}"
    items = {"orders": 40, "users": 10, "late": 5}
    names = {
        role: db.table(prefix=f"{stem}-{role}", items=[{"pk": {"S": str(i)}} for i in range(n)])
        for role, n in items.items()
    }
    cfg = tmp / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{tmp / "repo"}"\nrpo_hours = 24\n[[targets]]\nregion = "us-east-1"\n'
        f'endpoint_url = "{dynalite.endpoint_url}"\n[selection]\n'
        f'include = ["^{stem}-"]\nexclude = ["^{stem}-skip"]\n'
        f'[schedule]\nbackup = "{NEVER}"\nmonitor = "{NEVER}"\n[serve]\nport = 0\n'
    )
    for night in range(2):
        if night:  # a run's id is the second it starts in: two runs need two seconds
            time.sleep(1.05 - time.time() % 1)
        _cli("--config", str(cfg), "backup", "--all", "--json")
    storage = open_storage(str(tmp / "repo"))
    for bid in storage.list_dirs(f"{names['late']}/"):
        old = manifest.backup_id(manifest.parse_backup_id(bid) - dt_hours(30))
        (tmp / "repo" / names["late"] / bid).rename(tmp / "repo" / names["late"] / old)
    names["never"] = db.table(prefix=f"{stem}-never", items=[{"pk": {"S": "x"}}])
    names["void"] = db.table(prefix=f"{stem}-void")
    names["skip"] = db.table(prefix=f"{stem}-skip", items=[{"pk": {"S": "x"}}])
    yield Fleet(
        config=cfg,
        repo=tmp / "repo",
        stem=stem,
        tables=names,
        runs=storage.list_dirs("@runs/"),
    )


def dt_hours(hours: float) -> Any:
    import datetime as dt

    return dt.timedelta(hours=hours)


def _cli(*args: str) -> None:
    try:
        cli.main(list(args))
    except SystemExit as exc:
        assert not exc.code, f"hippolyte {' '.join(args)} exited {exc.code}"


def _row(page: str, table: str) -> str:
    found = re.search(rf'<tr class="(\w+)"><td>{re.escape(table)}</td>.*?</tr>', page)
    assert found, f"no row for {table}"
    return found.group(0)


def test_dashboard_file_shows_fleet_runs_plan_and_what_the_repository_knows(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dashboard.html"
    code, _, err = run(capsys, "--config", str(fleet.config), "dashboard", "--out", str(out))
    assert code == 0, err
    page = out.read_text()
    t = fleet.tables
    assert 'class="ok"' in _row(page, t["orders"]) and "40" in _row(page, t["orders"])
    late = _row(page, t["late"])
    assert late.startswith('<tr class="late">') and "late</b> by 6.0 h (RPO 24.0 h)" in late
    assert "<svg" in _row(page, t["orders"])  # two backups: a trend
    assert t["never"] not in page  # no connection: the account's tables are unknown
    assert "No connection to DynamoDB" in page
    assert all(f"<td>{rid}</td>" in page for rid in fleet.runs) and len(fleet.runs) == 2
    assert "<iframe" in page and "srcdoc=" in page  # the newest plan's Gantt, embedded
    assert "http://" not in page.replace(str(fleet.repo), "") and "https://" not in page
    assert '<meta http-equiv="refresh"' not in page  # a file does not reload itself
    assert "wrote the dashboard (3 tables" in err


def test_dashboard_discover_shows_coverage(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dashboard.html"
    args = ["--config", str(fleet.config), "dashboard", "--discover", "--out", str(out)]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    page = out.read_text()
    t = fleet.tables
    assert _row(page, t["never"]).startswith('<tr class="missing">')
    assert _row(page, t["void"]).startswith('<tr class="empty">')
    uncovered = page.split('id="coverage-uncovered"')[1].split("</table>")[0]
    assert t["never"] in uncovered and "selected, never backed up" in uncovered
    assert t["void"] in uncovered and t["orders"] not in uncovered
    excluded = page.split('id="coverage-excluded"')[1].split("</table>")[0]
    assert t["skip"] in excluded and t["skip"] not in page.split('id="fleet-table"')[1][:4000]


def test_dashboard_over_an_empty_or_unreachable_repository(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    moto_server: Server,
    use_s3: Callable[[Server], None],
) -> None:
    out = tmp_path / "empty.html"
    code, _, err = run(capsys, "dashboard", "--repo", str(tmp_path / "nothing"), "--out", str(out))
    assert code == 0 and "holds no backup yet" in err
    assert "The repository holds no backup yet" in out.read_text()

    use_s3(moto_server)  # a bucket that does not exist: the repository cannot be read
    out = tmp_path / "unreachable.html"
    code, _, err = run(capsys, "dashboard", "--repo", "s3://nowhere/repo", "--out", str(out))
    assert code == 5, err
    assert err.startswith("hippolyte: error: cannot read repository s3://nowhere/repo")
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_dashboard_over_an_s3_repository(
    dynalite: Server,
    moto_server: Server,
    make_s3_bucket: Callable[[Server], Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On S3 the committed backups come from one listing of the table's keys: a folder left
    without its commit marker is not the newest backup."""
    bucket = make_s3_bucket(moto_server)
    table = db_for(dynalite).table(prefix="dash-s3", items=[{"pk": {"S": "a"}}])
    repo = f"{bucket.url}/fleet"
    aws = ["--endpoint-url", dynalite.endpoint_url, "--region", "us-east-1"]
    for _ in range(2):
        code, _, err = run(capsys, "backup", table, "--repo", repo, *aws, "--json")
        assert code == 0, err
    storage = open_storage(repo)
    newest = max(storage.list_dirs(f"{table}/"))
    storage.put_bytes(f"{table}/2999-01-01-00-00-00/{manifest.STARTED}", b"{}")  # uncommitted
    out = tmp_path / "s3.html"
    code, _, err = run(capsys, "dashboard", "--repo", repo, "--out", str(out))
    assert code == 0, err
    row = _row(out.read_text(), table)
    assert row.startswith('<tr class="ok">') and "<svg" in row and "<td>local</td>" in row
    assert f"to {newest[:10]} {newest[11:13]}:{newest[14:16]}</td>" in row


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_over_an_unreachable_repository_shows_the_error_and_keeps_running(
    moto_server: Server, use_s3: Callable[[Server], None]
) -> None:
    use_s3(moto_server)
    settings = config.Settings.model_validate(
        {
            "repository": "s3://nowhere/repo",
            "targets": [
                {"region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{_closed_port()}"}
            ],
            "schedule": {"backup": NEVER, "monitor": NEVER},
            "serve": {"port": 0},
            "max_attempts": 1,
        }
    )
    stop, listening = threading.Event(), []
    thread = threading.Thread(
        target=serve, kwargs={"settings": settings, "stop": stop, "on_listen": listening.append}
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not listening and time.monotonic() < deadline:
            time.sleep(0.05)
        (url,) = listening
        page = urllib.request.urlopen(f"{url}/").read().decode()
        assert '<div class="err" role="alert">cannot read repository s3://nowhere/repo' in page
        assert "could not be read" in page
        health = orjson.loads(urllib.request.urlopen(f"{url}/healthz").read())
        assert health["status"] == "degraded" and not health["dashboard"]["ok"]
        assert any("s3://nowhere/repo" in e for e in health["dashboard"]["errors"])
        assert any("cannot list the tables" in e for e in health["dashboard"]["errors"])
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_render_escapes_reasons_and_errors() -> None:
    doc: dict[str, Any] = {
        "generatedAt": "2026-11-29T00:00:00+00:00",
        "rpoHours": 24,
        "repositories": ["/r"],
        "errors": ["<script>alert(1)</script>"],
        "tables": [],
        "runs": [],
        "runCount": 0,
        "plan": None,
        "coverage": {
            "discovered": True,
            "uncovered": [],
            "excluded": [{"table": "t-1", "target": "x", "reason": "<b>tagged</b>"}],
        },
    }
    page = render(doc, refresh_s=60)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page
    assert "&lt;b&gt;tagged&lt;/b&gt;" in page
    assert '<meta http-equiv="refresh" content="60">' in page


def test_render_fleet_columns_drill_capture_retention_and_targets() -> None:
    row: dict[str, Any] = {
        "table": "orders",
        "target": "111/eu-west-1",
        "state": "ok",
        "ageHours": 2.0,
        "items": 1200,
        "bytes": 5_000_000,
        "durationS": 10.0,
        "engine": "local",
        "trend": [[8.0, 4_000_000], [None, None], [10.0, 5_000_000]],
        "changes": {"lagSeconds": 900.0, "gaps": 1, "ok": False},
        "backups": 30,
        "kept": 12,
        "oldestRestorable": "2026-11-01T00:10:00+00:00",
        "restorableUntil": "2026-11-29T00:10:00+00:00",
        "lastRun": "2026-11-29-00-10-00: failed: throttled",
        "lastDrill": {"at": "2026-11-28T03:00:00+00:00", "ok": True, "secondsPerGb": 95.0},
    }
    other = {**row, "table": "users", "target": "222/us-east-1", "lastDrill": None}
    doc: dict[str, Any] = {
        "generatedAt": "2026-11-29T02:10:00+00:00",
        "rpoHours": 24,
        "repositories": ["/r"],
        "errors": [],
        "tables": [row, other],
        "runs": [],
        "runCount": 0,
        "plan": None,
        "coverage": {"discovered": False, "uncovered": [], "excluded": []},
    }
    page = render(doc)
    orders, users = _row(page, "orders"), _row(page, "users")
    assert "<td>111/eu-west-1</td>" in orders  # two targets: a target column
    assert '<td class="bad" data-v="900">15m00s, 1 gap</td>' in orders
    assert "30 (12 kept)" in orders and "2026-11-01 00:10 to 2026-11-29 00:10" in orders
    assert '<td class="bad" title="2026-11-29-00-10-00: failed: throttled">failed' in orders
    assert "<td>ok 2026-11-28 03:00, 1m35s/GB</td>" in orders  # the last drill
    assert users.endswith("<td>-</td></tr>")  # no drill yet
    assert orders.count("<polyline") == 2  # duration and throughput, a gap skipped


# --- the page in a real browser -----------------------------------------------------------


def _chromium() -> str:
    path = os.environ.get("HIPPOLYTE_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.skip("no headless Chromium: install Debian's `chromium` (make test does, as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the Python driver is missing: pip install -e '.[test]' (playwright)")
    return path


@pytest.fixture
def served(fleet: Fleet) -> Iterator[str]:
    """`hippolyte serve` as a real process over the fleet's repository (no job runs)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippolyte", "--config", str(fleet.config), "serve"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url = ""
        while not url:
            line = proc.stderr.readline()
            assert line, "serve exited early"
            if line.startswith("listening on "):
                url = line.split()[-1]
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_serve_dashboard_in_chromium(fleet: Fleet, served: str, tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    t = fleet.tables
    metrics = urllib.request.urlopen(f"{served}/metrics").read().decode()  # seeded at start
    assert f'hippolyte_backup_items{{table="{t["orders"]}",target="us-east-1"}} 40.0' in metrics
    health = orjson.loads(urllib.request.urlopen(f"{served}/healthz").read())
    assert health["status"] == "ok" and health["dashboard"]["late"] == 1
    requests: list[str] = []
    shot = tmp_path / "dashboard.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{served}/")
            late = page.locator("#fleet-table tbody tr", has_text=t["late"])
            assert late.get_attribute("class") == "late"
            assert "late" in late.locator("b.st").inner_text()
            assert late.locator("b.st").evaluate("e => getComputedStyle(e).backgroundColor") == (
                "rgb(179, 38, 30)"
            )
            ok = page.locator("#fleet-table tbody tr", has_text=t["orders"])
            assert ok.get_attribute("class") == "ok"
            assert page.locator("#fleet-table tbody tr.missing", has_text=t["never"]).count() == 1
            assert page.locator("#coverage-excluded", has_text=t["skip"]).count() == 1
            assert page.locator("#runs-table tbody tr").count() == 2
            assert "Generated" in page.locator("header").inner_text()
            refresh = page.locator("meta[http-equiv=refresh]").get_attribute("content")
            assert refresh == "60"
            page.screenshot(path=str(shot), full_page=True)
            page.fill("#fleet-filter input[name=q]", "late")  # filtering, by name then state
            assert page.locator("#fleet-table tbody tr:visible").count() == 1
            page.fill("#fleet-filter input[name=q]", "")
            page.select_option("#fleet-filter select[name=state]", "ok")
            assert page.locator("#fleet-table tbody tr:visible").count() == 2
            page.click("#fleet-table th:text-is('Age')")  # sorting: the oldest last
            names = page.locator("#fleet-table tbody tr td:first-child").all_inner_texts()
            assert set(names[-2:]) == {t["never"], t["void"]} and names[-3] == t["late"]
            page.goto(f"{served}/plan")  # the newest plan's Gantt
            assert "pipelines" in page.locator("h1").inner_text()
            page.close()
            quiet = browser.new_context(java_script_enabled=False).new_page()
            quiet.goto(f"{served}/")  # without JavaScript: the tables, no filter
            assert quiet.locator("#fleet-table tbody tr").count() == 5
            assert not quiet.locator("#fleet-filter").is_visible()
        finally:
            browser.close()
    assert requests and all(u.startswith(served + "/") for u in requests), requests
    assert served.startswith("http://127.0.0.1:")
    if artefacts := os.environ.get("HIPPOLYTE_ARTEFACTS"):
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artefacts) / "dashboard.png")
    assert shot.stat().st_size > 10_000
