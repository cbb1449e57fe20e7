"""The local servers the benchmarks start: the test suite's launchers (tests/support/servers.py),
importable whether a benchmark runs through run.py or on its own."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.servers import *  # noqa: E402, F403
from tests.support.servers import DUMMY_KEY, Server  # noqa: E402, F401
