"""A table's changes in `status` and `monitor`: how far they reach, their lag against
`capture_lag_seconds`, and the gaps since the newest full backup; reported, notified, and a
table without change sets left as it was. Real repository folders; tables on dynalite."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.cli import cmd_backup
from hippolyte.core import messages
from hippolyte.core.chain import FullBackup, Window
from hippolyte.core.config import validate
from hippolyte.core.messages import ChangesCheck, ChangesState
from hippolyte.core.model import BackupRef, MonitorReport, TableCheck, TableInfo
from hippolyte.engines.segment import DataFileWriter
from hippolyte.ops.jobs import nightly_monitor
from hippolyte.ops.monitor import monitor
from hippolyte.ops.status import changes_state, gaps_since_newest
from hippolyte.repo import catalog, changes, manifest, writer
from hippolyte.repo.changes import Change, ChangeSetWriter
from tests.helpers import db_for, run
from tests.support.servers import Server
from tests.support.webhook import webhook

NOW = dt.datetime(2026, 11, 28, 14, 20, 0, tzinfo=dt.UTC)
S = 1_000_000
TRIMMED = {"cause": "trimmed", "detail": "shard-0001: TrimmedDataAccessException"}


def ago(seconds: float, now: dt.datetime = NOW) -> dt.datetime:
    return now - dt.timedelta(seconds=seconds)


def write_backup(storage: Storage, table: str, *, start: dt.datetime) -> None:
    """A committed full backup of ``table`` (one item) whose scan started at ``start``."""
    ref = BackupRef(repo=storage.url, table=table, backup_id=manifest.backup_id(start))
    out = DataFileWriter(storage, prefix=ref.prefix, key=manifest.data_key(0, 0))
    out.write_items([orjson.dumps({"pk": {"S": "a"}})])
    description = {
        "TableName": table,
        "TableArn": f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    }
    writer.commit(
        storage,
        ref=ref,
        info=TableInfo.from_description(description),
        extras={},
        files=[out.commit()],
        start=start,
        end=start + dt.timedelta(seconds=2),
        run={},
        consumed=0.0,
        source={},
    )


def write_changes(
    storage: Storage,
    table: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    gap_before: dict[str, Any] | None = None,
) -> None:
    """A committed change set ``[start, end)`` holding one put."""
    w = ChangeSetWriter(storage, table=table, start=start)
    item = orjson.dumps({"pk": {"S": "a"}, "v": {"N": "1"}})
    w.add(Change(stamp=changes.micros(start), keys=orjson.dumps({"pk": {"S": "a"}}), new=item))
    source: dict[str, Any] = {"kind": "test"}
    if gap_before is not None:
        source["gapBefore"] = gap_before
    w.commit(end=end, source=source)


def gapped(storage: Storage, table: str, *, backup: dt.datetime) -> None:
    """Changes from before ``backup`` on, with a trimmed stream 10 s to 20 s after it."""
    write_changes(storage, table, start=ago(60, backup), end=backup + dt.timedelta(seconds=10))
    write_changes(
        storage,
        table,
        start=backup + dt.timedelta(seconds=20),
        end=backup + dt.timedelta(seconds=30),
        gap_before=TRIMMED,
    )


# -- pure: which gaps count, and what is said -----------------------------------------------------


def test_only_gaps_after_the_newest_full_backup_count() -> None:
    windows = [
        Window(id="a", start=0, end=10 * S),
        Window(id="b", start=20 * S, end=30 * S),  # a hole 10-20 s, before the newest backup
        Window(id="c", start=40 * S, end=50 * S, gap_before="trimmed"),  # after it
    ]
    older = FullBackup(id="1", start=5 * S, end=6 * S)
    newest = FullBackup(id="2", start=25 * S, end=26 * S)
    found = gaps_since_newest([older, newest], windows)
    assert [(g.start, g.end, g.cause) for g in found] == [(30 * S, 40 * S, "trimmed")]
    assert len(gaps_since_newest([older], windows)) == 2  # both follow the older backup
    late_start = FullBackup(id="3", start=60 * S, end=61 * S)
    assert gaps_since_newest([late_start], windows) == []  # a new chain: nothing broken yet
    before_all = gaps_since_newest([FullBackup(id="0", start=-5 * S, end=0)], windows[2:])
    assert [(g.start, g.end) for g in before_all][0] == (-5 * S, 40 * S)  # changes begin later


def test_problem_lines_say_since_when_how_late_and_why() -> None:
    state = ChangesState(
        change_sets=3,
        changes_until=dt.datetime(2026, 11, 28, 14, 3, 7, tzinfo=dt.UTC),
        lag_seconds=912.4,
        lag_limit_seconds=300,
        gaps=(
            {
                "from": "2026-11-28T14:03:07.000Z",
                "to": "2026-11-28T14:20:00.000Z",
                "cause": "trimmed",
                "explanation": messages.gap_explanation("trimmed"),
            },
        ),
    )
    assert state.late and not state.ok
    assert messages.changes_problems("orders", state, now=NOW) == [
        "orders: no changes captured since 14:03:07 (lag 912 s, threshold 300 s)",
        "orders: gap 14:03:07 -> 14:20:00: the stream was trimmed before it was read",
    ]
    next_day = NOW + dt.timedelta(days=1)
    assert (
        "since 2026-11-28 14:03:07" in messages.changes_problems("orders", state, now=next_day)[0]
    )


def test_a_report_with_broken_changes_is_a_failure_told_apart_from_the_backups() -> None:
    state = ChangesState(
        change_sets=1, changes_until=ago(912), lag_seconds=912.0, lag_limit_seconds=300
    )
    checks = [
        TableCheck(table="orders", target="t", ok=True, reason="committed R"),
        messages.changes_check(table="orders", target="t", state=state, now=NOW),
    ]
    report = MonitorReport(run_id="R", checked_at=NOW, ran=True, repository="/r", tables=checks)
    assert not report.ok and [type(c) for c in report.failed] == [ChangesCheck]
    message = messages.for_report(report)
    assert message.subject == "Hippolyte CHANGES: a gap or lag in orders, run R (t)"
    assert "all 1 tables were backed up" in message.text
    assert "orders: no changes captured since 14:04:48 (lag 912 s, threshold 300 s)" in message.text
    assert "hippolyte capture orders" in message.text and "TO RE-RUN" not in message.text
    assert message.data["failed"] == [] and message.data["counts"]["tables"] == 1
    assert [c["table"] for c in message.data["changes"]] == ["orders"]
    assert message.data["changes"][0]["late"] and "no changes captured" in message.slack_text


# -- a repository folder ---------------------------------------------------------------------


def test_changes_state_reads_the_chain_from_the_repository(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    backup = ago(3600)
    write_backup(storage, "orders", start=backup)
    gapped(storage, "orders", backup=backup)
    write_backup(storage, "plain", start=backup)
    state = changes_state(storage, "orders", now=NOW, lag_limit_s=300)
    assert state is not None and state.change_sets == 2
    assert state.changes_until == backup + dt.timedelta(seconds=30)
    assert state.lag_seconds == 3570.0 and state.late
    (gap,) = state.gaps
    assert gap == {
        "from": manifest.iso(backup + dt.timedelta(seconds=10)),
        "to": manifest.iso(backup + dt.timedelta(seconds=20)),
        "cause": "trimmed",
        "explanation": "the stream was trimmed before it was read",
        "detail": TRIMMED["detail"],
    }
    assert changes_state(storage, "plain", now=NOW) is None  # never captured


# -- status on dynalite ---------------------------------------------------------------------------


@pytest.fixture
def fleet(dynalite: Server, tmp_path: Path) -> dict[str, str]:
    """Four tables backed up an hour ago: `gap` (a trimmed stream after its backup, changes
    until 30 s ago), `late` (changes until 912 s ago), `fresh` (until 5 s ago), `plain` (no
    change sets)."""
    db = db_for(dynalite)
    stem = f"hs{tmp_path.name[-6:].replace('_', '')}"
    now = dt.datetime.now(dt.UTC)
    backup = ago(3600, now)
    storage = open_storage(str(tmp_path / "repo"))
    names = {}
    for role in ("gap", "late", "fresh", "plain"):
        names[role] = db.table(prefix=f"{stem}-{role}", items=[{"pk": {"S": "a"}}])
        write_backup(storage, names[role], start=backup)
    write_changes(storage, names["gap"], start=ago(3660, now), end=ago(1000, now))
    write_changes(storage, names["gap"], start=ago(900, now), end=ago(30, now), gap_before=TRIMMED)
    write_changes(storage, names["late"], start=ago(3660, now), end=ago(912, now))
    write_changes(storage, names["fresh"], start=ago(3660, now), end=ago(5, now))
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{tmp_path / "repo"}"\ncapture_lag_seconds = 600\n'
        f'[[targets]]\nregion = "us-east-1"\nendpoint_url = "{dynalite.endpoint_url}"\n'
        f'[selection]\ninclude = ["{stem}-"]\n'
    )
    return {"config": str(cfg), "repo": str(tmp_path / "repo"), "stem": stem, **names}


@pytest.mark.servers
def test_status_reports_changes_gaps_and_lag(
    fleet: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(capsys, "--config", fleet["config"], "status", "--json")
    assert code == 1 and "the changes of 2 tables" in err and "600 s" in err
    doc = orjson.loads(out)
    assert doc["late"] == [] and not doc["ok"] and doc["captureLagSeconds"] == 600
    assert sorted(doc["changesProblems"]) == sorted([fleet["gap"], fleet["late"]])
    rows = {t["table"]: t for t in doc["tables"]}
    assert "changes" not in rows[fleet["plain"]]  # a table never captured: as before
    gap, late, fresh = (rows[fleet[k]]["changes"] for k in ("gap", "late", "fresh"))
    assert [(g["cause"], g["explanation"]) for g in gap["gaps"]] == [
        ("trimmed", "the stream was trimmed before it was read")
    ]
    assert not gap["late"] and 29 <= gap["lag_seconds"] < 300
    assert late["late"] and late["gaps"] == [] and late["lag_seconds"] >= 912
    assert not fresh["late"] and fresh["gaps"] == [] and fresh["change_sets"] == 1

    monkeypatch.setattr(cmd_backup, "wants_json", lambda as_json: as_json)  # text, as on a tty
    code, out, err = run(capsys, "--config", fleet["config"], "status")
    assert code == 1
    text = " ".join(out.split())
    assert f"{fleet['gap']}: gap " in text and "the stream was trimmed before it was read" in text
    assert f"{fleet['late']}: no changes captured since " in text and "threshold 600 s" in text
    assert f"{fleet['plain']}: " not in text


@pytest.mark.servers
def test_status_reads_a_tables_listing_once(
    fleet: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its newest backup, its changes and its retention all come from one listing of the
    table: its backups' completeness listed once, and a backup's descriptor read once for the
    changes (beside change sets only); the newest backup's summary then reads its marker and
    descriptor itself. (Before, each of the three listed the table on its own.)"""
    calls: Counter[tuple[str, str]] = Counter()
    for name in ("completeness", "is_complete", "load_descriptor"):
        real = getattr(catalog, name)

        def counted(storage: Storage, of: Any, _real: Any = real, _name: str = name) -> Any:
            calls[_name, of if isinstance(of, str) else of.table] += 1
            return _real(storage, of)

        monkeypatch.setattr(catalog, name, counted)
    code, _, _ = run(capsys, "--config", fleet["config"], "status", "--json")
    assert code == 1
    for role in ("gap", "late", "fresh", "plain"):
        assert calls["completeness", fleet[role]] == 1
        assert calls["is_complete", fleet[role]] == 1  # the summary's
        assert calls["load_descriptor", fleet[role]] == 1 + (role != "plain")


@pytest.mark.servers
def test_status_without_change_sets_is_unchanged(
    fleet: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cmd_backup, "wants_json", lambda as_json: as_json)
    repo = tmp_path / "no-changes"
    write_backup(open_storage(str(repo)), fleet["plain"], start=ago(60, dt.datetime.now(dt.UTC)))
    cfg = Path(fleet["config"])
    text = cfg.read_text().replace(fleet["repo"], str(repo))
    cfg.write_text(text.replace(f'["{fleet["stem"]}-"]', f'["{fleet["plain"]}"]'))
    code, out, err = run(capsys, "--config", str(cfg), "status")
    assert code == 0, err
    assert "RPO" in out and "change sets" not in out and "changes until" not in out
    code, out, _ = run(capsys, "--config", str(cfg), "status", "--json")
    doc = orjson.loads(out)
    assert code == 0 and doc["ok"] and doc["changesProblems"] == []
    assert fleet["plain"] in [row["table"] for row in doc["tables"]]
    assert all("changes" not in row for row in doc["tables"])


# -- monitor on dynalite, notifying a webhook ------------------------------------------------


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook() as found:
        yield found


@pytest.fixture
def night(
    dynalite: Server,
    moto_server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hook: tuple[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """`backup --all` of two tables, `orders` and `users`, with a webhook channel."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
    db = db_for(dynalite)
    stem = f"hm{tmp_path.name[-6:].replace('_', '')}"
    names = {k: db.table(prefix=f"{stem}-{k}", items=[{"pk": {"S": "a"}}]) for k in ("o", "u")}
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{tmp_path / "repo"}"\n[[targets]]\nregion = "us-east-1"\n'
        f'endpoint_url = "{dynalite.endpoint_url}"\n'
        f'[[notifications]]\ntype = "webhook"\nurl = "{hook[0]}"\n'
        f'[selection]\ninclude = ["{stem}-"]\n'
    )
    code, out, err = run(capsys, "--config", str(cfg), "backup", "--all", "--json")
    assert code == 0, err
    storage = open_storage(str(tmp_path / "repo"))
    (run_id,) = [r for r in storage.list_dirs("@runs/")]
    return {
        "config": str(cfg),
        "storage": storage,
        "run": run_id,
        "orders": names["o"],
        "users": names["u"],
        "received": hook[1],
    }


@pytest.mark.servers
def test_monitor_notifies_a_lag_over_the_threshold(
    night: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, orders = night["storage"], night["orders"]
    backup = manifest.parse_backup_id(night["run"])
    write_changes(storage, orders, start=ago(2000, backup), end=ago(900, backup))
    code, out, err = run(capsys, "--config", night["config"], "monitor", "--json")
    assert code == 1, err
    (report,) = orjson.loads(out)["reports"]
    checks = {(t["table"], t["backup"]): t for t in report["tables"]}
    assert checks[(orders, f"{orders}/@changes")]["changes"]["late"]
    assert all(t["ok"] for t in report["tables"] if not t["backup"].endswith("/@changes"))
    (message,) = night["received"]
    assert message["failed"] == [] and not message["ok"]
    (told,) = message["changes"]
    assert told["table"] == orders and told["late"] and told["gaps"] == []
    assert f"{orders}: no changes captured since" in message["text"]
    assert "threshold 300 s" in message["text"]  # the default
    assert night["users"] not in str(message["changes"])  # never captured: not checked

    monkeypatch.setattr(cmd_backup, "wants_json", lambda as_json: as_json)
    code, out, _ = run(capsys, "--config", night["config"], "monitor", "--no-notify")
    assert code == 1 and f"FAIL changes {orders}: no changes captured since" in out


@pytest.mark.servers
def test_monitor_notifies_a_gap_after_the_newest_backup(night: dict[str, Any]) -> None:
    storage, orders = night["storage"], night["orders"]
    backup = manifest.parse_backup_id(night["run"])
    gapped(storage, orders, backup=backup)
    write_changes(
        storage, night["users"], start=ago(60, backup), end=backup + dt.timedelta(seconds=40)
    )
    at = backup + dt.timedelta(seconds=40)
    report = monitor(storage, target="t", run_id=night["run"], backup_cron="10 0 * * *", now=at)
    (broken,) = messages.broken_changes(report)
    assert broken.table == orders and not broken.changes.late and len(broken.changes.gaps) == 1
    assert broken.reason.startswith("gap ") and broken.reason.endswith("before it was read")
    users = next(c for c in report.tables if isinstance(c, ChangesCheck) and c.ok)
    assert users.table == night["users"]
    assert not report.ok and len(report.tables) == 4  # two backups, two tables' changes

    settings = validate(_toml(night["config"]), source="test")
    outcome = nightly_monitor(settings, run_id=night["run"], now=at)
    assert not outcome.ok and [n.ok for n in outcome.notifications] == [True]
    (message,) = night["received"]
    start, end = (backup + dt.timedelta(seconds=s) for s in (10, 20))
    line = f"{orders}: gap {start:%H:%M:%S} -> {end:%H:%M:%S}: the stream was trimmed"
    assert message["changes"][0]["problems"][0].startswith(line)
    assert "gap" in message["text"]  # the Slack text; the e-mail's tells the cure:
    assert "hippolyte backup " + orders in messages.for_report(outcome.reports[0]).text
    assert [c["table"] for c in message["changes"]] == [orders]
    assert message["changes"][0]["gaps"][0]["cause"] == "trimmed"


def test_monitor_checks_changes_when_nothing_ran(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "repo"))
    write_changes(storage, "orders", start=ago(2000), end=ago(900))
    report = monitor(storage, target="t", run_id=None, backup_cron="10 0 * * *", now=NOW)
    assert not report.ran and [(c.table, c.ok) for c in report.tables] == [("orders", False)]


def _toml(path: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(Path(path).read_text())


def test_when_nothing_ran_the_changes_problems_are_still_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hippolyte.adapters.notify as notify
    from hippolyte.core.config import Settings
    from hippolyte.ops.jobs import send_reports

    storage = open_storage(str(tmp_path / "repo"))
    write_changes(storage, "orders", start=ago(2000), end=ago(900))
    report = monitor(storage, target="t", run_id=None, backup_cron="10 0 * * *", now=NOW)
    sent: list[Any] = []
    monkeypatch.setattr(notify, "send_all", lambda channels, message: [sent.append(message)])
    settings = Settings().model_copy(update={"notifications": ["a channel"]})
    send_reports(settings, [report], now=NOW)
    subjects = [m.subject for m in sent]
    assert len(sent) == 2 and "NOTHING RAN" in subjects[0] and "CHANGES" in subjects[1]
    assert "orders: no changes captured since" in sent[1].text


# -- retention in status ----------------------------------------------------------------------


@pytest.mark.servers
def test_status_says_how_many_backups_retention_keeps_and_the_oldest_restorable_time(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = db_for(dynalite).table(items=[{"pk": {"S": "a"}}])
    repo = tmp_path / "repo"
    storage = open_storage(str(repo))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    starts = [now - dt.timedelta(days=d, minutes=5) for d in range(20)]  # 20 daily backups
    for start in starts:
        write_backup(storage, table, start=start)
    cfg = tmp_path / "hippolyte.toml"
    base = (
        f'repository = "{repo}"\n[selection]\ninclude = ["{table}"]\n'
        f'[[targets]]\nregion = "us-east-1"\nendpoint_url = "{dynalite.endpoint_url}"\n'
    )
    cfg.write_text(base)
    code, out, err = run(capsys, "--config", str(cfg), "status", "--json")
    assert code == 0, err
    (row,) = [t for t in orjson.loads(out)["tables"] if t["table"] == table]
    assert row["backups"] == 20 and row["kept"] is None
    assert dt.datetime.fromisoformat(row["oldest_restorable"]) == min(starts)

    cfg.write_text(base + "[retention]\nkeep_daily = 7\nkeep_weekly = 2\n")
    code, out, err = run(capsys, "--config", str(cfg), "status", "--json")
    assert code == 0, err
    (row,) = [t for t in orjson.loads(out)["tables"] if t["table"] == table]
    # 7 days, and the weeks before them: the oldest kept is the last daily backup of the
    # second ISO week that has one (computed here from the dates, not by the code)
    dailies = sorted(starts, reverse=True)[:7]
    weeks: dict[tuple[int, int], dt.datetime] = {}
    for start in sorted(starts, reverse=True):
        weeks.setdefault(start.isocalendar()[:2], start)
    weekly = sorted(weeks.values(), reverse=True)[:2]
    expected = sorted(set(dailies) | set(weekly))
    assert row["backups"] == 20 and row["kept"] == len(expected)
    assert dt.datetime.fromisoformat(row["oldest_restorable"]) == expected[0]
    assert len(list(storage.list(f"{table}/"))) > 20 * 3  # status removed nothing


@pytest.mark.servers
def test_status_reports_what_a_copy_destination_lacks(
    dynalite: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = db_for(dynalite).table(items=[{"pk": {"S": "a"}}])
    repo, dr = tmp_path / "repo", tmp_path / "dr"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for hours in (30, 2):  # one older than the 24 h RPO
        write_backup(open_storage(str(repo)), table, start=now - dt.timedelta(hours=hours))
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{repo}"\n[selection]\ninclude = ["{table}"]\n'
        f'[[targets]]\nregion = "us-east-1"\nendpoint_url = "{dynalite.endpoint_url}"\n'
        f'[[copies]]\nto = "{dr}"\n'
        f'[[copies]]\nto = "{dr}-other"\ntables = ["^nothing-matches$"]\n'
    )
    code, out, err = run(capsys, "--config", str(cfg), "status", "--json")
    assert code == 1 and f"copies to {dr}: 1 backups older than 24 h are missing" in err, err
    doc = orjson.loads(out)
    lag, other = doc["copies"]
    assert (lag["destination"], lag["behind"], lag["late"]) == (str(dr), 2, 1)
    assert dt.datetime.fromisoformat(lag["oldest"]) == now - dt.timedelta(hours=30)
    assert other["behind"] == 0 and other["error"] == ""  # wants no table of this fleet
    assert not doc["ok"] and doc["late"] == []
    with monkeypatch.context() as m:
        m.setattr(cmd_backup, "wants_json", lambda as_json: as_json)  # text, as on a tty
        code, out, err = run(capsys, "--config", str(cfg), "status")
    text = " ".join(out.split())
    assert f"copies to {dr}: 2 behind (oldest " in text and "1 older than the RPO" in text, text
    assert f"copies to {dr}-other: up to date" in text

    code, out, err = run(capsys, "--config", str(cfg), "copy", "--to", str(dr))
    assert code == 0, err
    code, out, err = run(capsys, "--config", str(cfg), "status", "--json")
    assert code == 0, err
    assert [c["behind"] for c in orjson.loads(out)["copies"]] == [0, 0]


def test_a_dashboard_row_with_retention_reads_the_table_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With [retention], a dashboard row's backups, retention and changes come from one
    listing of the table (its completeness listed once, each descriptor read once for the
    changes), and say what each part alone says."""
    from hippolyte.ops import dashboard
    from hippolyte.ops.status import retention_state

    storage = open_storage(str(tmp_path / "repo"))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for day in range(4):
        write_backup(storage, "orders", start=now - dt.timedelta(days=day, hours=1))
    write_changes(storage, "orders", start=ago(3700, now), end=ago(10, now))
    settings = validate(
        {"repository": str(tmp_path / "repo"), "retention": {"keep_last": 2}}, source="test"
    )
    expected_backups, expected_kept, _ = retention_state(
        storage, "orders", settings.retention, now=now
    )
    expected_changes = changes_state(storage, "orders", now=now, lag_limit_s=600)
    assert expected_changes is not None

    calls: Counter[str] = Counter()
    for name in ("completeness", "is_complete", "load_descriptor"):
        real = getattr(catalog, name)

        def counted(storage: Storage, of: Any, _real: Any = real, _name: str = name) -> Any:
            calls[_name] += 1
            return _real(storage, of)

        monkeypatch.setattr(catalog, name, counted)
    row = dashboard.table_row(storage, "orders", now=now, settings=settings, memo={})
    assert (row["backups"], row["kept"]) == (expected_backups, expected_kept) == (4, 2)
    assert row["changes"]["changeSets"] == expected_changes.change_sets
    assert row["changes"]["gaps"] == len(expected_changes.gaps)
    # one listing; the 4 descriptors once for the changes, then the newest ones' facts
    assert calls["completeness"] == 1
    assert calls["load_descriptor"] == 4 + len(row["trend"])
