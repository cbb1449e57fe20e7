"""The demo's bad deploy on the orders table, `diff` finding exactly what it did, and
`recover` putting it back (then `recover --undo` shown in a dry run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from hippolyte.core.config import Settings
from hippolyte.core.diff import key_of, normal
from hippolyte.core.errors import BackupFailed
from hippolyte.core.events import Emit, Step
from hippolyte.ops.sample_tables import ORDERS, ORDERS_KEY, order_item


@dataclass(frozen=True, kw_only=True)
class BadDeploy:
    story: list[str]  # what it did, told before the diff
    expected: dict[bytes, tuple[str, tuple[str, ...]]]  # key (canonical) -> kind, attributes
    identical: int  # the items diff must find unchanged


def bad_deploy(client: Any, *, items: int) -> BadDeploy:
    """Change a few orders as a bad deploy would: delete two, change three (a status, a total
    in cents, a city inside the address map), add one, and rewrite one total with only its
    notation changed, which is no change. Returns what diff must find."""
    gone, gone2, status, total, city, same = (items * k // 7 for k in range(1, 7))
    was = order_item(same)["total"]["N"]
    cents = Decimal(order_item(total)["total"]["N"]) * 100
    for i, path, value in (
        (status, "status", {"S": "cancelled"}),
        (total, "total", {"N": str(int(cents))}),
        (city, "address.city", {"S": "undefined"}),
        # DynamoDB Local keeps an update's notation: the live bytes differ from the backup's
        (same, "total", {"N": f"{was}0"}),
    ):
        names = {f"#p{n}": part for n, part in enumerate(path.split("."))}
        client.update_item(
            TableName=ORDERS,
            Key=_order_key(i),
            UpdateExpression=f"SET {'.'.join(names)} = :v",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":v": value},
        )
    for i in (gone, gone2):
        client.delete_item(TableName=ORDERS, Key=_order_key(i))
    client.put_item(TableName=ORDERS, Item=order_item(items))
    changes = [("deleted", gone, ""), ("deleted", gone2, ""), ("changed", status, "status")]
    changes += [("changed", total, "total"), ("changed", city, "address"), ("added", items, "")]
    return BadDeploy(
        story=[
            f"a bad deploy hits {ORDERS}: it deletes 2 orders, changes 3 and adds 1",
            f"it also rewrites order {same}'s total {was} as {was}0: the same number",
        ],
        expected={
            key_of(_order_key(i), ORDERS_KEY): (kind, (name,) if name else ())
            for kind, i, name in changes
        },
        identical=items - 5,  # 2 deleted, 3 changed; the rewritten total is no change
    )


def _order_key(i: int) -> dict[str, Any]:
    return {name: order_item(i)[name] for name, _ in ORDERS_KEY}


def diff_bad_deploy(
    results: list[Any],
    *,
    settings: Settings,
    storage: Any,
    client: Any,
    items: int,
    out: Path,
    emit: Emit,
    before: Callable[[Any], None] = lambda ref: None,
) -> tuple[dict[str, Any], BadDeploy]:
    """Play the bad deploy (``before`` is called first, with the backup's ref), diff the
    orders' backup against the live table into ``out``, tell what diff found, and check it is
    exactly what the deploy did."""
    from hippolyte.formats.open import open_source
    from hippolyte.ops.diff import DiffParams, diff_live

    ref = next((r.ref for r in results if r.table == ORDERS and r.ref is not None), None)
    if ref is None:
        raise BackupFailed(f"no backup of {ORDERS} to compare the live table with")
    before(ref)
    deploy = bad_deploy(client, items=items)
    for line in deploy.story:
        emit(Step(text=line))
    emit(Step(text=f"running hippolyte diff {ref} --live ..."))
    params = DiffParams(
        read_percent=settings.read_percent,
        on_demand_read_units=settings.on_demand_read_units,
        workers=settings.workers,
        page_attempts=settings.max_attempts,
    )
    conn = settings.effective_targets()[0].connection()
    source = open_source(storage, ref.prefix, location=f"{ref.repo}/{ref}")  # as REF opens
    with out.open("wb") as sink:
        result = diff_live(
            source, conn=conn, table=ORDERS, schema=None, params=params, out=sink, emit=emit
        )
    s = result.summary
    found = {
        key_of(orjson.loads(d.key), ORDERS_KEY): (str(d.kind), tuple(d.attributes))
        for d in result.first
    }
    matches = found == deploy.expected and s.identical == deploy.identical
    matches = matches and len(result.first) == s.differences
    for line in _diff_lines(result, matches=matches, out=out):
        emit(Step(text=line))
    return {
        "backup": str(ref),
        "deleted": s.deleted,
        "added": s.added,
        "changed": s.changed,
        "identical": s.identical,
        "file": str(out),
        "matches": matches,
    }, deploy


def _diff_lines(result: Any, *, matches: bool, out: Path) -> list[str]:
    """What diff found, as the demo tells it: the counts, then each difference with its key
    and, for a changed item, each value that differs (down to the leaf of a nested map)."""
    s = result.summary
    lines = [
        f"diff found {s.deleted} deleted, {s.added} added, {s.changed} changed and "
        f"{s.identical:,} identical items:"
    ]
    rank = {"deleted": 0, "changed": 1, "added": 2}
    for d in sorted(result.first, key=lambda d: (rank[d.kind], _order_number(d.key))):
        key = " ".join(f"{n}={v}" for n, tv in orjson.loads(d.key).items() for v in tv.values())
        if d.kind != "changed":
            lines.append(f"  {d.kind:<7} {key}")
            continue
        before, after = orjson.loads(d.before), orjson.loads(d.after)
        for name in d.attributes:
            lines += [
                f"  changed {key}: {change}"
                for change in _changes(name, before.get(name), after.get(name))
            ]
    lines.append(
        "exactly what the bad deploy did, and nothing else"
        if matches
        else "NOT what the bad deploy did: the demo FAILED"
    )
    lines.append(f"every difference in full: {out}")
    return lines


def _order_number(key: bytes) -> Decimal:
    return Decimal(orjson.loads(key)["order"]["N"])


def _changes(path: str, old: Any, new: Any) -> Iterator[str]:
    """``path old -> new`` for a value that differs; a map is followed down to its leaves."""
    if old is not None and new is not None and "M" in old and "M" in new:
        for name in sorted(old["M"].keys() | new["M"].keys()):
            a, b = old["M"].get(name), new["M"].get(name)
            if a is None or b is None or normal(a) != normal(b):
                yield from _changes(f"{path}.{name}", a, b)
        return
    yield f"{path} {_value(old)} -> {_value(new)}"


def _value(value: Any, width: int = 40) -> str:
    if value is None:
        return "(absent)"
    ((tag, v),) = value.items()
    text = v if tag == "N" else orjson.dumps(v if tag == "S" else value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def recover_bad_deploy(diff: dict[str, Any], *, settings: Settings, emit: Emit) -> dict[str, Any]:
    """``recover`` from the diff file (deleting the added order too), ``diff`` again, which
    must find nothing, then ``recover --undo`` in a dry run."""
    from hippolyte.ops.context import open_backup
    from hippolyte.ops.diff import DiffParams, diff_live
    from hippolyte.ops.recover import RecoverParams, Selection, recover, undo

    ref = diff["backup"]
    emit(Step(text=f"running hippolyte recover {ref} --from-diff {diff['file']} --delete-added"))
    params = RecoverParams(
        workers=settings.workers,
        on_demand_read_units=settings.on_demand_read_units,
        delete_added=True,
        max_attempts=settings.max_attempts,
    )
    report = recover(
        settings,
        ref,
        table=None,
        selection=Selection(from_diff=Path(diff["file"])),
        params=params,
        emit=emit,
    )
    t = report.tally
    emit(
        Step(
            text=f"recover {report.recovery_id}: put back {t.put_back} orders, deleted "
            f"{t.deleted}; their live versions saved first in @recoveries/"
        )
    )
    emit(
        Step(
            text="recover read them back: "
            + ("identical to the backup" if report.proven else "NOT identical: FAILED")
        )
    )
    again = diff_live(
        open_backup(settings, ref, repo=settings.repository),
        conn=settings.effective_targets()[0].connection(),
        table=ORDERS,
        schema=None,
        params=DiffParams(workers=settings.workers, limit=0),
    )
    emit(
        Step(
            text=f"hippolyte diff {ref} --live again: "
            + ("no difference" if again.identical else f"{again.summary.differences} left")
        )
    )
    emit(Step(text=f"hippolyte recover --undo {report.recovery_id} --dry-run would:"))
    dry = undo(
        settings,
        str(report.recovery_id),
        params=RecoverParams(workers=settings.workers, dry_run=True),
        emit=lambda e: None,
    )
    for a in dry.plan:
        key = " ".join(f"{n}={v}" for n, tv in orjson.loads(a.key).items() for v in tv.values())
        what = "delete" if a.target is None else ("re-create" if a.seen is None else "put back")
        emit(Step(text=f"  {what} {key} as the bad deploy left it"))
    done = t.put_back + t.deleted
    ok = bool(report.proven) and report.ok and again.identical and len(dry.plan) == done
    return {
        "recovery_id": report.recovery_id,
        "put_back": t.put_back,
        "deleted": t.deleted,
        "proven": report.proven,
        "diff_after": again.summary.differences,
        "undo_plan": len(dry.plan),
        "ok": ok,
    }
