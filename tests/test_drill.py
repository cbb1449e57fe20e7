"""Restore drills: the decisions (pure), then `hippolyte drill` on DynamoDB Local and dynalite:
tables restored into scratch tables, proven, and only the drill's own scratch tables deleted;
a corrupted backup fails and is notified; --keep; the sample; bad input."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters import dynamodb_admin, dynamodb_scratch
from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core import drill as decide
from hippolyte.core.config import validate
from hippolyte.core.drill import Drill, TableDrill
from hippolyte.ops import dashboard, jobs
from hippolyte.ops import drill as drill_ops
from hippolyte.repo import catalog, drills
from hippolyte.serve.daemon import Daemon
from tests.helpers import Db, db_for, run
from tests.support.servers import Server
from tests.support.webhook import webhook

NOW = dt.datetime(2026, 11, 29, 3, 30, tzinfo=dt.UTC)


# -- the decisions ------------------------------------------------------------------------------


def test_sample_is_weighted_to_the_tables_not_drilled_longest() -> None:
    fleet = {
        "fresh": NOW - dt.timedelta(minutes=5),
        "week": NOW - dt.timedelta(days=7),
        "never": None,
    }
    rng = random.Random(17)
    firsts = [decide.sample(fleet, n=1, now=NOW, rng=rng)[0].table for _ in range(2000)]
    assert firsts.count("never") > 1900  # ten years' weight against a week's and an hour's
    assert firsts.count("week") > firsts.count("fresh")
    (pick,) = decide.sample({"fresh": fleet["fresh"]}, n=1, now=NOW, rng=rng)
    assert pick.reason == "last drilled 2026-11-29 03:25 UTC" and pick.weight == 1.0
    assert len(decide.sample(fleet, n=3, now=NOW, rng=rng)) == 3
    with pytest.raises(ValueError, match="a sample of 4 tables from a fleet of 3"):
        decide.sample(fleet, n=4, now=NOW, rng=rng)


def test_the_guard_names_what_is_not_the_drill_s_own() -> None:
    drill = "20261129-033000-abcd"
    name = f"orders-drill-{drill}"
    desc = {"TableName": name, "TableId": "1234", "TableArn": "arn"}
    mine = decide.identity(desc)
    tagged = {decide.TAG: drill}

    def why(**over: Any) -> str | None:
        args: dict[str, Any] = dict(name=name, drill=drill, created=mine, desc=desc, tags=tagged)
        return decide.refusal(**(args | over))

    assert why() is None
    assert why(tags=None) is None  # a server with no tagging at all: the identity stands alone
    assert "is not tagged hippolyte:drill=" in str(why(tags={}))
    assert "(tagged 'other')" in str(why(tags={decide.TAG: "other"}))
    assert "not the table this drill created" in str(why(created="id 999"))
    assert "is not a table of drill" in str(why(name="orders"))
    assert "no longer exists" in str(why(desc=None))
    with pytest.raises(ValueError, match="longer than 255"):
        decide.scratch_name("t" * 240, drill)
    assert decide.seconds_per_gb(3.0, 500_000_000) == 6.0 and decide.seconds_per_gb(1, 0) is None


def test_a_failed_drill_s_message() -> None:
    record = Drill(
        id="20261129-033000-abcd",
        at=NOW,
        repository="s3://b/p",
        target="http://x us-east-1",
        tables=[
            TableDrill(table="a", backup="a/1", scratch="a-drill-x", ok=True, seconds_per_gb=9.5),
            TableDrill(table="b", backup="b/1", scratch="b-drill-x", ok=False, error="sha256"),
        ],
    )
    message = decide.message(record)
    assert message.subject.startswith("Hippolyte DRILL FAILED: 1 of 2 tables")
    assert message.data["failed"] == [{"table": "b", "error": "sha256"}]
    assert "FAIL b: sha256" in message.text and "hippolyte drill b" in message.text


# -- on the servers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook() as found:
        yield found


def _items(n: int) -> list[dict[str, Any]]:
    return [
        {
            "pk": {"S": f"k{i}"},
            "sk": {"N": str(i)},
            "n": {"N": "12345678901234567890.5"},
            "b": {"B": b"\x00\xff" * (i % 5)},
            "ss": {"SS": ["x", f"y{i}"]},
            "m": {"M": {"deep": {"L": [{"BOOL": True}, {"NULL": True}]}}},
        }
        for i in range(n)
    ]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("dynamodb_local", marks=pytest.mark.servers),
        pytest.param("dynalite", marks=pytest.mark.servers),
    ],
)
def fleet(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    hook: tuple[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """Five tables backed up by tonight's job (a: GSI-less composite key; the others small),
    and a config with a webhook channel."""
    server: Server = request.getfixturevalue(request.param)
    db = db_for(server)
    tmp = tmp_path_factory.mktemp(f"drill-{request.param}")
    stem = f"dr{tmp.name[-4:].replace('_', '')}"
    key = (("pk", "S"), ("sk", "N"))
    names = {
        k: db.table(key=key, prefix=f"{stem}-{k}", items=_items(n))
        for k, n in (("a", 60), ("b", 7), ("c", 5), ("d", 3), ("bad", 30))
    }
    cfg = tmp / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{tmp / "repo"}"\n[[targets]]\nregion = "us-east-1"\n'
        f'endpoint_url = "{server.endpoint_url}"\n'
        f'[[notifications]]\ntype = "webhook"\nurl = "{hook[0]}"\n'
        f'[selection]\ninclude = ["^{stem}-"]\nexclude = ["-drill-"]\n'
        f'[drills]\nsample = 2\nschedule = "0 4 * * 0"\n'
    )
    settings = validate(_toml(cfg), source="test")
    (result,) = jobs.nightly_backup(settings)
    assert all(r.ok for r in result.results) and len(result.results) == 5
    return {
        "server": request.param,
        "db": db,
        "config": str(cfg),
        "settings": settings,
        "storage": open_storage(str(tmp / "repo")),
        "received": hook[1],
        **names,
    }


def _toml(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text())


def _create(db: Db, name: str) -> str:
    db.client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    db.client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
    return name


def _tables(db: Db) -> set[str]:
    return set(db.client.list_tables()["TableNames"])


def _drill_json(capsys: pytest.CaptureFixture[str], fleet: dict[str, Any], *args: str) -> Any:
    code, out, err = run(capsys, "--config", fleet["config"], "drill", "--json", *args)
    return code, (orjson.loads(out) if out.strip() else None), err


def test_a_drill_proves_every_table_and_deletes_only_its_own(
    fleet: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db, storage = fleet["db"], fleet["storage"]
    lookalike = _create(db, f"{fleet['a']}-drill-20000101-000000-abcd")  # untagged
    db.client.put_item(TableName=lookalike, Item={"pk": {"S": "keep me"}})
    before = _tables(db)
    code, doc, err = _drill_json(capsys, fleet, fleet["a"], fleet["b"], fleet["c"])
    assert code == 0, err
    assert doc["ok"] and [t["table"] for t in doc["tables"]] == [fleet[k] for k in "abc"]
    got = {t["table"]: t for t in doc["tables"]}
    assert [got[fleet[k]]["items"] for k in "abc"] == [60, 7, 5]
    for t in doc["tables"]:
        assert t["ok"] and t["deleted"] and t["kept"] is None and t["error"] is None
        assert t["scratch"] == f"{t['table']}-drill-{doc['drill']}"
        assert t["seconds"] > 0 and t["seconds_per_gb"] > 0 and t["bytes"] > 0
        newest = drill_ops.newest_committed(storage, t["table"])
        assert t["backup"] == str(newest)
    assert _tables(db) == before  # every scratch table gone; the lookalike and sources stay
    assert db.client.get_item(TableName=lookalike, Key={"pk": {"S": "keep me"}})["Item"]

    record = drills.read_drill(storage, doc["drill"])
    assert record.ok and [t.table for t in record.tables] == [fleet[k] for k in "abc"]
    assert orjson.loads(storage.get_bytes(drills.key(doc["drill"])))["format"] == drills.FORMAT
    shown = dashboard.last_drills(storage)
    assert shown[fleet["a"]]["ok"] and shown[fleet["a"]]["secondsPerGb"] > 0
    assert fleet["d"] not in shown
    code, out, err = run(capsys, "--config", fleet["config"], "status", "--json")
    rows = {r["table"]: r for r in orjson.loads(out)["tables"]}
    assert rows[fleet["a"]]["drill_ok"] is True and rows[fleet["a"]]["last_drill"]
    assert rows[fleet["d"]]["last_drill"] is None

    # the guard itself: a table of the drill's name that this drill did not create is refused
    desc = dynamodb_admin.describe_raw(db.client, lookalike)
    assert desc is not None
    why = dynamodb_scratch.delete_scratch(
        db.client, name=lookalike, drill="20000101-000000-abcd", created="id not-this-one"
    )
    assert why is not None and "not the table this drill created" in why
    if fleet["server"] == "dynalite":  # a server that keeps tags: its identity is not enough
        why = dynamodb_scratch.delete_scratch(
            db.client,
            name=lookalike,
            drill="20000101-000000-abcd",
            created=decide.identity(desc),
        )
        assert why is not None and "is not tagged hippolyte:drill=20000101-000000-abcd" in why
    assert lookalike in _tables(db)


def test_a_corrupted_backup_fails_the_drill_and_is_notified(
    fleet: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    storage: Storage = fleet["storage"]
    ref = drill_ops.newest_committed(storage, fleet["bad"])
    assert ref is not None
    victim = Path(storage.url) / ref.prefix / catalog.load_descriptor(storage, ref)["files"][0].key
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    fleet["received"].clear()
    before = _tables(fleet["db"])
    code, doc, err = _drill_json(capsys, fleet, fleet["bad"])
    assert code == 1, err
    (t,) = doc["tables"]
    assert not doc["ok"] and not t["ok"] and victim.name in t["error"]
    assert t["deleted"]  # created before the check found the bad file: deleted all the same
    assert _tables(fleet["db"]) == before
    (message,) = fleet["received"]
    assert message["kind"] == "drill" and not message["ok"]
    assert message["failed"][0]["table"] == fleet["bad"] and victim.name in message["text"]
    assert [n["ok"] for n in doc["notifications"]] == [True]
    assert not drills.read_drill(storage, doc["drill"]).ok
    assert f"drill {doc['drill']}: 1 of 1 tables not proven" in err
    # the dashboard's drills section names it failed, and why
    page = Path(storage.url).parent / "dashboard.html"
    code, out, err = run(capsys, "dashboard", "--out", str(page), "--repo", storage.url)
    assert code == 0, err
    section = page.read_text().split('<section id="drills">')[1].split("</section>")[0]
    assert doc["drill"] in section and '<span class="bad">failed</span>' in section
    assert f"{fleet['bad']}: NOT proven" in section and victim.name in section


@pytest.mark.servers
def test_keep_keeps_the_scratch_table_tagged(
    fleet: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db = fleet["db"]
    code, doc, err = _drill_json(capsys, fleet, fleet["c"], "--keep")
    assert code == 0, err
    (t,) = doc["tables"]
    assert t["ok"] and not t["deleted"] and t["kept"] == "--keep"
    desc = dynamodb_admin.describe_raw(db.client, t["scratch"])
    assert desc is not None and desc["ItemCount"] in (0, 5)  # ItemCount is refreshed lazily
    assert len(db.stock_items(t["scratch"])) == 5
    tags = dynamodb_scratch.tags_of(db.client, desc["TableArn"])
    assert (
        tags is None if fleet["server"] == "dynamodb_local" else tags == {decide.TAG: doc["drill"]}
    )
    db.client.delete_table(TableName=t["scratch"])


def test_the_sample_picks_the_least_recently_drilled_and_bad_input(
    fleet: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, d = fleet["a"], fleet["b"], fleet["d"]
    code, doc, err = _drill_json(capsys, fleet, a, b)
    assert code == 0, err
    code, doc, err = _drill_json(capsys, fleet, a, b, d, "--sample", "1")
    assert code == 0, err
    assert [t["table"] for t in doc["tables"]] == [d]  # never drilled: ten years' weight

    code, _, err = _drill_json(capsys, fleet, "--sample", "99")
    assert code == 2 and "--sample 99: the repository" in err and "only 5 tables" in err
    code, _, err = _drill_json(capsys, fleet, a, "never-backed-up")
    assert code == 3 and "no committed backup of never-backed-up" in err
    code, _, err = _drill_json(capsys, fleet)
    assert code == 2 and "--sample N" in err

    # a scratch name already taken on the source's own connection: refused, nothing touched
    taken = "20261129-033000-beef"
    monkeypatch.setattr(drill_ops.decide, "drill_id", lambda now, token: taken)
    squatter = f"{a}-drill-{taken}"
    _create(fleet["db"], squatter)
    fleet["db"].client.put_item(TableName=squatter, Item={"pk": {"S": "mine"}})
    before = len(drills.drill_ids(fleet["storage"]))
    code, _, err = _drill_json(capsys, fleet, a)
    assert code == 2 and "already exists in the source's own connection" in err
    assert fleet["db"].client.get_item(TableName=squatter, Key={"pk": {"S": "mine"}})["Item"]
    assert len(drills.drill_ids(fleet["storage"])) == before


def test_serve_runs_the_drills_job_and_exposes_it(fleet: dict[str, Any]) -> None:
    if fleet["server"] != "dynalite":
        pytest.skip("the job is the same on both servers; once is enough")
    settings = fleet["settings"]
    daemon = Daemon(settings=settings, stop=threading.Event())
    daemon._schedule()
    assert "drill" in daemon.next_at and daemon.next_at["drill"].weekday() == 6  # Sunday
    daemon.run_job("drill")
    assert daemon.last["drill"]["result"] in ("ok", "failed")  # `bad` may be in the sample
    metrics = daemon.metrics.render().decode()
    assert "hippolyte_drill_seconds_per_gb{" in metrics
    newest = drills.read_all(fleet["storage"])[-1]
    assert len(newest.tables) == 2 and all(t.deleted for t in newest.tables)
    fresh = Daemon(settings=settings, stop=threading.Event())
    assert fresh.seed_drills() >= 2
    assert "hippolyte_drill_ok{" in fresh.metrics.render().decode()


def test_the_lambda_names_where_drills_run() -> None:
    from hippolyte import aws_lambda

    rule = {"resources": ["arn:aws:events:us-east-1:123456789012:rule/hippolyte-drill"]}
    assert aws_lambda.action_of(rule) == "drill"
    assert aws_lambda.action_of({"resources": [rule["resources"][0] + "-backup"]}) == "backup"
    summary = aws_lambda.handler({"action": "drill"}, None)
    assert not summary["ok"] and summary["error"] == aws_lambda.DRILL_ELSEWHERE


def test_status_shows_the_last_drill_and_its_rto() -> None:
    from hippolyte.cli.render import _drill_cell
    from hippolyte.ops.status import TableStatus

    row = TableStatus(table="t", target="default", selected=True)
    assert _drill_cell(row) == "-"
    drilled = TableStatus(
        table="t",
        target="default",
        selected=True,
        last_drill=NOW,
        drill_ok=True,
        drill_seconds_per_gb=354.0,
    )
    assert _drill_cell(drilled) == "[green]ok 2026-11-29 03:30, 354 s/GB"
    failed = TableStatus(table="t", target="default", selected=True, last_drill=NOW, drill_ok=False)
    assert _drill_cell(failed) == "[red]FAILED 2026-11-29 03:30"
