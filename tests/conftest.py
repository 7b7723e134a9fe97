"""Fixtures shared by the test files."""

import os

import pytest
import torch as th

from sb3_haepo.experiments import published


@pytest.fixture(autouse=True)
def restore_numeric_pins():
    """
    The variables that ``published.pin_numerics`` sets (the main job and the runner call it) as they were before each
    test, so that they do not leak into the subprocesses of later tests in the same worker.
    """
    saved = {name: os.environ.get(name) for name in published.NUMERIC_PINS}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def one_torch_thread():
    """
    One torch thread during a test: the machines running the tests have 2 shared cores, and these tests run forward
    passes over many steps or small models, which more threads only slow down. Restores the previous count after.
    """
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)
