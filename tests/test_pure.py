"""Pure decision code: pacing, selection, the repository format, config validation."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Context, Decimal
from random import Random
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hippolyte.adapters.dynamodb import encode_item
from hippolyte.core import config, proof
from hippolyte.core.errors import ConfigError
from hippolyte.core.model import TableInfo
from hippolyte.core.pacing import PageSizer, TokenBucket, read_budget, segments_for
from hippolyte.core.selection import Rules, decide
from hippolyte.repo import manifest
from tests.corpus import Item, attributes


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, secs: float) -> None:
        with self.lock:
            self.now += secs


@given(
    rate=st.floats(min_value=1, max_value=40_000),
    costs=st.lists(st.floats(min_value=0.5, max_value=128), min_size=20, max_size=300),
)
def test_bucket_never_exceeds_rate_plus_burst(rate: float, costs: list[float]) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=rate, burst_s=1.0, clock=clock, sleep=clock.sleep)
    spent = 0.0
    for cost in costs:
        bucket.acquire(cost)  # the request is sent after the wait
        spent += cost
        # what was sent by now never exceeds what the budget allowed by now (+1 s burst)
        assert spent <= rate * clock.now + rate * 1.0 + 1e-6


def test_bucket_settles_to_actual_cost() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst_s=0.0, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        bucket.acquire(5)
        bucket.settle(5, 10)  # each page really cost twice the estimate
    # 100 pages of 10 units at 10 units/s: ~100 s, not 50
    bucket.acquire(0)
    assert clock.now == pytest.approx(100, abs=1.5)


def test_throttling_halves_the_rate_then_recovers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100, clock=clock, sleep=clock.sleep, recovery_s=60)
    bucket.throttled()
    assert bucket.effective_rate() == pytest.approx(50)
    clock.now += 30
    assert bucket.effective_rate() == pytest.approx(75)
    clock.now += 31
    assert bucket.effective_rate() == 100


def test_page_sizer_keeps_pages_within_two_seconds_of_budget() -> None:
    sizer = PageSizer(rate=5.0)
    assert sizer.limit() == 16 and sizer.estimate() == 0.5  # probe page first
    sizer.learn(items=16, consumed=2.0)
    assert sizer.limit() == 80  # 10 units / 0.125 per item
    assert sizer.estimate() == pytest.approx(10)
    fast = PageSizer(rate=1000.0, units_per_item=0.125)
    assert fast.limit() is None and fast.estimate() == 128


def test_read_budget_never_zero_for_on_demand() -> None:
    assert (
        read_budget(on_demand=True, read_capacity=0, read_percent=0.5, on_demand_units=1000) == 1000
    )
    assert (
        read_budget(
            on_demand=True,
            read_capacity=0,
            read_percent=0.5,
            on_demand_units=1000,
            max_read_request_units=400,
        )
        == 200
    )
    assert (
        read_budget(on_demand=False, read_capacity=0, read_percent=0.5, on_demand_units=800) == 800
    )  # no RCU: never divide by zero
    assert (
        read_budget(on_demand=False, read_capacity=300, read_percent=0.5, on_demand_units=1000)
        == 150
    )


def test_segments_from_size() -> None:
    gb = 1 << 30
    assert segments_for(size_bytes=0, workers=4, override=None) == 4
    assert segments_for(size_bytes=10 * gb + 1, workers=4, override=None) == 11
    assert segments_for(size_bytes=5000 * gb, workers=4, override=None) == 1000
    assert segments_for(size_bytes=5000 * gb, workers=4, override=7) == 7


def t(name: str, **kw: object) -> TableInfo:
    return TableInfo(name=name, **kw)  # type: ignore[arg-type]


def test_selection_reasons() -> None:
    rules = Rules(
        include=["orders", "users"],
        exclude=["orders-tmp"],
        always_backup=["orders-tmp-keep"],
        required_tags={},
    )
    assert decide(t("orders"), rules).selected
    assert not decide(t("payments"), rules).selected
    assert "exclude pattern" in decide(t("orders-tmp-1"), rules).reason
    assert decide(t("orders-tmp-keep"), rules).reason == "listed in always_backup"
    tagged = Rules(required_tags={"backup": "true"})
    assert decide(t("x1x", tags={"backup": "true"}), tagged).selected
    assert "has no tag" in decide(t("x1x"), tagged).reason
    assert "not 'true'" in decide(t("x1x", tags={"backup": "no"}), tagged).reason
    assert "CREATING" in decide(t("new", status="CREATING"), Rules()).reason


def test_backup_ids_round_trip() -> None:
    at = dt.datetime(2026, 11, 22, 0, 10, 5, tzinfo=dt.UTC)
    assert manifest.backup_id(at) == "2026-11-22-00-10-05"
    assert manifest.parse_backup_id("2026-11-22-00-10-05") == at


@pytest.mark.parametrize(
    "text,repo,expect",
    [
        ("orders/2026-11-22-00-10-05", "/r", ("/r", "orders", "2026-11-22-00-10-05")),
        ("/data/r/orders/2026-11-22-00-10-05/", None, ("/data/r", "orders", "2026-11-22-00-10-05")),
        (
            "s3://b/p/orders/2026-11-22-00-10-05",
            None,
            ("s3://b/p", "orders", "2026-11-22-00-10-05"),
        ),
        ("s3://b/orders/2026-11-22-00-10-05", "/x", ("s3://b", "orders", "2026-11-22-00-10-05")),
        ("file:///r/t.x/2026-11-22-00-10-05", None, ("file:///r", "t.x", "2026-11-22-00-10-05")),
    ],
)
def test_parse_ref(text: str, repo: str | None, expect: tuple[str, str, str]) -> None:
    ref = manifest.parse_ref(text, repo=repo)
    assert (ref.repo, ref.table, ref.backup_id) == expect


@pytest.mark.parametrize(
    "text,repo,msg",
    [
        ("orders", "/r", "neither"),
        ("orders/2026-11-22", "/r", "neither"),
        ("orders/2026-11-22-00-10-05", None, "needs --repo"),
    ],
)
def test_parse_ref_rejects(text: str, repo: str | None, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        manifest.parse_ref(text, repo=repo)


def test_config_errors_name_the_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cases = {
        "read_percent = 1.5": "read_percent",
        "workers = 0": "workers",
        "bogus = 1": "unknown key 'bogus'",
        "[selection]\nexclude = ['(']": "selection.exclude",
        "[[targets]]\nrole_arn = 'nope'": "targets.0.role_arn",
        "read_percent = ": "not valid TOML",
    }
    for text, needle in cases.items():
        path = tmp_path / "h.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
            config.load(str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "missing.toml"))


def test_config_cli_overrides_win(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "h.toml"
    path.write_text(
        'repository = "/r"\nread_percent = 0.25\n[[targets]]\nregion = "eu-west-1"\n'
        '[selection]\nexclude = ["tmp-"]\n'
    )
    s = config.load(str(path)).with_overrides(
        read_percent=0.75, endpoint_url="http://x:1", workers=None
    )
    assert s.read_percent == 0.75 and s.workers == 4 and s.repository == "/r"
    assert s.targets[0].region == "eu-west-1" and s.targets[0].endpoint_url == "http://x:1"
    with pytest.raises(ConfigError, match="read_percent"):
        s.with_overrides(read_percent=0)


def test_two_targets_cannot_share_a_repository(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "h.toml"
    path.write_text('repository = "/r"\n[[targets]]\naccount = "a"\n[[targets]]\naccount = "b"\n')
    with pytest.raises(ConfigError, match="same repository"):
        config.load(str(path))


def test_a_failing_group_does_not_stop_its_caller() -> None:
    from hippolyte.core.errors import Interrupted
    from hippolyte.engines.pool import run_all

    outer = threading.Event()
    seen: list[bool] = []

    def task(i: int, group: threading.Event) -> int:
        if i == 0:
            raise ValueError("boom")
        seen.append(group.wait(5))  # siblings are told to stop...
        return i

    with pytest.raises(ValueError, match="boom"):
        run_all(task, [0, 1, 2], workers=3, stop=outer, name="t", interrupted="x")
    assert seen == [True, True] and not outer.is_set()  # ...but the caller's stop is untouched

    def waits(i: int, group: threading.Event) -> int:
        if group.wait(5):
            raise Interrupted("stopped")
        return i

    outer.set()  # the caller stops: the group hears it
    with pytest.raises(Interrupted):
        run_all(waits, [1, 2], workers=2, stop=outer, name="t", interrupted="x")


# --- the proof's digest -----------------------------------------------------------------------

number_values = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d == 0 or -129 <= d.adjusted() <= 125
)


def _spellings(d: Decimal) -> list[str]:
    """Ways servers and files may write the same number."""
    return [
        str(d),
        format(d, "f"),
        format(d, "E"),
        str(d.normalize(Context(prec=60))),
        format(d, "f") + "000" if "." in format(d, "f") else format(d, "f") + ".000",
    ]


@given(number_values, number_values)
def test_numbers_have_one_spelling_per_value(a: Decimal, b: Decimal) -> None:
    for x in _spellings(a):
        assert proof.number_text(x) == proof.number_text(str(a))
    assert (proof.number_text(str(a)) == proof.number_text(str(b))) == (a == b)


@given(attributes, st.randoms(use_true_random=False))
def test_digest_ignores_attribute_set_and_number_order(attrs: Item, rnd: Random) -> None:
    item = {"pk": {"S": "k"}, **attrs}
    shuffled = _shuffled(encode_item(item), rnd)
    assert proof.item_hash(encode_item(item)) == proof.item_hash(shuffled)


def _shuffled(wire: bytes, rnd: Random) -> bytes:
    def value(v: dict[str, Any]) -> dict[str, Any]:
        ((tag, x),) = v.items()
        if tag in ("SS", "BS", "NS"):
            x = rnd.sample(x, len(x))
            if tag == "NS":
                x = [format(Decimal(n), "E") for n in x]
        elif tag == "N":
            x = format(Decimal(x), "E")
        elif tag == "M":
            x = attrs(x)
        elif tag == "L":
            x = [value(e) for e in x]
        return {tag: x}

    def attrs(m: dict[str, Any]) -> dict[str, Any]:
        keys = rnd.sample(list(m), len(m))
        return {k: value(m[k]) for k in keys}

    return orjson.dumps(attrs(orjson.loads(wire)))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"n": {"N": "1.5"}}, {"n": {"N": "1.05"}}),
        ({"n": {"N": "1"}}, {"n": {"S": "1"}}),
        ({"n": {"SS": ["1", "2"]}}, {"n": {"NS": ["1", "2"]}}),
        ({"n": {"L": [{"N": "1"}, {"N": "2"}]}}, {"n": {"L": [{"N": "2"}, {"N": "1"}]}}),
        ({"m": {"M": {"a": {"S": "x"}}}}, {"m": {"M": {"b": {"S": "x"}}}}),
        ({"n": {"N": "-1"}}, {"n": {"N": "1"}}),
        ({"n": {"N": "10"}}, {"n": {"N": "1"}}),
    ],
)
def test_digest_tells_different_items_apart(a: Item, b: Item) -> None:
    assert proof.item_hash(orjson.dumps(a)) != proof.item_hash(orjson.dumps(b))


def test_digest_is_a_multiset_sum() -> None:
    items = [b'{"pk":{"S":"%d"}}' % i for i in range(5)]
    whole, left, right = proof.Digest(), proof.Digest(), proof.Digest()
    for i in items:
        whole.add(i)
    for i in items[3:]:
        left.add(i)
    for i in reversed(items[:3]):
        right.add(i)
    left.merge(right)
    assert (left.count, left.value) == (whole.count, whole.value)
    twice = proof.Digest()
    for i in items + items[:1]:
        twice.add(i)
    assert twice.value != whole.value and twice.count == 6
