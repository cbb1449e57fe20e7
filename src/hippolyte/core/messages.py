"""What the monitor tells people: one value rendered for e-mail, chat and machines. Pure.

A ``Message`` carries the same news four ways: a subject that SNS accepts for e-mail
subscribers (ASCII, one line, under 100 characters), a plain-text body for e-mail, a short
Slack mrkdwn line and a JSON-ready ``data`` dict for webhooks. The adapters in
``hippolyte.adapters.notify`` deliver it; nothing here touches the network.

Besides a run's backups, the monitor checks each captured table's change sets: a gap since
its newest full backup, or changes that stopped arriving (a lag over the threshold), is a
failure of its own (:class:`ChangesCheck`), told with one line per problem.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from hippolyte.core.model import Json, MonitorReport, TableCheck

SUBJECT_MAX = 99  # SNS: "must be less than 100 characters"
SLACK_MAX_TABLES = 10  # chat stays short; the e-mail and the data list every table
TEXT_MAX_TABLES = 2000  # keeps the body well under SNS's 256 KB message limit
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, kw_only=True)
class Message:
    subject: str
    text: str  # plain text for e-mail
    slack_text: str  # Slack mrkdwn, a few lines
    data: Json = field(default_factory=dict)  # JSON-ready; never has a "text" key

    def __post_init__(self) -> None:
        if subject_line(self.subject) != self.subject:
            raise ValueError(f"not a valid e-mail subject: {self.subject!r}")
        if "text" in self.data:
            raise ValueError("data must not have a 'text' key (the webhook's Slack field)")


def subject_line(text: str) -> str:
    """``text`` made into an SNS e-mail subject: ASCII, no control characters, < 100 chars."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    one_line = " ".join(_CONTROL.sub(" ", folded).split())
    if len(one_line) <= SUBJECT_MAX:
        return one_line
    return one_line[: SUBJECT_MAX - 3].rstrip() + "..."


# -- a table's changes ---------------------------------------------------------------------------

GAP_CAUSES = {  # the causes the capture records (engines/capture), told plainly
    "trimmed": "the stream was trimmed before it was read",
    "stream-replaced": "the stream was disabled and enabled again: "
    "the changes in between were never streamed",
    "position-lost": "the capture's position is no longer in its shard",
    "shard-expired": "a shard left the stream before it was read to its end",
    "parent-expired": "a parent shard left the stream before it was read",
}


def gap_explanation(cause: str) -> str:
    """A gap's cause (a code the capture records, or already a sentence) for people."""
    return GAP_CAUSES.get(cause, cause)


@dataclass(frozen=True, kw_only=True)
class ChangesState:
    """How far a table's change sets reach, how far behind they are, and the gaps that break
    its chain since its newest full backup: what ``status`` shows and ``monitor`` checks."""

    change_sets: int
    changes_until: dt.datetime  # the end of the newest change set
    lag_seconds: float  # how long ago that was
    lag_limit_seconds: float  # the threshold (``capture_lag_seconds``)
    gaps: tuple[Json, ...] = ()  # {"from", "to" (ISO), "cause", "explanation"[, "detail"]}
    late: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "late", self.lag_seconds > self.lag_limit_seconds)

    @property
    def ok(self) -> bool:
        return not self.late and not self.gaps


def changes_problems(table: str, state: ChangesState, *, now: dt.datetime) -> list[str]:
    """One line per problem: ``orders: no changes captured since 14:03:07 (lag 912 s,
    threshold 300 s)``, ``orders: gap 14:03:07 -> 14:20:00: the stream was trimmed ...``.
    Times are UTC, with their date when it is not ``now``'s."""
    lines = []
    if state.late:
        lines.append(
            f"{table}: no changes captured since {_clock(state.changes_until, now)} "
            f"(lag {state.lag_seconds:.0f} s, threshold {state.lag_limit_seconds:g} s)"
        )
    for gap in state.gaps:
        start, end = (dt.datetime.fromisoformat(gap[k]) for k in ("from", "to"))
        span = f"{_clock(start, now)} -> {_clock(end, now)}" if end > start else _clock(end, now)
        lines.append(f"{table}: gap {span}: {_one_line(str(gap['explanation']))}")
    return lines


@dataclass(frozen=True, kw_only=True)
class ChangesCheck(TableCheck):
    """The monitor's verdict on a table's change sets (beside its checks of the run's
    backups); ``backup`` names the change sets' folder, ``TABLE/@changes``."""

    changes: ChangesState


def changes_check(
    *, table: str, target: str, state: ChangesState, now: dt.datetime
) -> ChangesCheck:
    problems = [p.removeprefix(f"{table}: ") for p in changes_problems(table, state, now=now)]
    healthy = f"changes until {_clock(state.changes_until, now)} UTC, lag {state.lag_seconds:.0f} s"
    return ChangesCheck(
        table=table,
        target=target,
        ok=not problems,
        reason="; ".join(problems) or healthy,
        backup=f"{table}/@changes",
        changes=state,
    )


def _is_changes(check: TableCheck) -> bool:
    return isinstance(check, ChangesCheck)


def _backups(checks: Iterable[TableCheck]) -> list[TableCheck]:
    """The checks of the run's backups (not of the tables' change sets)."""
    return [c for c in checks if not _is_changes(c)]


def broken_changes(report: MonitorReport) -> list[ChangesCheck]:
    """The tables whose change sets have a gap or are late, by target and name."""
    found = [c for c in report.tables if isinstance(c, ChangesCheck) and not c.ok]
    return sorted(found, key=lambda c: (c.target, c.table))


def _changes_lines(report: MonitorReport) -> list[str]:
    return [
        line
        for c in broken_changes(report)
        for line in changes_problems(c.table, c.changes, now=report.checked_at)
    ]


# -- builders ------------------------------------------------------------------------------------


def for_report(report: MonitorReport) -> Message:
    """The monitor's summary of one run: the failures, or that every table is backed up."""
    if not report.ran:
        return nothing_ran(
            expected_night=report.checked_at.date().isoformat(), repository=report.repository
        )
    failed = _backups(report.failed)
    return Message(
        subject=subject_line(_report_subject(report)),
        text=_report_text(report),
        slack_text=_report_slack(report),
        data=_report_data(report, failed),
    )


def changes_only(report: MonitorReport) -> Message:
    """The problems of the tables' changes, when no run was there to report them with."""
    lines = _changes_lines(report)
    text = "\n".join(
        [
            "Hippolyte found problems in the changes kept between full backups:",
            "",
            *[f"  {line}" for line in lines],
            "",
            f"Repository: {report.repository}",
            "",
            "A gap is closed by the next full backup (hippolyte backup TABLE), which starts a",
            "new chain; a lag means `hippolyte capture` or the incremental exports stopped.",
            _FOOTER,
        ]
    )
    return Message(
        subject=subject_line(f"Hippolyte CHANGES: {len(lines)} problems"),
        text=text,
        slack_text=":warning: *Hippolyte* changes: " + "; ".join(_esc(x) for x in lines),
        data={"kind": "changes", "repository": report.repository, "changes": lines},
    )


def nothing_ran(*, expected_night: str, repository: str) -> Message:
    """No run record exists for the night the monitor expected (the original's second e-mail)."""
    text = "\n".join(
        [
            f"Hippolyte found no backup run for the night of {expected_night}.",
            "",
            f"Repository: {repository}",
            "",
            "The nightly backup did not start, or it stopped before it recorded the run,",
            "so no table of that night has a backup.",
            "",
            "WHAT TO DO",
            "  1. Check the scheduler: `hippolyte serve` logs, cron, or the Lambda's",
            "     CloudWatch logs and its EventBridge rule.",
            "  2. Run the backup now:  hippolyte backup --all",
            "  3. Check it:            hippolyte monitor",
            _FOOTER,
        ]
    )
    return Message(
        subject=subject_line(f"Hippolyte: NOTHING RAN on the night of {expected_night}"),
        text=text,
        slack_text=(
            f":warning: *Hippolyte*: no backup ran on the night of {_esc(expected_night)} "
            f"(repository `{_esc(repository)}`)"
        ),
        data={
            "kind": "nothing_ran",
            "run_id": None,
            "ok": False,
            "ran": False,
            "expected_night": expected_night,
            "repository": repository,
            "counts": {"tables": 0, "ok": 0, "failed": 0},
            "failed": [],
        },
    )


# -- a run's report -------------------------------------------------------------------------------

_FOOTER = "\n-- \nSent by Hippolyte (DynamoDB backups)."


def _report_subject(report: MonitorReport) -> str:
    total, failed = len(_backups(report.tables)), len(_backups(report.failed))
    broken = broken_changes(report)
    where = _single_target(report.tables)
    suffix = f" ({where})" if where else ""
    if failed:
        return f"Hippolyte FAILED: {failed} of {total} tables, run {report.run_id}{suffix}"
    if broken:
        what = broken[0].table if len(broken) == 1 else f"{len(broken)} tables"
        return f"Hippolyte CHANGES: a gap or lag in {what}, run {report.run_id}{suffix}"
    if report.running:
        return f"Hippolyte OK so far: {_progress(report)}, run {report.run_id}{suffix}"
    return f"Hippolyte OK: {total} tables backed up, run {report.run_id}{suffix}"


def _report_text(report: MonitorReport) -> str:
    failed = _backups(report.failed)
    broken = broken_changes(report)
    lines = [_headline(report), "", *_facts(report), ""]
    if failed:
        lines += ["FAILED TABLES", *_failed_block(failed), ""]
    else:
        lines += ["TABLES", *_ok_block(_backups(report.tables)), ""]
    if broken:
        lines += ["CHANGES (times in UTC)", *[f"  {line}" for line in _changes_lines(report)], ""]
    lines += ["CAPACITY AND AUTOSCALING", *_capacity_block(report.capacity), ""]
    if failed:
        lines += ["TO RE-RUN", *_rerun_block(failed, run_id=report.run_id), ""]
    if broken:
        lines += ["TO REPAIR THE CHANGES", *_repair_block(broken)]
    return "\n".join(lines).rstrip() + "\n" + _FOOTER


def _headline(report: MonitorReport) -> str:
    total, failed = len(_backups(report.tables)), len(_backups(report.failed))
    broken = broken_changes(report)
    if failed:
        return f"Hippolyte: {failed} of {total} tables failed in backup run {report.run_id}."
    if broken:
        done = _progress(report) if report.running else f"all {total} tables were backed up"
        return (
            f"Hippolyte: {done} in run {report.run_id}, but the changes of {len(broken)} "
            "tables have a gap or stopped arriving."
        )
    if report.running:
        return f"Hippolyte: {_progress(report)} in run {report.run_id}; none failed."
    return f"Hippolyte: all {total} tables were backed up in run {report.run_id}."


def _facts(report: MonitorReport) -> list[str]:
    return [
        f"Checked:    {_when(report.checked_at)}",
        f"Repository: {report.repository}",
        f"Logs:       {logs_location(report)}",
    ]


def logs_location(report: MonitorReport) -> str:
    """Where the run's record and logs are (the monitor names the run's folder), else the
    repository."""
    return report.logs or report.repository


def _failed_block(failed: list[TableCheck]) -> list[str]:
    lines: list[str] = []
    shown = failed[:TEXT_MAX_TABLES]
    for target, by_pipeline in _grouped(shown).items():
        lines.append(f"Target {target}")
        width = min(max(len(c.table) for cs in by_pipeline.values() for c in cs), 40)
        for pipeline, checks in by_pipeline.items():
            lines.append(f"  {_pipeline_label(pipeline)}")
            lines += [f"    {c.table:<{width}}  {_one_line(c.reason)}" for c in checks]
    if len(failed) > len(shown):
        lines.append(f"... and {len(failed) - len(shown)} more (see the run's record)")
    return lines


def _ok_block(tables: list[TableCheck]) -> list[str]:
    if not tables:
        return ["  (the run selected no tables)"]
    counts: dict[str, list[int]] = {}
    for check in tables:
        counts.setdefault(check.target, [0, 0])[1 if check.running else 0] += 1
    return [
        f"  Target {target}: {done} tables committed"
        + (f", {running} still running (Data Pipeline)" if running else "")
        for target, (done, running) in sorted(counts.items())
    ]


def _progress(report: MonitorReport) -> str:
    total, running = len(_backups(report.tables)), len(report.running)
    return f"{total - running} of {total} tables backed up, {running} still running"


def _capacity_block(capacity: list[str]) -> list[str]:
    if not capacity:
        return ["  Nothing left to revert."]
    return [f"  {_one_line(line)}" for line in capacity]


def _rerun_block(failed: list[TableCheck], *, run_id: str | None) -> list[str]:
    lines: list[str] = []
    for target, by_pipeline in _grouped(failed).items():
        names = sorted({c.table for checks in by_pipeline.values() for c in checks})
        lines.append(f"  Target {target}:")
        lines.append(f"    hippolyte backup {' '.join(names)}")
    if run_id:
        lines.append(f"  Then check again:  hippolyte monitor --run {run_id}")
    return lines


def _repair_block(broken: list[ChangesCheck]) -> list[str]:
    gapped = sorted({c.table for c in broken if c.changes.gaps})
    late = sorted({c.table for c in broken if c.changes.late})
    lines = []
    if gapped:
        lines += [
            "  A gap is closed by the next full backup, which starts a new chain:",
            f"    hippolyte backup {' '.join(gapped)}",
        ]
    if late:
        lines += [
            "  Changes stopped arriving: check that the capture runs (`hippolyte capture`,",
            "  `serve` with [capture], the Lambda's stream trigger) or that",
            "  `backup --incremental` is scheduled; then check again:",
            f"    hippolyte capture {' '.join(late)}",
        ]
    return lines


def _grouped(checks: Iterable[TableCheck]) -> dict[str, dict[int | None, list[TableCheck]]]:
    """target -> pipeline -> checks, targets and tables by name, pipelines by number (None last)."""
    groups: dict[str, dict[int | None, list[TableCheck]]] = {}
    for check in sorted(checks, key=lambda c: (c.target, _pipeline_key(c.pipeline), c.table)):
        groups.setdefault(check.target, {}).setdefault(check.pipeline, []).append(check)
    return groups


def _ordered(checks: Iterable[TableCheck]) -> list[TableCheck]:
    return [c for group in _grouped(checks).values() for cs in group.values() for c in cs]


def _pipeline_key(pipeline: int | None) -> tuple[bool, int]:
    return (pipeline is None, pipeline or 0)


def _pipeline_label(pipeline: int | None) -> str:
    return "Not in a pipeline" if pipeline is None else f"Pipeline {pipeline}"


def _single_target(tables: list[TableCheck]) -> str | None:
    targets = {t.target for t in tables}
    return targets.pop() if len(targets) == 1 else None


def _report_slack(report: MonitorReport) -> str:
    failed = _backups(report.failed)
    total = len(_backups(report.tables))
    run = f"run `{_esc(report.run_id or '?')}`"
    done = _progress(report) if report.running else f"all {total} tables backed up"
    changes = _changes_lines(report)
    if not failed and not changes:
        return f":white_check_mark: *Hippolyte*: {done}, {run}"
    if failed:
        lines = [f":x: *Hippolyte*: {len(failed)} of {total} tables failed, {run}"]
    else:
        lines = [f":warning: *Hippolyte*: {done}, {run}; changes with a gap or lag:"]
    for c in _ordered(failed)[:SLACK_MAX_TABLES]:
        where = f"pipeline {c.pipeline}, " if c.pipeline is not None else ""
        lines.append(
            f"\u2022 `{_esc(c.table)}` ({where}{_esc(c.target)}): {_esc(_one_line(c.reason))}"
        )
    if len(failed) > SLACK_MAX_TABLES:
        lines.append(f"_and {len(failed) - SLACK_MAX_TABLES} more_")
    lines += [f"\u2022 {_esc(line)}" for line in changes[:SLACK_MAX_TABLES]]
    if len(changes) > SLACK_MAX_TABLES:
        lines.append(f"_and {len(changes) - SLACK_MAX_TABLES} more about changes_")
    lines.append(f"Logs: `{_esc(logs_location(report))}`")
    return "\n".join(lines)


def _report_data(report: MonitorReport, failed: list[TableCheck]) -> Json:
    return {
        "kind": "report",
        "run_id": report.run_id,
        "ok": report.ok,
        "ran": True,
        "checked_at": report.checked_at.isoformat(),
        "repository": report.repository,
        "logs": logs_location(report),
        "counts": {
            "tables": len(_backups(report.tables)),
            "ok": len(_backups(report.tables)) - len(failed) - len(report.running),
            "failed": len(failed),
            # only for a run on Data Pipeline with exports still running
            **({"running": len(report.running)} if report.running else {}),
        },
        "failed": [
            {
                "table": c.table,
                "target": c.target,
                "pipeline": c.pipeline,
                "reason": c.reason,
                "backup": c.backup,
            }
            for c in _ordered(failed)
        ],
        "capacity": list(report.capacity),
        **({"changes": _changes_data(report)} if broken_changes(report) else {}),
    }


def _changes_data(report: MonitorReport) -> list[Json]:
    return [
        {
            "table": c.table,
            "target": c.target,
            "changes_until": c.changes.changes_until.isoformat(),
            "lag_seconds": c.changes.lag_seconds,
            "lag_limit_seconds": c.changes.lag_limit_seconds,
            "late": c.changes.late,
            "gaps": [dict(g) for g in c.changes.gaps],
            "problems": changes_problems(c.table, c.changes, now=report.checked_at),
        }
        for c in broken_changes(report)
    ]


# -- small helpers -------------------------------------------------------------------------------


def _when(at: dt.datetime) -> str:
    if at.tzinfo is None:
        return at.strftime("%Y-%m-%d %H:%M:%S")
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(at: dt.datetime, now: dt.datetime) -> str:
    """A UTC time of day, with its date when it is not ``now``'s."""
    at = at.astimezone(dt.UTC)
    same_day = at.date() == now.astimezone(dt.UTC).date()
    return at.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")


def _one_line(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())


def _esc(text: str) -> str:
    """Slack mrkdwn: only &, < and > need escaping."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
