"""What the monitor tells people: one value rendered for e-mail, chat and machines. Pure.

A ``Message`` carries the same news four ways: a subject that SNS accepts for e-mail
subscribers (ASCII, one line, under 100 characters), a plain-text body for e-mail, a short
Slack mrkdwn line and a JSON-ready ``data`` dict for webhooks. The adapters in
``hippolyte.adapters.notify`` deliver it; nothing here touches the network.
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


# -- builders ------------------------------------------------------------------------------------


def for_report(report: MonitorReport) -> Message:
    """The monitor's summary of one run: the failures, or that every table is backed up."""
    if not report.ran:
        return nothing_ran(
            expected_night=report.checked_at.date().isoformat(), repository=report.repository
        )
    failed = report.failed
    return Message(
        subject=subject_line(_report_subject(report)),
        text=_report_text(report),
        slack_text=_report_slack(report),
        data=_report_data(report, failed),
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
    total, failed = len(report.tables), len(report.failed)
    where = _single_target(report.tables)
    suffix = f" ({where})" if where else ""
    if failed:
        return f"Hippolyte FAILED: {failed} of {total} tables, run {report.run_id}{suffix}"
    if report.running:
        return f"Hippolyte OK so far: {_progress(report)}, run {report.run_id}{suffix}"
    return f"Hippolyte OK: {total} tables backed up, run {report.run_id}{suffix}"


def _report_text(report: MonitorReport) -> str:
    failed = report.failed
    lines = [_headline(report), "", *_facts(report), ""]
    if failed:
        lines += ["FAILED TABLES", *_failed_block(failed), ""]
    else:
        lines += ["TABLES", *_ok_block(report.tables), ""]
    lines += ["CAPACITY AND AUTOSCALING", *_capacity_block(report.capacity), ""]
    if failed:
        lines += ["TO RE-RUN", *_rerun_block(failed, run_id=report.run_id)]
    return "\n".join(lines).rstrip() + "\n" + _FOOTER


def _headline(report: MonitorReport) -> str:
    total, failed = len(report.tables), len(report.failed)
    if failed:
        return f"Hippolyte: {failed} of {total} tables failed in backup run {report.run_id}."
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
    total, running = len(report.tables), len(report.running)
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
    failed = report.failed
    run = f"run `{_esc(report.run_id or '?')}`"
    if not failed:
        done = _progress(report) if report.running else f"all {len(report.tables)} tables backed up"
        return f":white_check_mark: *Hippolyte*: {done}, {run}"
    lines = [f":x: *Hippolyte*: {len(failed)} of {len(report.tables)} tables failed, {run}"]
    for c in _ordered(failed)[:SLACK_MAX_TABLES]:
        where = f"pipeline {c.pipeline}, " if c.pipeline is not None else ""
        lines.append(
            f"\u2022 `{_esc(c.table)}` ({where}{_esc(c.target)}): {_esc(_one_line(c.reason))}"
        )
    if len(failed) > SLACK_MAX_TABLES:
        lines.append(f"_and {len(failed) - SLACK_MAX_TABLES} more_")
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
            "tables": len(report.tables),
            "ok": len(report.tables) - len(failed) - len(report.running),
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
    }


# -- small helpers -------------------------------------------------------------------------------


def _when(at: dt.datetime) -> str:
    if at.tzinfo is None:
        return at.strftime("%Y-%m-%d %H:%M:%S")
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _one_line(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())


def _esc(text: str) -> str:
    """Slack mrkdwn: only &, < and > need escaping."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
