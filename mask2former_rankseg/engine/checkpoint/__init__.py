"""Checkpoints: atomic saving; loading ``.pth``, detectron2 / official ``.pkl`` files and URLs safely;
clear reports of missing, unexpected and mis-shaped keys; resume.

Nothing here runs code from a file: ``.pth`` files are read with ``torch.load(weights_only=True)`` (numpy
arrays allowed), ``.pkl`` files with an unpickler that knows only numpy arrays and plain containers.

Modules: :mod:`.errors` (:class:`CheckpointError`), :mod:`.safe_pickle` (the restricted unpickler),
:mod:`.formats` (a ``.pth`` / ``.pkl`` / ``.safetensors`` / jax ``.npz`` file to a state dict), :mod:`.urls`
(``detectron2://`` and ``http(s)://`` names to cached local files), :mod:`.backbone_files` (a pretrained backbone
file's names to the model's ``backbone.``, its layout adapted by the backbone), :mod:`.key_matching` (checkpoint
keys to model keys, and the report of what did not fit), :mod:`.checkpointer` (saving, resuming, loading).
"""

from ...utils.file_io import atomic_write
from .checkpointer import Checkpointer
from .errors import CheckpointError
from .formats import load_checkpoint_file, load_pkl
from .key_matching import IncompatibleKeys, align_by_suffix
from .safe_pickle import load_plain_pickle

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "IncompatibleKeys",
    "align_by_suffix",
    "atomic_write",
    "load_checkpoint_file",
    "load_pkl",
    "load_plain_pickle",
]
