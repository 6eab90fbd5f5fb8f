"""The console commands and the scripts parse their command line before importing torch: ``--help`` and usage
errors come at once."""

import subprocess
import sys

import pytest
from helpers import REPO

_REPORT = "import atexit, sys; atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')); "


@pytest.mark.slow
@pytest.mark.parametrize("program", [
    "import runpy; sys.argv = ['train_net.py', '--help']; runpy.run_path('train_net.py', run_name='__main__')",
    "import runpy; sys.argv = ['demo.py', '--help']; runpy.run_path('demo/demo.py', run_name='__main__')",
    "from mask2former_rankseg.cli.entry import train; train(['--help'])",
    "from mask2former_rankseg.cli.entry import demo; demo(['--help'])",
    "from mask2former_rankseg.cli.entry import train; train([])",  # the usage error: no --config-file
])
def test_help_and_usage_errors_do_not_import_torch(program):
    done = subprocess.run([sys.executable, "-c", _REPORT + program], cwd=REPO, capture_output=True, text=True)
    assert done.stdout.strip().endswith("NO-TORCH"), (done.stdout[-500:], done.stderr[-2000:])
    assert done.returncode == (2 if "train([])" in program else 0)
    assert ("--config-file" in done.stdout) or ("--config-file" in done.stderr)
