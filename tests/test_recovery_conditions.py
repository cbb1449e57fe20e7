"""The condition of a recovery's write, checked by the servers themselves: for any item, the
condition built from it holds on that item as stored, and fails once any attribute or any
leaf inside it changes. Plain conditions (equality of each attribute) on DynamoDB Local,
AWS's engine; leaf-by-leaf conditions on both servers (dynalite cannot compare maps or
lists). Also the pure parts: limits, the diff file and the keys file."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippolyte.adapters import aws, dynamodb, dynamodb_items
from hippolyte.core.recovery import (
    MAX_OPERATORS,
    Action,
    Uncheckable,
    condition_for,
    needed,
    parse_diff_file,
    parse_key_line,
)
from tests.corpus import attributes, values
from tests.helpers import Db, db_for
from tests.support.servers import Server

KEY = (("pk", "S"),)
_ids = itertools.count()


def _wire(item: dict[str, Any]) -> bytes:
    return dynamodb.encode_item(item)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every leaf of an attribute value, for changing one."""
    ((tag, inner),) = value.items()
    if tag == "M":
        return [p for k, v in inner.items() for p in _leaves(v, (*path, "M", k))] or [path]
    if tag == "L":
        return [p for i, v in enumerate(inner) for p in _leaves(v, (*path, "L", i))] or [path]
    return [path]


def _changed(value: Any, path: tuple[Any, ...]) -> Any:
    """``value`` with the leaf at ``path`` replaced by a string no generated value holds."""
    out = copy.deepcopy(value)
    if not path:
        return {"S": "\x00changed"}
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = {"S": "\x00changed"}
    return out


@pytest.fixture(scope="module")
def tables(dynalite: Server, dynamodb_local: Server) -> dict[str, tuple[Db, str]]:
    out = {}
    for name, server in (("dynalite", dynalite), ("dynamodb_local", dynamodb_local)):
        db = db_for(server)
        out[name] = (db, db.table(key=KEY, prefix="cond"))
    yield out
    for db, table in out.values():
        db.client.delete_table(TableName=table)


def _holds(db: Db, table: str, item: bytes, condition: Any) -> bool:
    conn = aws.Connection(region="us-east-1", endpoint_url=db.server.endpoint_url)
    client = dynamodb_items.item_client(conn, pool=1)
    try:
        return dynamodb_items.put(client, table=table, item=item, condition=condition) is not None
    finally:
        client.close()


@pytest.mark.servers
@pytest.mark.parametrize(
    ("server", "flat"), [("dynamodb_local", False), ("dynamodb_local", True), ("dynalite", True)]
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(attrs=attributes.filter(bool), data=st.data())
def test_the_condition_holds_on_the_item_and_fails_on_any_change(
    tables: dict[str, tuple[Db, str]], server: str, flat: bool, attrs: dict[str, Any], data: Any
) -> None:
    db, table = tables[server]
    item = {"pk": {"S": f"k{next(_ids)}"}, **attrs}
    db.client.put_item(TableName=table, Item=item)
    stored = db.client.get_item(TableName=table, Key={"pk": item["pk"]}, ConsistentRead=True)
    seen = _wire(stored["Item"])
    try:
        condition = condition_for(seen, spec=KEY, flat=flat)
    except Uncheckable:
        return
    assert _holds(db, table, seen, condition)  # unchanged (written back as it was)
    name = data.draw(st.sampled_from(sorted(attrs)))
    path = data.draw(st.sampled_from(_leaves(attrs[name])))
    db.client.put_item(TableName=table, Item={**item, name: _changed(attrs[name], path)})
    assert not _holds(db, table, seen, condition)


@pytest.mark.servers
@pytest.mark.parametrize("server", ["dynalite", "dynamodb_local"])
def test_absent_means_absent(tables: dict[str, tuple[Db, str]], server: str) -> None:
    db, table = tables[server]
    item = _wire({"pk": {"S": f"absent{next(_ids)}"}, "v": {"N": "1"}})
    condition = condition_for(None, spec=KEY)
    assert _holds(db, table, item, condition)
    assert not _holds(db, table, item, condition)  # it exists now


def test_a_condition_stays_inside_dynamodbs_limits() -> None:
    wide = _wire({"pk": {"S": "w"}, **{f"a{i}": {"N": str(i)} for i in range(MAX_OPERATORS)}})
    with pytest.raises(Uncheckable, match="--version-attribute"):
        condition_for(wide, spec=KEY)
    only = condition_for(
        _wire({"pk": {"S": "w"}, "ver": {"N": "3"}, **{f"a{i}": {"N": "1"} for i in range(400)}}),
        spec=KEY,
        version_attribute="ver",
    )
    assert only.expression == "#n0 = :v0" and only.names == {"#n0": "ver"}
    narrow = condition_for(
        _wire({"pk": {"S": "w"}, "a": {"L": [{"M": {"b": {"S": "x"}}}]}}), spec=KEY, flat=True
    )
    assert "#n0[0].#n1 = " in narrow.expression and "size(#n0[0]) = " in narrow.expression


@given(value=values, other=values)
def test_needed_is_dynamodb_equality(value: Any, other: Any) -> None:
    a, b = _wire({"pk": {"S": "x"}, "v": value}), _wire({"pk": {"S": "x"}, "v": other})
    assert not needed(a, a) and not needed(None, None)
    assert needed(a, None) and needed(None, a)
    respelled = orjson.dumps(dict(reversed(list(orjson.loads(a).items()))))
    assert not needed(a, respelled)
    assert Action(key=b"{}", target=a, seen=b).undone() == Action(key=b"{}", target=b, seen=a)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"kind":"changed","key":{"pk":{"S":"a"}},"attributes":[]}\n', "--keys-only"),
        (b'{"kind":"moved","key":{"pk":{"S":"a"}}}\n', 'line 1: "kind" must be'),
        (
            b'{"kind":"deleted","key":{"pk":{"S":"a"}},"before":null,"after":null}\n',
            "line 1: a deleted",
        ),
        (b"not json\n", "line 1: not JSON"),
        (
            b'{"kind":"added","key":{"pk":{"S":"a"}},"before":null,"after":{"pk":{"S":"a"}}}\n',
            "no summary line",
        ),
        (b'{"summary":{}}\n{"kind":"added"}\n', "line 2: a difference after the summary"),
    ],
)
def test_a_bad_diff_file_is_named_by_line(text: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_diff_file(iter(text.splitlines(keepends=True)), where="d.jsonl")


def test_a_keys_line_must_be_a_key_of_the_table() -> None:
    spec = (("pk", "S"), ("sk", "N"))
    assert parse_key_line(b'{"pk":{"S":"a"},"sk":{"N":"1.50"}}', spec, where="k") == b'["a","1.5"]'
    for line, message in [
        (b"[1]", "not a JSON object"),
        (b'{"pk":{"S":"a"}}', "'sk' is missing"),
        (b'{"pk":{"S":"a"},"sk":{"S":"1"}}', "'sk' is of type S"),
        (b'{"pk":{"S":"a"},"sk":{"N":"1"},"x":{"S":"1"}}', "'x' is not a key attribute"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_key_line(line, spec, where="keys line 3")
