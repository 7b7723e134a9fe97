"""Fixtures shared by the test files."""

import pytest
import torch as th


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
