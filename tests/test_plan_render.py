"""The plan's HTML page and its AWS Data Pipeline definitions: pure renderings of
``planning.to_json``; the definitions are also put to moto's Data Pipeline."""

from __future__ import annotations

import math
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import pytest

from hippolyte.core import pipeline_defs as datapipeline
from hippolyte.core import plan_html
from hippolyte.core.model import TableInfo
from hippolyte.core.planning import PlanSettings, plan, to_json
from tests.support.servers import Server

SRC = Path(__file__).resolve().parents[1] / "src" / "hippolyte"
DEFAULT = PlanSettings()
PER_RCU = DEFAULT.read_percent * DEFAULT.bytes_per_rcu  # bytes/s per RCU, unboosted
TIMESTAMP = "2024-05-01-00-10-00"


def table(name: str, *, read_s: float, rcu: int = 100) -> TableInfo:
    """A provisioned table that takes ``read_s`` seconds to read, unboosted."""
    return TableInfo(name=name, read_capacity=rcu, size_bytes=int(read_s * rcu * PER_RCU))


def sample(settings: PlanSettings = DEFAULT) -> dict[str, Any]:
    """Boosted, overrunning, ordinary, escaped and empty tables."""
    tables = [
        table("huge", read_s=30 * DEFAULT.usable_s),  # boosted
        table("orders&co.v2", read_s=3600),
        table("tiny", read_s=5),
        TableInfo(name="empty", read_capacity=5, size_bytes=0),
    ]
    return to_json(plan(tables, settings=settings))


def many(pipelines: int) -> dict[str, Any]:
    """``pipelines`` tables of 4 h each: no two share a 6 h 50 m pipeline."""
    tables = [table(f"t{i:04d}", read_s=4 * 3600) for i in range(pipelines)]
    return to_json(plan(tables, settings=DEFAULT))


class _Checker(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element."""

    VOID = {"meta", "br", "link", "img", "input", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "class":
                for cls in (value or "").split():
                    self.counts[f"{tag}.{cls}"] = self.counts.get(f"{tag}.{cls}", 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, checker.stack
    return checker


# --- pure -------------------------------------------------------------------------------------


# --- HTML -------------------------------------------------------------------------------------


def test_html_is_well_formed_self_contained_and_marks_boosts() -> None:
    data = sample()
    page = plan_html.render(data)
    found = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    for banned in ("http://", "https://", "<script", "url(http", "@import", "src="):
        assert banned not in page
    assert found.counts.get("rect.boosted") == 1  # one boosted bar ...
    assert found.counts.get("tr.boosted") == 1  # ... and one boosted row in the listing
    boost = data["pipelines"][0]["tables"][0]["boost"]
    assert f"RCU {boost['old_rcu']} -&gt; {boost['new_rcu']}" in page  # in the <title>
    assert "empty" in page and "nothing to back up" in page  # skipped, with its reason
    for decision in data["decisions"]:
        assert decision.replace("'", "&#x27;") in page
    assert f"<b>{data['lower_bound']}</b>lower bound" in page
    assert 'class="end"' in page  # the window end line


def test_html_escapes_names() -> None:
    page = plan_html.render(sample())
    assert "orders&amp;co.v2" in page
    assert "orders&co" not in page


def test_html_one_row_per_pipeline_and_overruns_marked() -> None:
    tight = PlanSettings(table_max_rcu=200)  # the huge table cannot be boosted enough
    data = sample(tight)
    found = parse(plan_html.render(data))
    assert found.counts["rect.start"] == len(data["pipelines"]) >= 2
    assert found.counts["rect.overrun"] == 1
    assert found.counts["rect.past"] == 1
    assert found.counts["tr.overrun"] == 1


def test_html_with_no_pipelines() -> None:
    data = to_json(plan([TableInfo(name="empty", read_capacity=5)], settings=DEFAULT))
    page = plan_html.render(data)
    parse(page)
    assert "No pipelines" in page and "<svg" not in page


def test_html_for_300_pipelines_is_quick_and_bounded() -> None:
    data = many(300)
    assert len(data["pipelines"]) == 300
    started = time.perf_counter()
    page = plan_html.render(data)
    assert time.perf_counter() - started < 1.0
    found = parse(page)
    assert found.counts["rect.start"] == 300
    assert f'height="{300 * plan_html.ROW_H + 2}"' in page  # fixed row height
    assert len(page) < 2_000_000


# --- Data Pipeline ----------------------------------------------------------------------------


def _objects(defn: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [o for o in defn["pipelineObjects"] if _field(o, "type") == kind]


def _field(obj: dict[str, Any], key: str) -> str | None:
    for f in obj["fields"]:
        if f["key"] == key:
            return str(f.get("stringValue", f.get("refValue")))
    return None


def test_definitions_shape() -> None:
    data = sample()
    defns = datapipeline.definitions(data, bucket="s3://backups/", timestamp=TIMESTAMP)
    assert [d["name"] for d in defns] == [
        f"hippolyte-{TIMESTAMP}-{p['index']}" for p in data["pipelines"]
    ]
    for defn, pipeline in zip(defns, data["pipelines"], strict=True):
        n = len(pipeline["tables"])
        assert len(defn["pipelineObjects"]) == 3 * n + 2
        assert datapipeline.validate(defn) == []
        assert len(_objects(defn, "EmrActivity")) == n
        for node in _objects(defn, "S3DataNode"):
            assert (
                _field(node, "directoryPath")
                == f"s3://backups/{node['id'].split('.', 1)[1]}/{TIMESTAMP}"
            )
        default = next(o for o in defn["pipelineObjects"] if o["id"] == "Default")
        assert _field(default, "failureAndRerunMode") == "CASCADE"
        assert _field(default, "scheduleType") == "ONDEMAND"
    activity = _objects(defns[0], "EmrActivity")[0]
    assert _field(activity, "maximumRetries") == "2"
    assert _field(activity, "step") == datapipeline.EXPORT_STEP


def test_read_share_of_boosted_and_plain_tables() -> None:
    data = sample()
    defns = datapipeline.definitions(data, bucket="backups", timestamp=TIMESTAMP)
    shares = {
        _field(n, "tableName"): _field(n, "readThroughputPercent")
        for d in defns
        for n in _objects(d, "DynamoDBDataNode")
    }
    boost = data["pipelines"][0]["tables"][0]["boost"]
    assert boost and shares["huge"] == f"{int(boost['backup_share'] * 100) / 100:.2f}"
    assert float(shares["huge"]) <= boost["backup_share"]  # the application keeps its RCU
    assert shares["tiny"] == "0.50"


def test_cluster_sized_by_data_and_time() -> None:
    assert datapipeline.cluster_size(100 * 10**6)[2] == 1
    assert datapipeline.cluster_size(600 * 10**6)[1:] == ("m5.2xlarge", 2)
    assert datapipeline.cluster_size(10**15)[2] == datapipeline.MAX_LARGE_CORES
    data = sample()
    defn = datapipeline.definitions(data, bucket="b", timestamp=TIMESTAMP, subnet_id="sn-1")
    cluster = _objects(defn[0], "EmrCluster")[0]
    hours = math.ceil(data["pipelines"][0]["total_s"] / 3600) + 1
    assert _field(cluster, "terminateAfter") == f"{hours} Hours"
    assert _field(cluster, "subnetId") == "sn-1"
    assert _field(cluster, "releaseLabel") == datapipeline.RELEASE_LABEL


def test_more_than_32_tables_is_refused() -> None:
    data = sample()
    data["pipelines"][0]["tables"] = data["pipelines"][0]["tables"] * 33
    with pytest.raises(ValueError, match="at most 32 tables"):
        datapipeline.definitions(data, bucket="b", timestamp=TIMESTAMP)


def test_32_tables_fit_in_100_objects() -> None:
    tables = [table(f"small-{i:02d}", read_s=10) for i in range(64)]  # two full pipelines
    defns = datapipeline.definitions(
        to_json(plan(tables, settings=DEFAULT)), bucket="b", timestamp=TIMESTAMP
    )
    assert sorted(len(d["pipelineObjects"]) for d in defns) == [3 * 32 + 2] * 2
    assert all(datapipeline.validate(d) == [] for d in defns)


def test_validate_finds_problems() -> None:
    defn = datapipeline.definitions(sample(), bucket="b", timestamp=TIMESTAMP)[0]
    objects = defn["pipelineObjects"]
    broken = {
        **defn,
        "pipelineObjects": [
            *objects,
            objects[-1],
            {
                "id": "x",
                "name": "x",
                "fields": [{"key": "runsOn", "refValue": "nowhere"}, {"key": "odd"}],
            },
        ],
        "parameterObjects": [],
    }
    problems = datapipeline.validate(broken)
    assert any("duplicate id" in p for p in problems)
    assert any("'nowhere', which does not exist" in p for p in problems)
    assert any("exactly one of" in p for p in problems)
    assert any("'myDDBRegion' is used but not declared" in p for p in problems)


@pytest.mark.servers
def test_moto_accepts_the_definitions(moto_server: Server) -> None:
    client = boto3.client(
        "datapipeline", endpoint_url=moto_server.endpoint_url, region_name="us-east-1"
    )
    defns = datapipeline.definitions(
        sample(PlanSettings(table_max_rcu=200)),
        bucket="backups",
        timestamp=TIMESTAMP,
        log_uri="s3://logs/hippolyte/",
        subnet_id="subnet-123",
    )
    assert len(defns) >= 2
    for defn in defns:
        created = client.create_pipeline(name=defn["name"], uniqueId=defn["uniqueId"])
        pid = created["pipelineId"]
        answer = client.put_pipeline_definition(**datapipeline.put_request(defn, pipeline_id=pid))
        assert not answer["errored"]
        back = client.get_pipeline_definition(pipelineId=pid)["pipelineObjects"]
        assert {o["id"]: o["fields"] for o in back} == {
            o["id"]: o["fields"] for o in defn["pipelineObjects"]
        }
