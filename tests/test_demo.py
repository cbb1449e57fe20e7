"""The main job end to end, as a user runs it: the console script in a subprocess."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.test_render import bar, terminal_screen, where

pytestmark = pytest.mark.servers
HIPPOLYTE = [sys.executable, "-m", "hippolyte"]


@pytest.fixture(scope="module")
def json_demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The demo with JSON output, started by the first test that asks for it and left running
    beside the terminal demo: each may wait for DynamoDB Local's next minute (its stream
    stamps), and those waits overlap rather than add up. Output goes to files, which never
    fill up and block it as a pipe nobody reads would."""
    where = tmp_path_factory.mktemp("demo")
    with open(where / "out", "wb") as out, open(where / "err", "wb") as err:
        proc = subprocess.Popen(
            [*HIPPOLYTE, "demo", "--dir", str(where / "repo"), "--items", "400"],
            stdout=out,
            stderr=err,
            env=os.environ.copy(),
        )
    yield proc, where
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_demo_on_a_terminal_tells_each_line_once_in_order(
    tmp_path: Path, json_demo: tuple[subprocess.Popen[bytes], Path]
) -> None:
    """On a terminal: a step's line, then its bars, then what it found; each restore and
    status line once; then the bad deploy and each difference diff found, once; the summary
    last. (The JSON demo runs meanwhile.)"""
    raw = run_on_terminal([*HIPPOLYTE, "demo", "--dir", str(tmp_path / "repo"), "--items", "300"])
    screen = terminal_screen(raw)
    for table, items in (("demo-orders", 300), ("demo-sessions", 100)):
        restored = f"restored {table}-restored: {items} items"
        assert raw.count(restored) == 1, screen  # printed once, not again in the summary
        order = [
            where(screen, "running tonight's job"),
            bar(screen, table, items),
            where(screen, f"verify {table}/"),
            where(screen, f"restoring {table}/"),
            bar(screen, f"{table}-restored", items),
            where(screen, restored),
            where(screen, f"status {table}:"),
            where(screen, "stopping DynamoDB Local"),
            where(screen, "demo done: 2 tables backed up, 2 of 2 restores identical"),
        ]
        assert order == sorted(order), screen
    assert "identical to their backup" in screen[-2] and screen[-1].startswith("look around")
    assert screen[-2].endswith("bad deploy found and put back")
    found = "diff found 2 deleted, 1 added, 3 changed and 295 identical items:"
    assert raw.count(found) == 1, screen  # told once, not again in the summary
    order = [
        where(screen, "restored demo-sessions-restored:"),
        where(screen, "monitor: ok"),
        where(screen, "a bad deploy hits demo-orders: it deletes 2 orders, changes 3 and adds 1"),
        where(screen, "it also rewrites order 257's total "),
        where(screen, "running hippolyte diff demo-orders/"),
        where(screen, "live demo-orders "),
        where(screen, found),
        where(screen, "  deleted customer=customer-042 order=42"),
        where(screen, "  deleted customer=customer-085 order=85"),
        where(
            screen, '  changed customer=customer-031 order=128: status "delivered" -> "cancelled"'
        ),
        where(screen, "  changed customer=customer-074 order=171: total "),
        where(
            screen,
            '  changed customer=customer-020 order=214: address.city "Hatfield" -> "undefined"',
        ),
        where(screen, "  added   customer=customer-009 order=300"),
        where(screen, "exactly what the bad deploy did, and nothing else"),
        where(screen, "every difference in full: "),
        where(screen, "running hippolyte diff demo-orders@"),
        where(screen, "diff demo-orders@"),
        where(screen, "running hippolyte restore demo-orders --at "),
        where(screen, "restored demo-orders-at as of "),
        where(screen, "running hippolyte recover demo-orders/"),
        where(screen, "recover 2"),  # recover <id>: put back 5 orders, deleted 1; ...
        where(screen, "recover read them back: identical to the backup"),
        where(screen, "hippolyte diff demo-orders/"),  # ... --live again: no difference
        where(screen, "hippolyte recover --undo "),
        where(screen, "  re-create customer=customer-009 order=300 as the bad deploy left it"),
        where(screen, "stopping DynamoDB Local"),
    ]
    assert order == sorted(order), screen
    assert ": put back 5 orders, deleted 1;" in screen[where(screen, "recover 2")]
    assert screen[where(screen, "hippolyte diff demo-orders/")].endswith("again: no difference")
    assert where(screen, "status demo-empty: empty") < where(screen, "monitor: ok")
    assert not any("Traceback" in line for line in screen), screen


def test_demo_backs_up_and_verifies_sample_tables(
    json_demo: tuple[subprocess.Popen[bytes], Path],
) -> None:
    demo, where = json_demo
    returncode = demo.wait(timeout=300)
    proc = subprocess.CompletedProcess(
        demo.args, returncode, (where / "out").read_text(), (where / "err").read_text()
    )
    tmp_path = where
    assert proc.returncode == 0, proc.stderr
    summary = orjson.loads(proc.stdout)
    counts = {r["table"]: r["item_count"] for r in summary["results"]}
    assert counts == {"demo-orders": 400, "demo-sessions": 133}  # demo-empty: skipped by the plan
    assert all(r["ok"] for r in summary["results"])
    assert all(": ok (" in line for line in summary["verify"])
    assert any("pipeline 1: demo-orders" in line for line in summary["plan"])
    assert any("skip demo-empty" in line for line in summary["plan"])
    assert (tmp_path / "repo" / "plan.html").read_text().startswith("<!DOCTYPE html>")
    assert sorted((p["table"], p["items"], p["proven"]) for p in summary["restores"]) == [
        ("demo-orders-restored", 400, True),
        ("demo-sessions-restored", 133, True),
    ]
    assert any("demo-orders: last backup" in line for line in summary["status"])
    assert summary["monitor"]["ok"]
    (message,) = summary["monitor"]["received"]
    assert message["ok"] and message["run_id"] == summary["run"]
    diff_file = tmp_path / "repo" / "bad-deploy.diff.jsonl"
    (orders,) = (r for r in summary["results"] if r["table"] == "demo-orders")
    # the table's backup id is its own start, which may be a second after the run's id
    assert summary["diff"] == {
        "backup": f"demo-orders/{orders['ref']['backup_id']}",
        "deleted": 2,
        "added": 1,
        "changed": 3,
        "identical": 395,  # the total rewritten in another notation included
        "file": str(diff_file),
        "matches": True,
    }
    *differences, last = (orjson.loads(line) for line in diff_file.read_bytes().splitlines())
    found = sorted((d["kind"], int(d["key"]["order"]["N"]), d["attributes"]) for d in differences)
    assert found == [
        ("added", 400, []),
        ("changed", 171, ["status"]),
        ("changed", 228, ["total"]),
        ("changed", 285, ["address"]),  # its city, inside the map
        ("deleted", 57, []),
        ("deleted", 114, []),
    ]  # not order 342, whose total was rewritten in another notation
    assert last["summary"]["identical"] == 395
    history = summary["history"]
    assert history["ok"] and history["matches"] and history["proven"]
    assert (history["deleted"], history["added"], history["changed"]) == (2, 1, 3)
    assert history["items"] == 400  # the orders as they were just before the deploy
    recovered = summary["recover"]
    assert recovered["ok"] and recovered["proven"] and recovered["diff_after"] == 0
    assert (recovered["put_back"], recovered["deleted"], recovered["undo_plan"]) == (5, 1, 6)
    rid = recovered["recovery_id"]
    assert (tmp_path / "repo" / "@recoveries" / rid / "_SUCCESS").exists()
    notes = [
        orjson.loads(line)["text"] for line in proc.stderr.splitlines() if '"event":"step"' in line
    ]
    pid = next(int(n.split("pid ")[1].rstrip(")")) for n in notes if "is up at" in n)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the demo stopped its DynamoDB Local


def run_on_terminal(argv: list[str]) -> str:
    """What ``argv`` writes to a terminal of 120 columns (a pseudo-terminal), as it came."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"}
    )
    os.close(slave)
    chunks = []
    try:
        while chunk := _read(master):
            chunks.append(chunk)
    finally:
        os.close(master)
    assert proc.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: every writer of the terminal has gone
        return b""


def test_module_and_help() -> None:
    proc = subprocess.run([*HIPPOLYTE, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "backup" in proc.stdout and "verify" in proc.stdout


def test_bad_config_file_exit_2_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text("read_percent = 3\n")
    proc = subprocess.run(
        [*HIPPOLYTE, "--config", str(cfg), "list", "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "read_percent" in proc.stderr and "Traceback" not in proc.stderr
