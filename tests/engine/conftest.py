"""Fixtures shared by the engine tests."""

import pytest
from helpers import make_tiny_synthetic


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    """The tiny synthetic semantic dataset, found through ``$DETECTRON2_DATASETS`` for the module's tests."""
    root = make_tiny_synthetic(tmp_path_factory.mktemp("datasets"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETECTRON2_DATASETS", str(root))
        yield root
