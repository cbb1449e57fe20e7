"""List a target's tables and decide which are selected, with the reason for each."""

from __future__ import annotations

from hippolyte.adapters import aws, dynamodb
from hippolyte.core.errors import TableNotFound
from hippolyte.core.model import Selected, TableInfo
from hippolyte.core.selection import Rules, select


def discover(*, conn: aws.Connection, rules: Rules, max_attempts: int = 10) -> list[Selected]:
    client = dynamodb.control_client(conn, max_attempts=max_attempts)
    infos: list[TableInfo] = []
    for name in dynamodb.list_tables(client):
        try:
            infos.append(dynamodb.describe(client, name, with_tags=rules.needs_tags))
        except TableNotFound:
            continue  # deleted between ListTables and DescribeTable
    return select(infos, rules)
