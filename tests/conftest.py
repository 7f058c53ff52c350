import os
import sys

import pytest

# the tests' reference implementations live beside them
sys.path.insert(0, os.path.dirname(__file__))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running test (real model or multi-process training)")
