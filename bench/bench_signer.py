"""Issue 10: the direct writer's SigV4 signing, hand-written against botocore's ``SigV4Auth``:
CPU of the restore's load per MB of table data, each signer in the same DirectWriter over the
same keep-alive connections, against bench/write_server.py (which accepts BatchWriteItem for
free), interleaved in one run.

Standalone: ``python bench/bench_signer.py [--quick]`` prints its metrics.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hippolyte.adapters import dynamodb_write
from hippolyte.adapters.dynamodb_direct import CONTENT_TYPE, TARGET_PREFIX, Caller, Endpoint, SigV4
from hippolyte.core.pacing import TokenBucket
from hippolyte.engines.load import LoadSettings, load_files
from hippolyte.formats.base import SourceFile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_restore import Backup, timed, write_server  # noqa: E402

import items  # noqa: E402
from common import MB, REGION, Report, canned_server, hippolyte_backup, isolate_aws, metric  # noqa: E402

NAME = "signer"
TARGET = TARGET_PREFIX + "BatchWriteItem"
TITLE = "Direct writer: hand-written SigV4 against botocore's SigV4Auth"
WORKERS = 4
SIGNERS = ("hand-written", "botocore")


@dataclass(frozen=True, kw_only=True)
class Sizes:
    mib: int  # the canned table backed up, then loaded again and again
    pairs: int  # loads per signer, interleaved
    sign_rounds: int  # rounds of the signing-only measure

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        if quick:
            return cls(mib=20, pairs=2, sign_rounds=3)
        return cls(mib=100, pairs=6, sign_rounds=9)


class Signer(Protocol):
    def headers(self, body: bytes, *, target: str, keys: Any) -> dict[str, str]: ...


def make_signer(kind: str, url: str) -> Signer:
    if kind == "hand-written":  # the writer's own, as dynamodb_direct.Caller builds it
        return SigV4(host=urlsplit(url).netloc, path="/", region=REGION, service="dynamodb")
    return BotocoreSigner(url, region=REGION)


def run(*, quick: bool) -> Report:
    isolate_aws()
    sizes = Sizes.pick(quick)
    report = Report(name=NAME, title=TITLE, quick=quick)
    with canned_server() as canned, write_server() as server, \
            tempfile.TemporaryDirectory(prefix="bench-signer-") as tmp:
        made = hippolyte_backup(f"canned-{sizes.mib}", repo=Path(tmp) / "repo",
                                endpoint_url=canned.endpoint_url, segments=WORKERS,
                                workers=WORKERS, read_percent=1)
        backup = Backup.open(made.folder)
        ddb_mb = items.table_size(backup.items) / MB
        loads = _loads(server.endpoint_url, backup, pairs=sizes.pairs)
        signing = _signing_only(server.endpoint_url, backup, rounds=sizes.sign_rounds)
    _metrics(report, loads, signing, ddb_mb=ddb_mb)
    ratio = report.raw["ratio"]
    report.notes.append(
        f"Decision rule (issue 10): botocore's signer replaces ours if its CPU per MB is at "
        f"most 5% higher; here it is {100 * (ratio - 1):+.1f}%, so "
        f"{'botocore' if ratio <= 1.05 else 'the hand-written one'} is the one to keep.")
    report.notes.append(
        f"A hippolyte backup of a {sizes.mib} MiB canned table ({backup.items:,} items, "
        f"{ddb_mb:,.1f} MB as DynamoDB sizes them, {len(backup.source.files)} data files) is "
        f"loaded {2 * sizes.pairs} times in this process (load_files, {WORKERS} workers, the "
        "direct writer's keep-alive http.client connections) into bench/write_server.py, "
        f"{sizes.pairs} times with each signer, in back-to-back pairs (AB, BA, AB...) after "
        "one unmeasured load each; CPU is this process's (time.process_time, every thread). "
        "Signing only: the first 400 request bodies signed by each signer, "
        f"{sizes.sign_rounds} rounds interleaved, median.")
    return report


def _loads(endpoint_url: str, backup: Backup, *, pairs: int) -> dict[str, list[float]]:
    """CPU seconds of each load, per signer; the order alternates AB, BA, ... so that drift
    of the machine weighs on both."""
    creds = Credentials("testing", "testing")
    cpu: dict[str, list[float]] = {kind: [] for kind in SIGNERS}
    order = list(SIGNERS)  # one warm-up each, not measured
    for i in range(pairs):
        order += list(SIGNERS) if i % 2 == 0 else list(reversed(SIGNERS))
    for n, kind in enumerate(order):
        writer = dynamodb_write.DirectWriter(
            Caller(Endpoint(url=endpoint_url, region=REGION), credentials=creds))
        botocore_signer = BotocoreSigner(endpoint_url, region=REGION)
        if kind == "botocore":  # the same writer and connections; only the signing differs
            if not isinstance(writer._caller._signer, SigV4):
                raise RuntimeError("the direct writer no longer signs with _caller._signer")
            writer._caller._signer = botocore_signer  # type: ignore[assignment]
        writer.write_batch(table="warm-up", items=[items.item_json(0)])
        _, t = timed(lambda w=writer: _load(backup, w))
        writer.close()
        if (botocore_signer.signed > 0) != (kind == "botocore"):
            raise RuntimeError(f"{kind}: the load was not signed by the signer under test")
        if n >= len(SIGNERS):
            cpu[kind].append(t.cpu_s)
        print(f"   {kind}: {t.cpu_s:.2f} s CPU, {t.wall_s:.2f} s wall"
              f"{' (warm-up)' if n < len(SIGNERS) else ''}", flush=True)
    return cpu


def _load(backup: Backup, writer: dynamodb_write.DirectWriter) -> None:
    done: list[SourceFile] = []
    load_files(backup.source, list(backup.source.files), writer=writer,
               settings=LoadSettings(table="signed", workers=WORKERS),
               bucket=TokenBucket(rate=1e9), emit=lambda _: None, on_file_done=done.append,
               stop=threading.Event())
    if len(done) != len(backup.source.files):
        raise RuntimeError(f"load finished {len(done)} files of {len(backup.source.files)}")


def _signing_only(endpoint_url: str, backup: Backup, *, rounds: int) -> dict[str, list[float]]:
    """Seconds of CPU per request to sign the same bodies, per signer, one thread."""
    bodies = [dynamodb_write.request_body("signed", b) for b in backup.batches()][:400]
    creds = Credentials("testing", "testing")
    signers = {kind: make_signer(kind, endpoint_url) for kind in SIGNERS}
    out: dict[str, list[float]] = {kind: [] for kind in SIGNERS}
    for i in range(rounds):
        for kind in SIGNERS if i % 2 == 0 else tuple(reversed(SIGNERS)):
            sign = signers[kind].headers
            began = time.process_time()
            for body in bodies:  # the keys taken per request, as the writer takes them
                sign(body, target=TARGET, keys=creds.get_frozen_credentials())
            out[kind].append((time.process_time() - began) / len(bodies))
    return out


def _metrics(report: Report, loads: dict[str, list[float]], signing: dict[str, list[float]],
             *, ddb_mb: float) -> None:
    def rates(kind: str) -> list[float]:
        return [ddb_mb / s for s in loads[kind]]

    def span(values: list[float], fmt: Callable[[float], str]) -> str:
        return f"{fmt(min(values))}-{fmt(max(values))}"

    per_mb = {kind: statistics.median(loads[kind]) / ddb_mb for kind in SIGNERS}
    ratio = per_mb["botocore"] / per_mb["hand-written"]
    # pair i: the i-th load of each signer, run back to back
    pairs = [b / h for h, b in zip(loads["hand-written"], loads["botocore"], strict=True)]
    n = len(loads["hand-written"])
    report.raw.update({"load_cpu_s": loads, "ddb_mb": ddb_mb, "sign_cpu_s": signing,
                       "pair_ratios": pairs, "ratio": ratio})
    for key, kind in (("hand", "hand-written"), ("botocore", "botocore")):
        report.metrics += [
            metric(f"{key}_ddb_mb_per_core", f"load with the {kind} signer, CPU (median of {n}: "
                   f"{span(rates(kind), lambda v: f'{v:.1f}')} MB/s per core)",
                   ddb_mb / statistics.median(loads[kind]),
                   f"MB/s per core ({per_mb[kind] * 1000:.2f} ms CPU per MB)"),
        ]
    report.metrics.append(metric(
        "botocore_over_hand", "CPU per MB, botocore / hand-written (medians; back-to-back "
        f"pairs: {span(pairs, lambda v: f'{v:.3f}')})", ratio, "x", digits=3))
    for key, kind in (("hand", "hand-written"), ("botocore", "botocore")):
        us = [s * 1e6 for s in signing[kind]]
        report.metrics.append(metric(
            f"{key}_sign_us", f"signing only, {kind} (median of {len(us)}: "
            f"{span(us, lambda v: f'{v:.0f}')} µs)", statistics.median(us), "µs per request",
            digits=0))


# -- botocore's signer, as the writer would use it -----------------------------------------


class BotocoreSigner:
    """botocore's SigV4Auth over an AWSRequest, credentials frozen per request (as botocore's
    RequestSigner does)."""

    def __init__(self, url: str, *, region: str):
        self._url = url.rstrip("/") + "/"
        self._region = region
        self.signed = 0  # requests signed: the benchmark checks the writer used this signer

    def headers(self, body: bytes, *, target: str, keys: Any) -> dict[str, str]:
        self.signed += 1
        request = AWSRequest(method="POST", url=self._url, data=body, headers={
            "Content-Type": CONTENT_TYPE,
            "X-Amz-Target": target,
        })
        SigV4Auth(keys, "dynamodb", self._region).add_auth(request)
        return dict(request.headers.items())


# -- standalone ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    width = max(len(m.label) for m in result.metrics)
    for m in result.metrics:
        verdict = "" if m.ok is None else ("  ok" if m.ok else "  MISSED")
        print(f"  {m.label:<{width}}  {m.shown()}{verdict}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
