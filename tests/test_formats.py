"""Foreign formats: DynamoDB's native export and the Data Pipeline export, detected, read back
item for item, refused when corrupt, and converted into a Hippolyte backup."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core.errors import BackupCorrupt, ConfigError
from hippolyte.formats import base as sources
from hippolyte.formats import datapipeline as formats_datapipeline
from hippolyte.formats import native as formats_native
from hippolyte.formats.base import KeySchema, Source
from hippolyte.formats.open import open_source
from hippolyte.ops.convert import convert, schema_from_key
from hippolyte.repo import manifest
from hippolyte.repo.verify import verify
from tests.conftest import S3Bucket
from tests.corpus import Item, same_items
from tests.format_fixtures import (
    TABLE_ARN,
    connector,
    fixture_items,
    wire,
    write_datapipeline_export,
    write_native_export,
)

PK = KeySchema(attributes=(("pk", "S"),))
DP_FOLDER = "orders/2017-06-01-00-10-00/"


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return fixture_items()


@pytest.fixture
def local(tmp_path: Path) -> Storage:
    return open_storage(str(tmp_path / "exports"))


def read_all(source: Source, *, schema: KeySchema | None = PK) -> list[Item]:
    out = []
    for f in source.files:
        sources.check_file(source, f, schema=schema)
        out += [orjson.loads(i) for i in sources.iter_items(source, f, schema=schema)]
    return out


def item_lines(source: Source) -> list[bytes]:
    return [line for f in source.files for _, line in sources.iter_lines(source, f)]


# --- the connector's type keys -> wire format (pure) -----------------------------------------


def test_connector_items_convert_to_wire_json(items: list[Item]) -> None:
    for item in items:
        line = orjson.dumps(connector(item))
        assert orjson.loads(formats_datapipeline.to_wire(line)) == wire(item)


def test_type_keys_match_in_any_case() -> None:
    line = (
        b'{"a":{"S":"x"},"b":{"nULL":true},"c":{"NULL":true},"d":{"Null":true},'
        b'"e":{"BOOL":false},"f":{"Ss":["a"]},"g":{"Ns":["1"]},"h":{"BS":["AP8="]},'
        b'"i":{"M":{"j":{"L":[{"B":"AA=="},{"n":"1E+3"}]}}},"k":{"bool":true}}'
    )
    assert orjson.loads(formats_datapipeline.to_wire(line)) == {
        "a": {"S": "x"},
        "b": {"NULL": True},
        "c": {"NULL": True},
        "d": {"NULL": True},
        "e": {"BOOL": False},
        "f": {"SS": ["a"]},
        "g": {"NS": ["1"]},
        "h": {"BS": ["AP8="]},
        "i": {"M": {"j": {"L": [{"B": "AA=="}, {"N": "1E+3"}]}}},
        "k": {"BOOL": True},
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"a":{"x":"1"}}', "attribute 'a': unknown type key 'x'"),
        (b'{"a":{"m":{"b":{"l":[{"sx":"1"}]}}}}', "attribute 'a' at .b[0]: unknown type key"),
        (b'{"a":{"n":1}}', "attribute 'a': a N value must be a string, got int"),
        (b'{"a":{"s":null}}', "a S value must be a string, got null"),
        (b'{"a":{"b":"not base64!"}}', "a B value must be base64"),
        (b'{"a":{"sS":"a"}}', "a SS value must be a list of strings"),
        (b'{"a":{"bS":["AA==","?"]}}', "a BS value must be a list of base64 strings"),
        (b'{"a":{"m":[]}}', "a M value must be an object"),
        (b'{"a":{"l":{}}}', "a L value must be a list"),
        (b'{"a":{"nULL":false}}', "a NULL value must be true"),
        (b'{"a":{"bOOL":"true"}}', "a BOOL value must be true or false"),
        (b'{"a":{"s":"x","n":"1"}}', "attribute 'a': expected one type key"),
        (b'{"a":"x"}', "attribute 'a': expected one type key, got str"),
        (b"[1]", "not a JSON object"),
        (b"{not json", "unexpected character"),
    ],
)
def test_bad_connector_lines_raise_value_error(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        formats_datapipeline.to_wire(line)


# --- detection --------------------------------------------------------------------------------


def test_native_export_with_manifests(local: Storage, items: list[Item]) -> None:
    folder = write_native_export(local, "exports/", items, files=3)
    source = formats_native.detect(local, folder, location="x")
    assert source is not None and source.kind == "native-export"
    assert len(source.files) == 3 and all(f.md5 for f in source.files)
    assert sum(f.item_count or 0 for f in source.files) == source.item_count == len(items)
    assert source.description is None and source.schema() is None
    assert source.extras["tableArn"] == TABLE_ARN
    assert source.extras["exportTime"].startswith("2024-03-05T07:28:34")
    assert same_items(read_all(source), items)


def test_native_export_found_from_its_parent(local: Storage, items: list[Item]) -> None:
    folder = write_native_export(local, "exports/", items)
    for prefix in ("exports/", "exports/AWSDynamoDB/"):
        source = open_source(local, prefix, location=f"loc/{prefix}")
        assert source.kind == "native-export"
        assert source.files[0].key.startswith(folder)
        assert source.location == "loc/" + folder.rstrip("/")


def test_native_export_folder_itself_via_open_source(local: Storage, items: list[Item]) -> None:
    folder = write_native_export(local, "exports/", items)
    assert open_source(local, folder, location="x").kind == "native-export"


def test_export_copied_elsewhere_resolves_data_keys(local: Storage, items: list[Item]) -> None:
    folder = write_native_export(local, "copy/", items, s3_prefix="prod/exports/2024")
    source = formats_native.detect(local, "copy/", location="copy")
    assert source is not None and all(f.key.startswith(folder + "data/") for f in source.files)
    assert same_items(read_all(source), items)


def test_moto_bare_export(local: Storage, items: list[Item]) -> None:
    folder = write_native_export(local, "moto/", items, with_manifests=False, files=1)
    for prefix in (folder, "moto/"):
        source = formats_native.detect(local, prefix, location="x")
        assert source is not None and source.kind == "native-export"
        assert [f.key.endswith(".gz") and f.md5 is None for f in source.files] == [True]
        assert source.item_count is None
        assert same_items(read_all(source), items)


def test_several_exports_must_be_chosen(local: Storage, items: list[Item]) -> None:
    a = write_native_export(local, "e/", items[:2], export_id="01111111111111-aaaaaaaa")
    b = write_native_export(local, "e/", items[2:], export_id="02222222222222-bbbbbbbb")
    with pytest.raises(ConfigError, match="holds 2 DynamoDB exports") as exc:
        open_source(local, "e/", location="s3://b/e")
    assert "s3://b/e/AWSDynamoDB/01111111111111-aaaaaaaa" in str(exc.value)
    assert "s3://b/e/AWSDynamoDB/02222222222222-bbbbbbbb" in str(exc.value)
    assert formats_native.detect(local, a, location="a") is not None
    assert formats_native.detect(local, b, location="b") is not None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"output_format": "ION"}, "ION format; only DYNAMODB_JSON"),
        ({"export_type": "INCREMENTAL_EXPORT"}, "INCREMENTAL_EXPORT.*only full exports"),
    ],
)
def test_unsupported_native_exports(
    local: Storage, items: list[Item], kw: dict[str, Any], message: str
) -> None:
    write_native_export(local, "e/", items, **kw)
    with pytest.raises(ConfigError, match=message):
        open_source(local, "e/", location="e")


def test_unfinished_native_export(local: Storage, items: list[Item]) -> None:
    folder = write_native_export(local, "e/", items)
    local.delete(folder + "manifest-summary.json")
    with pytest.raises(BackupCorrupt, match="did not finish"):
        open_source(local, "e/", location="e")


def test_native_manifest_naming_a_missing_file(local: Storage, items: list[Item]) -> None:
    folder = write_native_export(local, "e/", items)
    local.delete(next(iter(local.list(folder + "data/"))))
    with pytest.raises(BackupCorrupt, match=r"manifest-files\.json line \d: data file .* missing"):
        formats_native.detect(local, folder, location="e")


def test_datapipeline_with_manifest(local: Storage, items: list[Item]) -> None:
    keys = write_datapipeline_export(local, DP_FOLDER, items, items_per_file=7)
    local.put_bytes(DP_FOLDER + "unlisted", b"{}\n")  # the manifest decides
    source = open_source(local, DP_FOLDER, location="dp")
    assert source.kind == "datapipeline" and source.item_count is None
    assert sorted(f.key for f in source.files) == sorted(keys)
    assert source.extras == {"exportTime": "2017-06-01T00:10:00.000Z"}
    assert same_items(read_all(source), items)


def test_datapipeline_without_manifest(local: Storage, items: list[Item]) -> None:
    keys = write_datapipeline_export(local, "x/", items, items_per_file=10, with_manifest=False)
    source = formats_datapipeline.detect(local, "x/", location="x")
    assert source is not None and sorted(f.key for f in source.files) == sorted(keys)
    assert source.extras == {}
    assert same_items(read_all(source), items)


def test_datapipeline_without_success_is_refused(local: Storage, items: list[Item]) -> None:
    write_datapipeline_export(local, DP_FOLDER, items, with_success=False)
    with pytest.raises(BackupCorrupt, match="incomplete.*_SUCCESS"):
        open_source(local, DP_FOLDER, location="dp")


def test_datapipeline_manifest_naming_a_missing_file(local: Storage, items: list[Item]) -> None:
    keys = write_datapipeline_export(local, DP_FOLDER, items, items_per_file=10)
    local.delete(keys[1])
    with pytest.raises(BackupCorrupt, match="manifest: entry 2 .* is missing"):
        open_source(local, DP_FOLDER, location="dp")


def test_unrelated_folders_are_not_claimed(local: Storage) -> None:
    local.put_bytes("plain/readme.txt", b"hello")
    assert formats_native.detect(local, "plain/", location="p") is None
    assert formats_datapipeline.detect(local, "plain/", location="p") is None


# --- S3 ---------------------------------------------------------------------------------------


def test_every_format_reads_back_from_s3(s3_bucket: S3Bucket, items: list[Item]) -> None:
    storage = open_storage(s3_bucket.url + "/root")
    write_native_export(storage, "native/", items)
    write_native_export(storage, "moto/", items, with_manifests=False)
    write_datapipeline_export(storage, DP_FOLDER, items, items_per_file=10)
    for prefix, kind in [("native/", "native-export"), ("moto/", "native-export")]:
        source = open_source(storage, prefix, location=prefix)
        assert source.kind == kind and same_items(read_all(source), items)
    source = open_source(storage, DP_FOLDER, location="dp")
    assert source.kind == "datapipeline" and same_items(read_all(source), items)
    dest = open_storage(s3_bucket.url + "/repo")
    ref = convert(source, dest=dest, table_name="orders", schema_description=_schema())
    assert verify(dest, ref).ok
    back = open_source(dest, ref.prefix, location=str(ref))
    assert same_items(read_all(back), items)


# --- corruption -------------------------------------------------------------------------------


def _native(local: Storage, items: list[Item]) -> Source:
    folder = write_native_export(local, "e/", items, files=1)
    source = formats_native.detect(local, folder, location="e")
    assert source is not None
    return source


def test_corrupted_file_fails_its_md5(local: Storage, items: list[Item]) -> None:
    source = _native(local, items)
    (f,) = source.files
    data = bytearray(local.get_bytes(f.key))
    data[len(data) // 2] ^= 0x01
    local.put_bytes(f.key, bytes(data))
    with pytest.raises(BackupCorrupt, match=f"{f.key}: md5 mismatch"):
        sources.check_file(source, f, schema=PK)


def test_truncated_gzip(local: Storage, items: list[Item]) -> None:
    source = _native(local, items)
    (f,) = source.files
    local.put_bytes(f.key, local.get_bytes(f.key)[:-20])
    bare = dataclasses.replace(source, files=[sources.SourceFile(key=f.key)])
    with pytest.raises(BackupCorrupt, match=f"{f.key}: (truncated gzip|not a valid gzip)"):
        list(sources.iter_items(bare, bare.files[0], schema=PK))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"{not json\n", "line 3: "),
        (b'{"Item":{"id":{"S":"no pk"}}}\n', "line 3: key attribute 'pk' is missing"),
        (b'{"Item":{"pk":{"N":"1"}}}\n', "line 3: key attribute 'pk' is N, the schema says S"),
    ],
)
def test_bad_native_lines_name_file_and_line(local: Storage, bad: bytes, message: str) -> None:
    lines = [b'{"Item":{"pk":{"S":"a"}}}\n', b'{"Item":{"pk":{"S":"b"}}}\n', bad]
    local.put_bytes("m/AWSDynamoDB/u/data/f.gz", gzip.compress(b"".join(lines)))
    source = formats_native.detect(local, "m/", location="m")
    assert source is not None
    with pytest.raises(BackupCorrupt, match=f"m/AWSDynamoDB/u/data/f.gz {message}"):
        sources.check_file(source, source.files[0], schema=PK)


def test_bad_datapipeline_line_names_file_and_line(local: Storage) -> None:
    (key,) = write_datapipeline_export(local, "x/", [{"pk": {"S": "a"}}, {"id": {"S": "b"}}])
    source = open_source(local, "x/", location="x")
    with pytest.raises(BackupCorrupt, match=f"{key} line 2: key attribute 'pk' is missing"):
        sources.check_file(source, source.files[0], schema=PK)
    local.put_bytes(key, b'{"pk":{"s":"a"}}\n{"pk":{"q":"b"}}\n')
    with pytest.raises(BackupCorrupt, match=f"{key} line 2: attribute 'pk': unknown type key"):
        sources.check_file(source, source.files[0], schema=PK)


def test_a_bad_nested_value_names_file_line_and_path(local: Storage) -> None:
    """Values are checked at every depth as they are read, not by DynamoDB when written."""
    good = b'{"Item":{"pk":{"S":"a"},"m":{"M":{"l":{"L":[{"N":"1"},{"N":"1E+3"}]}}}}}\n'
    bad = good.replace(b'"1E+3"', b'"1E+300"').replace(b'"a"', b'"b"')
    local.put_bytes("m/AWSDynamoDB/u/data/f.gz", gzip.compress(good + bad))
    source = formats_native.detect(local, "m/", location="m")
    assert source is not None
    where = "m/AWSDynamoDB/u/data/f.gz line 2: "
    what = 'attribute "m.l[1]": "N" value "1E+300" is out of DynamoDB\'s range'
    with pytest.raises(BackupCorrupt, match=re.escape(where + what)):
        sources.check_file(source, source.files[0], schema=PK)


# --- convert ----------------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    return schema_from_key("orders", PK)


def test_schema_from_key() -> None:
    assert schema_from_key("t1", KeySchema.parse("id:S,at:N")) == {
        "TableName": "t1",
        "KeySchema": [
            {"AttributeName": "id", "KeyType": "HASH"},
            {"AttributeName": "at", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "at", "AttributeType": "N"},
        ],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
    }
    assert KeySchema.from_description(schema_from_key("t", PK)) == PK


@pytest.mark.parametrize("layout", ["native", "moto", "datapipeline"])
def test_convert_round_trip(local: Storage, tmp_path: Path, items: list[Item], layout: str) -> None:
    if layout == "datapipeline":
        write_datapipeline_export(local, DP_FOLDER, items, items_per_file=10)
        source = open_source(local, DP_FOLDER, location="dp")
    else:
        write_native_export(local, "e/", items, with_manifests=layout == "native", files=3)
        source = open_source(local, "e/", location="e")
    dest = open_storage(str(tmp_path / "repo"))
    now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    ref = convert(
        source, dest=dest, table_name="orders", schema_description=_schema(), clock=lambda: now
    )
    expected_id = {"native": "2024-03-05-07-28-34", "datapipeline": "2017-06-01-00-10-00"}
    assert ref.backup_id == expected_id.get(layout, "2030-01-02-03-04-05")
    report = verify(dest, ref)
    assert report.ok, report.problems
    assert report.items == len(items)
    back = open_source(dest, ref.prefix, location=str(ref))
    assert back.kind == "hippolyte" and back.description == _schema()
    assert back.item_count == len(items)
    assert same_items(read_all(back), items)
    doc = orjson.loads(dest.get_bytes(ref.prefix + manifest.DESCRIPTOR))
    assert doc["backup"]["parameters"]["convertedFrom"] == {
        "kind": source.kind,
        "location": source.location,
    }
    assert formats_native.detect(dest, ref.prefix, location="ours") is None
    again = convert(
        source, dest=dest, table_name="orders", schema_description=_schema(), clock=lambda: now
    )
    assert manifest.parse_backup_id(again.backup_id) == manifest.parse_backup_id(
        ref.backup_id
    ) + dt.timedelta(seconds=1)


def test_convert_stops_on_a_bad_file_and_leaves_nothing(local: Storage, tmp_path: Path) -> None:
    good = [{"pk": {"S": f"k{i}"}} for i in range(20)]
    write_datapipeline_export(local, "x/", good + [{"nopk": {"S": "x"}}], items_per_file=10)
    source = open_source(local, "x/", location="x")
    dest = open_storage(str(tmp_path / "repo"))
    with pytest.raises(BackupCorrupt, match="line 1: key attribute 'pk' is missing"):
        convert(source, dest=dest, table_name="orders", schema_description=_schema())
    assert list(dest.list("")) == []


def test_convert_needs_a_key_schema(local: Storage, items: list[Item], tmp_path: Path) -> None:
    write_native_export(local, "e/", items)
    source = open_source(local, "e/", location="e")
    dest = open_storage(str(tmp_path / "repo"))
    with pytest.raises(ConfigError, match="KeySchema"):
        convert(source, dest=dest, table_name="orders", schema_description={"TableName": "x"})
    assert list(dest.list("")) == []
