"""The export engine on moto: DynamoDB's point-in-time export into an s3:// repository,
committed as a Hippolyte backup; fallback to scanning; auto picks per table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import open_storage
from hippolyte.core.errors import AwsError, TableNotFound
from hippolyte.engines.export import pitr_enabled
from hippolyte.formats.base import iter_items
from hippolyte.formats.open import open_source
from hippolyte.ops.sample_tables import order_item
from tests.corpus import same_items
from tests.helpers import db_for, run
from tests.support.faults import FaultProxy
from tests.support.servers import Server

pytestmark = pytest.mark.servers
ORDER_KEY = (("customer", "S"), ("order", "N"))


@pytest.fixture
def on_moto(moto_server: Server, make_s3_bucket: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    bucket = make_s3_bucket(moto_server)  # also points AWS_ENDPOINT_URL_S3 at moto
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
    return bucket


def _table(moto_server: Server, *, pitr: bool, n: int = 60) -> tuple[str, list[Any]]:
    db = db_for(moto_server)
    items = [order_item(i) for i in range(n)]
    name = db.table(key=ORDER_KEY, items=items, prefix="exp")
    if pitr:
        db.client.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return name, items


def _items(repo: str, ref: str) -> list[Any]:
    storage = open_storage(repo)
    source = open_source(storage, ref + "/", location=ref)
    assert source.kind == "hippolyte"
    return [
        orjson.loads(i) for f in source.files for i in iter_items(source, f, schema=source.schema())
    ]


def test_export_engine_commits_a_verifiable_backup(
    moto_server: Server, on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, items = _table(moto_server, pitr=True)
    repo = f"{on_moto.url}/backups"
    code, out, err = run(
        capsys,
        "backup",
        table,
        "--repo",
        repo,
        "--engine",
        "export",
        "--endpoint-url",
        moto_server.endpoint_url,
        "--json",
    )
    assert code == 0, err
    result = orjson.loads(out)["results"][0]
    ref = f"{table}/{result['ref']['backup_id']}"
    assert result["item_count"] == len(items)
    code, out, err = run(capsys, "verify", ref, "--repo", repo, "--json")
    assert code == 0, out + err
    code, out, _ = run(capsys, "show", ref, "--repo", repo, "--json")
    assert "point-in-time export" in orjson.loads(out)["backup"]["consistency"]
    assert same_items(_items(repo, ref), items)


def test_without_pitr_export_falls_back_or_fails(
    moto_server: Server, on_moto: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    table, items = _table(moto_server, pitr=False, n=20)
    repo = f"{on_moto.url}/backups"
    common = ["--repo", repo, "--engine", "export", "--endpoint-url", moto_server.endpoint_url]
    code, out, err = run(capsys, "backup", table, *common, "--no-fallback", "--json")
    assert code == 1 and "point-in-time recovery is off" in err
    code, out, err = run(capsys, "backup", table, *common, "--json")
    assert code == 0, err
    assert "scanning instead" in err
    assert orjson.loads(out)["results"][0]["item_count"] == len(items)


def test_auto_exports_pitr_tables_and_scans_the_rest(
    moto_server: Server, on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported, _ = _table(moto_server, pitr=True, n=30)
    scanned, _ = _table(moto_server, pitr=False, n=30)
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{on_moto.url}/night"\nengine = "auto"\n[[targets]]\n'
        f'region = "us-east-1"\nendpoint_url = "{moto_server.endpoint_url}"\n'
        f'[selection]\ninclude = ["{exported}$", "{scanned}$"]\n'
    )
    code, out, err = run(capsys, "--config", str(cfg), "plan", "--format", "json")
    assert code == 0, err
    plan = orjson.loads(out)
    assert [e["table"] for e in plan["exports"]] == [exported]
    assert "point-in-time recovery is on" in plan["exports"][0]["reason"]
    assert [t["table"] for p in plan["pipelines"] for t in p["tables"]] == [scanned]
    code, out, err = run(capsys, "--config", str(cfg), "backup", "--all", "--json")
    assert code == 0, err
    assert sorted(r["table"] for r in orjson.loads(out)["results"]) == sorted([exported, scanned])
    code, out, err = run(capsys, "--config", str(cfg), "monitor", "--json", "--no-notify")
    assert code == 0, err


def test_pitr_is_off_only_when_dynamodb_says_so_or_lacks_the_api(
    moto_server: Server, dynalite: Server
) -> None:
    on, _ = _table(moto_server, pitr=True, n=1)
    off, _ = _table(moto_server, pitr=False, n=1)
    client = db_for(moto_server).client
    assert pitr_enabled(client, on) and not pitr_enabled(client, off)
    local = db_for(dynalite)  # no DescribeContinuousBackups: UnknownOperationException
    assert not pitr_enabled(local.client, local.table(prefix="exp"))
    with pytest.raises(TableNotFound, match="exp-missing"):
        pitr_enabled(client, "exp-missing")


def test_a_refused_pitr_check_names_the_permission_instead_of_scanning(
    moto_server: Server, on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Credentials whose policy lacks dynamodb:DescribeContinuousBackups get DynamoDB's 400
    AccessDeniedException: plan and backup fail saying so, never "PITR off, scanning"."""
    table, _ = _table(moto_server, pitr=True, n=10)
    with FaultProxy(
        upstream=moto_server.endpoint_url,
        operation="DescribeContinuousBackups",
        schedule=["denied"],
    ) as proxy:
        conn = aws.Connection(region="us-east-1", endpoint_url=proxy.endpoint_url)
        with pytest.raises(AwsError, match=f"{table}.*grant dynamodb:DescribeContinuousBackups"):
            pitr_enabled(dynamodb.control_client(conn), table)
        cfg = tmp_path / "hippolyte.toml"
        cfg.write_text(
            f'repository = "{on_moto.url}/denied"\nengine = "auto"\n[[targets]]\n'
            f'region = "us-east-1"\nendpoint_url = "{proxy.endpoint_url}"\n'
            f'[selection]\ninclude = ["{table}$"]\n'
        )
        code, out, err = run(capsys, "--config", str(cfg), "plan", "--format", "json")
        assert code == 7, out + err
        assert table in err and "dynamodb:DescribeContinuousBackups" in err
        assert "Traceback" not in err
    # the table's own description passes (first call), the PITR check is refused (second)
    with FaultProxy(
        upstream=moto_server.endpoint_url,
        operation="DescribeContinuousBackups",
        schedule=["ok", "denied"],
    ) as proxy:
        code, out, err = run(
            capsys,
            "backup",
            table,
            "--repo",
            f"{on_moto.url}/denied",
            "--engine",
            "export",
            "--endpoint-url",
            proxy.endpoint_url,
            "--json",
        )
    assert code == 1, out + err
    assert "dynamodb:DescribeContinuousBackups" in err
    assert "scanning instead" not in err and "recovery is off" not in err
