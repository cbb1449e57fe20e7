"""``hippolyte revert``: put back the capacity and autoscaling a run boosted, through its journal.
A run on AWS Data Pipeline still has exports reading under its boosts: those tables wait for
their pipelines (``monitor`` puts them back) unless forced."""

from __future__ import annotations

from collections.abc import Mapping

from hippolyte.core.model import CapacityOutcome, CapacityStatus
from hippolyte.engines import datapipeline_engine
from hippolyte.engines.capacity import revert
from hippolyte.repo.journal import Journal


def revert_run(
    journal: Journal, *, force: bool = False, target: Mapping[str, str] | None = None
) -> list[CapacityOutcome]:
    """``hippolyte revert`` of one run. A run on AWS Data Pipeline still has its exports
    reading under the boosts: only the tables of pipelines that are done are put back (as
    ``monitor`` does), the others are reported ``still-running``, unless ``force``.
    ``target``: connection fields (region, profile, endpoint_url, role_arn) that replace what
    the run recorded for each of its tables and pipelines (a profile named otherwise on this
    machine, DynamoDB Local on another port); the journal then records the ones used."""
    for entry in journal.entries.values():
        if target and "target" in entry:
            entry["target"] = {**entry["target"], **target}
    if force or not journal.pipelines():
        return revert(journal)
    outcomes, views = datapipeline_engine.revert_done(journal)
    still_open = {e.get("table") for e in journal.open_entries().values()}
    return outcomes + [
        CapacityOutcome(
            table=table,
            status=CapacityStatus.STILL_RUNNING,
            note=f"{view.summary}; monitor reverts it once it ends (or revert --force)",
        )
        for view in views
        if not view.done
        for table in view.tables
        if table in still_open
    ]
