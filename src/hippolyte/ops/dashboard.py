"""The dashboard's facts: what the repositories' own catalog and run records say about the
fleet, the runs, the newest plan and the coverage, as plain data for
:func:`hippolyte.core.dashboard_html.render` (the page of ``serve`` at ``/`` and of
``hippolyte dashboard``) and for the metrics ``serve`` seeds at start.

What it reads, per table: the backup folders' names (on S3 one listing of the table's keys,
which also tells which are committed; in a folder the commit markers of the newest ``trend``
committed backups and of the oldest one), and those newest backups' descriptors (a
committed backup never changes, so ``serve`` keeps them in ``memo`` between pages); the
change sets' state; the newest ``runs_shown`` runs' records. Never the 30 descriptors of a
table's whole history, never a data file. With ``discovered`` (``serve``, or
``hippolyte dashboard --discover``) the account's tables add coverage: selected tables with
no backup, tables excluded and why."""

from __future__ import annotations

import datetime as dt
from collections import ChainMap
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hippolyte.adapters.storage import Storage
from hippolyte.core.config import Settings
from hippolyte.core.errors import BackupCorrupt, BackupNotFound, HippolyteError, NotFound
from hippolyte.core.model import BackupRef, Json, Selected
from hippolyte.ops.context import storage_for
from hippolyte.ops.dashboard_coverage import Discovered, known_uncovered
from hippolyte.ops.dashboard_runs import newest_plan, read_runs
from hippolyte.ops.forget import TableListing, table_listing
from hippolyte.ops.status import changes_state, last_run_states, retention_state
from hippolyte.repo import catalog, drills, manifest, runs

FORMAT = "hippolyte-dashboard/1"
TREND = 10  # committed backups in each table's trend
RUNS_SHOWN = 20  # newest runs shown in full
DRILLS_SHOWN = 10  # the newest drills on the page
# tables read at once: the reads are small and many (on S3, one request each), so they
# overlap; the facts of each are the same however many run
READERS = 8


@dataclass(frozen=True, kw_only=True)
class Repository:
    """One repository and the labels of the targets that write to it."""

    url: str
    storage: Storage | None
    targets: list[str]
    error: str | None = None  # the storage could not even be opened


def repositories(settings: Settings) -> list[Repository]:
    """Every distinct repository of the targets, in the order of their URLs."""
    found: dict[str, Repository] = {}
    for target in settings.effective_targets():
        try:
            storage = storage_for(settings, target)
        except HippolyteError as exc:
            url = settings.repository_for(target) or "(no repository)"
            found.setdefault(url, Repository(url=url, storage=None, targets=[], error=str(exc)))
            found[url].targets.append(target.label)
            continue
        found.setdefault(storage.url, Repository(url=storage.url, storage=storage, targets=[]))
        found[storage.url].targets.append(target.label)
    return [found[url] for url in sorted(found)]


def gather(
    settings: Settings,
    *,
    now: dt.datetime,
    discovered: Discovered | None = None,
    memo: MutableMapping[str, Json] | None = None,
    trend: int = TREND,
    runs_shown: int = RUNS_SHOWN,
) -> Json:
    """The dashboard's plain data. A repository that cannot be read is named in ``errors``
    with the reason; the others are still shown."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "generatedAt": manifest.iso(now),
        "rpoHours": settings.rpo_hours,
        "repositories": [],
        "unreadable": [],  # the repositories that could not be read (named in errors)
        "errors": list(discovered.errors) if discovered else [],
        "tables": [],
        "runs": [],
        "runCount": 0,
        "plan": None,
        "coverage": {"discovered": discovered is not None, "uncovered": [], "excluded": []},
        "drills": [],
    }
    kept = {} if memo is None else memo
    # this page's reads go to the first map: after it, ``memo`` keeps only the facts still
    # shown (a backup forgotten or gone out of the trend drops out; serve runs for months)
    reads: ChainMap[str, Json] = ChainMap({}, dict(kept))
    for repo in repositories(settings):
        doc["repositories"].append(repo.url)
        if repo.storage is None:
            doc["errors"].append(f"repository {repo.url}: {repo.error}")
            doc["unreadable"].append(repo.url)
            continue
        try:
            _read_repository(doc, repo, repo.storage, settings, now, discovered, reads, trend)
            found = runs.run_ids(repo.storage)
            doc["runCount"] += len(found)
            doc["runs"] += read_runs(repo.storage, found, shown=runs_shown)
            if doc["plan"] is None:
                doc["plan"] = newest_plan(repo.storage, found)
            doc["drills"] += recent_drills(repo.storage)
        except HippolyteError as exc:
            doc["errors"].append(f"cannot read repository {repo.url}: {exc}")
            doc["unreadable"].append(repo.url)
    kept.clear()
    kept.update(reads.maps[0])
    doc["runs"].sort(key=lambda r: r["id"], reverse=True)
    doc["runs"] = doc["runs"][:runs_shown]
    doc["drills"] = sorted(doc["drills"], key=lambda d: d["at"], reverse=True)[:DRILLS_SHOWN]
    if discovered is None:
        doc["coverage"]["uncovered"] = known_uncovered(doc)
    return doc


def _read_repository(
    doc: dict[str, Any],
    repo: Repository,
    storage: Storage,
    settings: Settings,
    now: dt.datetime,
    discovered: Discovered | None,
    memo: MutableMapping[str, Json],
    trend: int,
) -> None:
    target = ", ".join(repo.targets)
    in_repo = catalog.tables(storage)
    selection = _selection(repo.targets, discovered)
    last_run = last_run_states(storage)
    drills = last_drills(storage)
    names = sorted(set(in_repo) | {n for n, s in selection.items() if s.selected})
    with ThreadPoolExecutor(READERS, thread_name_prefix="hippolyte-dashboard") as pool:
        # the first error is raised here, and the pool then shut down
        rows = list(
            pool.map(
                lambda name: table_row(
                    storage, name, now=now, settings=settings, memo=memo, trend=trend
                ),
                names,
            )
        )
    for name, row in zip(names, rows, strict=True):
        sel = selection.get(name)
        row.update(
            target=target,
            targets=repo.targets,
            repository=repo.url,
            selected=None if sel is None else sel.selected,
            reason=None if sel is None else sel.reason,
            lastRun=last_run.get(name),
            lastDrill=drills.get(name),
        )
        row["state"] = table_state(row, rpo_hours=settings.rpo_hours)
        if row["state"] == "missing" and discovered and discovered.is_empty(repo.targets[0], name):
            row["state"] = "empty"
        if row["state"] == "excluded" and row["lastBackup"] is None:
            continue  # shown under coverage, not in the fleet
        doc["tables"].append(row)
    for name, sel in sorted(selection.items()):
        if not sel.selected:
            doc["coverage"]["excluded"].append(
                {"table": name, "target": target, "reason": sel.reason}
            )
    why = {"missing": "selected, never backed up", "empty": "selected, empty: nothing to back up"}
    doc["coverage"]["uncovered"] += [
        {"table": r["table"], "target": target, "reason": why[r["state"]]}
        for r in doc["tables"]
        if r["repository"] == repo.url and r["state"] in why
    ]


def _selection(targets: Sequence[str], discovered: Discovered | None) -> dict[str, Selected]:
    if discovered is None:
        return {}
    return {s.table.name: s for label in targets for s in discovered.tables.get(label, [])}


def table_row(
    storage: Storage,
    table: str,
    *,
    now: dt.datetime,
    settings: Settings,
    memo: MutableMapping[str, Json],
    trend: int = TREND,
) -> dict[str, Any]:
    """One table's facts from the repository: its newest committed backup, the trend of its
    newest ``trend`` committed backups, its change capture and its restorable range."""
    # with [retention], the policy needs the whole listing: read it once for all that follows
    listed = table_listing(storage, table) if settings.retention is not None else None
    ids, committed = _committed(storage, table, listed)
    newest: list[tuple[str, Json]] = []  # newest first
    for bid in reversed(ids):
        if len(newest) == trend:
            break
        if committed(bid):
            ref = BackupRef(repo=storage.url, table=table, backup_id=bid)
            newest.append((bid, _facts(storage, ref, memo)))
    row: dict[str, Any] = {"table": table, "lastBackup": None, "ageHours": None, "backups": 0}
    row.update(items=None, bytes=None, durationS=None, engine=None, trend=[], changes=None)
    row.update(kept=None, oldestRestorable=None, restorableUntil=None, unreadable=None)
    if newest:
        bid, facts = newest[0]
        row.update(
            lastBackup=bid,
            ageHours=round((now - manifest.parse_backup_id(bid)).total_seconds() / 3600, 2),
            items=facts.get("items"),
            bytes=facts.get("bytes"),
            durationS=facts.get("durationS"),
            engine=facts.get("engine"),
            unreadable=facts.get("error"),
            trend=[[f.get("durationS"), f.get("bytes")] for _, f in reversed(newest)],
        )
        bounds = _range(
            storage, table, ids, committed, newest[0][0], settings=settings, now=now, listed=listed
        )
        row.update(bounds)
    state = changes_state(
        storage, table, now=now, lag_limit_s=settings.capture_lag_seconds, listed=listed
    )
    if state is not None:
        row["changes"] = {
            "changeSets": state.change_sets,
            "until": manifest.iso(state.changes_until),
            "lagSeconds": state.lag_seconds,
            "lagLimitSeconds": state.lag_limit_seconds,
            "gaps": len(state.gaps),
            "ok": state.ok,
        }
        if state.ok and row["lastBackup"] is not None:
            row["restorableUntil"] = manifest.iso(state.changes_until)
    return row


def _committed(
    storage: Storage, table: str, listed: TableListing | None = None
) -> tuple[list[str], Callable[[str], bool]]:
    """A table's backup ids, oldest first, and whether one is committed: from ``listed`` when
    read already; else on S3 from one listing of the table's keys (a request per 1,000 keys,
    not a HEAD per backup); in a folder each marker is looked up when asked (a stat), the
    newest and oldest only."""
    if listed is not None:
        done = {b.id: b.complete for b in listed.backups}
        return sorted(done), done.__getitem__
    if storage.bucket is not None:
        done = catalog.completeness(storage, table)
        return sorted(done), done.__getitem__

    def committed(bid: str) -> bool:
        return catalog.is_complete(storage, BackupRef(repo=storage.url, table=table, backup_id=bid))

    return catalog.backup_ids(storage, table), committed


def _range(
    storage: Storage,
    table: str,
    ids: list[str],
    committed: Callable[[str], bool],
    newest: str,
    *,
    settings: Settings,
    now: dt.datetime,
    listed: TableListing | None = None,
) -> Json:
    """How many committed backups, how many ``[retention]`` keeps, and the restorable range:
    from the oldest (kept) committed backup to the newest (or to its changes' end)."""
    until = manifest.iso(manifest.parse_backup_id(newest))
    if settings.retention is not None:
        count, kept, oldest = retention_state(
            storage, table, settings.retention, now=now, listed=listed
        )
        first = manifest.iso(oldest) if oldest else None
        return {"backups": count, "kept": kept, "oldestRestorable": first, "restorableUntil": until}
    # without [retention], count the backups by their folders and look for the oldest marker
    # from the oldest folder on: one existence check in the usual case, not one per backup
    for bid in ids:
        if committed(bid):
            first = manifest.iso(manifest.parse_backup_id(bid))
            return {"backups": len(ids), "oldestRestorable": first, "restorableUntil": until}
    return {"backups": len(ids)}


def _facts(storage: Storage, ref: BackupRef, memo: MutableMapping[str, Json]) -> Json:
    """A committed backup's size, items, duration and engine (kept in ``memo``: a committed
    backup never changes)."""
    key = f"{storage.url}/{ref.prefix}"
    if key in memo:
        memo[key] = found = memo[key]  # still in use: kept for the next page
        return found
    try:
        backup = catalog.load_descriptor(storage, ref)["backup"]
        facts: Json = {
            "items": backup.get("itemCount"),
            "bytes": backup.get("rawBytes"),
            "durationS": backup.get("durationSeconds"),
            "engine": (backup.get("parameters") or {}).get("engine"),
        }
    except BackupNotFound:
        facts = {"engine": "datapipeline (EMR)"}  # the EMR connector's format: no descriptor
        if not storage.exists(ref.prefix + "manifest"):
            facts = {"error": f"committed, but {manifest.DESCRIPTOR} is missing"}
    except (BackupCorrupt, NotFound, KeyError, TypeError) as exc:
        facts = {"error": f"unreadable descriptor: {exc}"}
    memo[key] = facts
    return facts


def table_state(row: Mapping[str, Any], *, rpo_hours: float) -> str:
    """ok | late | missing (selected, no backup) | excluded (not selected: shown, not
    judged) | unreadable; ``gather`` tells "empty" (selected, no backup, holds nothing) from
    missing. Without discovery every table of the repository is judged."""
    if row.get("selected") is False:
        return "excluded"
    if row["lastBackup"] is None:
        return "missing"
    if row.get("unreadable"):
        return "unreadable"
    return "ok" if row["ageHours"] <= rpo_hours else "late"


def recent_drills(storage: Storage, shown: int = 10) -> list[Json]:
    """The newest drills (``@drills/``), each with every table's outcome and RTO."""
    return [
        {
            "id": d.id,
            "at": d.at.isoformat(),
            "ok": d.ok,
            "target": d.target,
            "tables": [
                {"table": t.table, "backup": t.backup, "ok": t.ok, "items": t.items,
                 "secondsPerGb": t.seconds_per_gb, "error": t.error, "deleted": t.deleted,
                 "kept": t.kept}
                for t in d.tables
            ],
        }
        for d in drills.read_all(storage)[-shown:]
    ]  # fmt: skip


def last_drills(storage: Storage) -> dict[str, Json]:
    """Each table's last restore drill, from the drill records (``@drills/``):
    ``{"at", "ok", "secondsPerGb"}`` (the page shows ``-`` for a table with none)."""
    return {
        table: {"at": d.at.isoformat(), "ok": t.ok, "secondsPerGb": t.seconds_per_gb}
        for table, (d, t) in drills.last_drills(storage).items()
    }
