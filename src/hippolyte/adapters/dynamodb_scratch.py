"""A restore drill's scratch tables: created tagged, and deleted only when the guard allows.

This module holds the only DeleteTable call of Hippolyte. It runs right after a fresh
DescribeTable and ListTagsOfResource of the table, and only when
:func:`hippolyte.core.drill.refusal` finds nothing against it: the table is the drill's
``<table>-drill-<id>``, the very table the drill created, tagged ``hippolyte:drill=<id>``.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from hippolyte.adapters import aws
from hippolyte.adapters.dynamodb import unsupported
from hippolyte.adapters.dynamodb_admin import create_table, describe_raw, wait_active
from hippolyte.core.drill import TAG, identity, refusal
from hippolyte.core.model import Json


def create_tagged(client: Any, request: Json, *, drill: str) -> tuple[Json, str | None]:
    """Create the scratch table tagged ``hippolyte:drill=<drill>`` and wait until it is
    ACTIVE: (its description, a note when the server keeps no tags). The tag is asked for in
    CreateTable and written again with TagResource, since some servers (dynalite) drop the
    tags of a CreateTable."""
    tags = [{"Key": TAG, "Value": drill}]
    create_table(client, {**request, "Tags": tags})
    desc = wait_active(client, request["TableName"])
    try:
        client.tag_resource(ResourceArn=desc["TableArn"], Tags=tags)
    except botocore.exceptions.ClientError as exc:
        if unsupported(exc):
            return desc, "this server has no tagging: the table is known by its identity"
        raise aws.translate(exc, what=f"TagResource on {request['TableName']!r}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=f"TagResource on {request['TableName']!r}") from exc
    return desc, None


def tags_of(client: Any, arn: str) -> dict[str, str] | None:
    """The table's tags (every page); None when the server has no tagging at all."""
    tags: dict[str, str] = {}
    token: str | None = None
    try:
        while True:
            page = client.list_tags_of_resource(
                ResourceArn=arn, **({"NextToken": token} if token else {})
            )
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags") or []})
            token = page.get("NextToken")
            if not token:
                return tags
    except botocore.exceptions.ClientError as exc:
        if unsupported(exc):
            return None
        raise aws.translate(exc, what=f"ListTagsOfResource {arn}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=f"ListTagsOfResource {arn}") from exc


def delete_scratch(client: Any, *, name: str, drill: str, created: str) -> str | None:
    """Delete drill ``drill``'s scratch table ``name`` (``created``: its identity when the
    drill created it) if, as DescribeTable and ListTagsOfResource tell right now, it is that
    table and is tagged so; else delete nothing and say why."""
    desc = describe_raw(client, name)
    tags = tags_of(client, desc["TableArn"]) if desc is not None else {}
    why = refusal(name=name, drill=drill, created=created, desc=desc, tags=tags)
    if why is not None:
        return why
    assert desc is not None and identity(desc) == created  # refusal() checked both
    try:
        client.delete_table(TableName=name)
    except botocore.exceptions.ClientError as exc:
        raise aws.translate(exc, what=f"DeleteTable {name!r}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=f"DeleteTable {name!r}") from exc
    return None
