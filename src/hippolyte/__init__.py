"""Hippolyte: recurring, paced, lossless backups for fleets of DynamoDB tables.

The library's face, the same operations the CLI, `serve` and the Lambda handler call:

    import hippolyte
    settings = hippolyte.load_config("hippolyte.toml")
    runs = hippolyte.nightly_backup(settings)           # tonight's plan, every target
    source = hippolyte.open_backup(settings, "orders/2026-11-28-00-10-00", repo=None)
    as_of = hippolyte.open_backup(settings, "orders@2026-11-28T14:03:07Z", repo=None)

Names are imported on first use, so `import hippolyte` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from hippolyte.core.version import __version__

_API = {
    "load_config": "hippolyte.core.config:load",
    "Settings": "hippolyte.core.config:Settings",
    "discover": "hippolyte.ops.discover:discover",
    "plan_target": "hippolyte.ops.plan:plan_target",
    "nightly_backup": "hippolyte.ops.jobs:nightly_backup",
    "run_target": "hippolyte.ops.jobs:run_target",
    "nightly_monitor": "hippolyte.ops.jobs:nightly_monitor",
    "backup_tables": "hippolyte.ops.backup:backup_tables",
    "revert_run": "hippolyte.ops.revert:revert_run",
    "restore": "hippolyte.ops.restore:restore",
    "RestoreParams": "hippolyte.ops.restore:RestoreParams",
    "convert": "hippolyte.ops.convert:convert",
    "storage_for": "hippolyte.ops.context:storage_for",
    "open_backup": "hippolyte.ops.context:open_backup",
    "list_backups": "hippolyte.repo.catalog:list_backups",
    "verify": "hippolyte.repo.verify:verify",
    "verify_all": "hippolyte.repo.verify:verify_all",
    "diff_refs": "hippolyte.ops.diff:diff_refs",
    "recover": "hippolyte.ops.recover:recover",
    "undo_recovery": "hippolyte.ops.recover:undo",
    "RecoverParams": "hippolyte.ops.recover:RecoverParams",
    "capture": "hippolyte.ops.capture:capture",
    "CaptureParams": "hippolyte.ops.capture:CaptureParams",
    "table_history": "hippolyte.ops.pitr:history_report",
    "incremental_backup": "hippolyte.ops.incremental:incremental_backup",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'hippolyte' has no attribute {name!r}")
    module, _, attr = _API[name].partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
