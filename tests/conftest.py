"""Shared pytest setup: deterministic seeds and a small thread count for the 2-core CI machine."""

import logging
import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def restore_package_logger():
    """default_setup configures the package logger (handlers, no propagation); undo it after the test."""
    log = logging.getLogger("mask2former_rankseg")
    saved = (list(log.handlers), log.propagate, log.level)
    yield
    for h in log.handlers:
        if h not in saved[0]:
            h.close()
    log.handlers[:], log.propagate, log.level = saved
