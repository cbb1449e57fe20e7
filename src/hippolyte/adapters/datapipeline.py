"""AWS Data Pipeline: create, define, activate, read states, delete. botocore errors become
ours here; an account or region without Data Pipeline gets one clear message.

AWS closed Data Pipeline to new customers on 2024-07-25 and offers it in a few regions only;
accounts that used it before keep it. The endpoint comes from the standard
``AWS_ENDPOINT_URL_DATA_PIPELINE`` variable (botocore's name for the service "Data Pipeline").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from hippolyte.adapters import aws
from hippolyte.core.errors import AwsError, DataPipelineUnavailable
from hippolyte.core.model import Connection

CLOSED = (
    "AWS closed Data Pipeline to new customers on 2024-07-25 and offers it in a few regions "
    "only; use --engine local, dask or export instead"
)
# What AWS answers an account that may not use the service, or credentials without its rights.
_REFUSED = {
    "AccessDeniedException",
    "AccessDenied",
    "SubscriptionRequiredException",
    "OptInRequired",
    "NotAuthorized",
    "UnauthorizedOperation",
}
_NOT_AVAILABLE = re.compile(
    r"not (available|subscribed|supported|authorized)|new customers|no longer", re.IGNORECASE
)
_GONE = {"PipelineNotFoundException", "PipelineDeletedException"}
DESCRIBE_BATCH = 25  # DescribePipelines takes at most 25 ids


class PipelineGone(AwsError):
    """The pipeline was deleted (or never existed)."""


@dataclass(frozen=True, kw_only=True)
class PipelineState:
    state: str  # @pipelineState: SCHEDULED, RUNNING, FINISHED, FAILED, ...
    health: str | None = None  # @healthStatus: HEALTHY or ERROR, once it ran


def client(conn: Connection) -> Any:
    return aws.client(conn, "datapipeline")


def create(dp: Any, *, name: str, unique_id: str, description: str) -> str:
    """The pipeline's id. Idempotent: the same name and uniqueId give the same pipeline."""
    what = f"create pipeline {name}"
    resp = _call(dp.create_pipeline, what, name=name, uniqueId=unique_id, description=description)
    return str(resp["pipelineId"])


def put_definition(dp: Any, request: Mapping[str, Any], *, name: str) -> list[str]:
    """Put the definition; its warnings. A definition Data Pipeline rejects: AwsError listing
    every validation error."""
    resp = _call(dp.put_pipeline_definition, f"define pipeline {name}", **request)
    if resp.get("errored"):
        problems = _messages(resp.get("validationErrors")) or ["(no details given)"]
        raise AwsError(f"Data Pipeline rejected the definition of {name}: " + "; ".join(problems))
    return _messages(resp.get("validationWarnings"))


def activate(dp: Any, pipeline_id: str) -> None:
    _call(dp.activate_pipeline, f"activate pipeline {pipeline_id}", pipelineId=pipeline_id)


def delete(dp: Any, pipeline_id: str) -> None:
    """Delete the pipeline; one that no longer exists is already deleted."""
    try:
        _call(dp.delete_pipeline, f"delete pipeline {pipeline_id}", pipelineId=pipeline_id)
    except PipelineGone:
        pass


def states(dp: Any, pipeline_ids: Iterable[str]) -> dict[str, PipelineState | None]:
    """Each pipeline's state; None for a pipeline that no longer exists."""
    ids = list(pipeline_ids)
    out: dict[str, PipelineState | None] = dict.fromkeys(ids)
    for start in range(0, len(ids), DESCRIBE_BATCH):
        batch = ids[start : start + DESCRIBE_BATCH]
        try:
            out.update(_describe(dp, batch))
        except PipelineGone:  # one deleted pipeline fails the whole call: ask one by one
            if len(batch) > 1:
                for pid in batch:
                    out.update(states(dp, [pid]))
    return out


def _describe(dp: Any, ids: list[str]) -> dict[str, PipelineState | None]:
    resp = _call(dp.describe_pipelines, "describe pipelines", pipelineIds=ids)
    found: dict[str, PipelineState | None] = {}
    for desc in resp.get("pipelineDescriptionList") or []:
        fields = {f["key"]: f.get("stringValue") for f in desc.get("fields") or []}
        found[str(desc["pipelineId"])] = PipelineState(
            state=str(fields.get("@pipelineState") or "UNKNOWN"),
            health=fields.get("@healthStatus"),
        )
    return found


def _messages(entries: Any) -> list[str]:
    """``validationErrors``/``validationWarnings`` -> one line per object."""
    out = []
    for entry in entries or []:
        said = [*(entry.get("errors") or []), *(entry.get("warnings") or [])]
        out.append(f"{entry.get('id')}: {', '.join(said)}")
    return out


def _call(method: Callable[..., Any], what: str, **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        if isinstance(exc, botocore.exceptions.ClientError):
            if exc.response.get("Error", {}).get("Code") in _GONE:
                raise PipelineGone(f"{what}: the pipeline no longer exists") from exc
        raise unavailable(exc, what=what) or aws.translate(exc, what=what) from exc


def unavailable(exc: Exception, *, what: str) -> DataPipelineUnavailable | None:
    """The error saying Data Pipeline cannot be used here, if ``exc`` means that."""
    if isinstance(
        exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.UnknownEndpointError
    ):
        return DataPipelineUnavailable(f"{what}: cannot reach AWS Data Pipeline ({exc}); {CLOSED}")
    if not isinstance(exc, botocore.exceptions.ClientError):
        return None
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    if code in _REFUSED or (code == "InvalidRequestException" and _NOT_AVAILABLE.search(message)):
        return DataPipelineUnavailable(
            f"{what}: AWS Data Pipeline refused: {code}: {message or code}. Either this account "
            f"may not use Data Pipeline ({CLOSED}), or the credentials lack the datapipeline:* "
            "and iam:PassRole permissions"
        )
    return None
