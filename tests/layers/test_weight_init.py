"""detectron2's Caffe2-style weight fills (layers/weight_init.py) and that importing the package stays quiet."""

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from mask2former_rankseg.layers import c2_msra_fill, c2_xavier_fill


def test_xavier_fill_is_uniform_within_sqrt_3_over_fan_in():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 32, 3)  # fan_in 576
    conv.bias.data.fill_(5.0)
    c2_xavier_fill(conv)
    bound = math.sqrt(3 / 576)
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.95 * bound
    assert float(conv.weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)  # uniform: std = bound / sqrt(3)
    assert torch.equal(conv.bias, torch.zeros(32))


def test_msra_fill_is_normal_with_std_sqrt_2_over_fan_out():
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 64, 3)  # fan_out 576
    c2_msra_fill(conv)
    assert float(conv.weight.std()) == pytest.approx(math.sqrt(2 / 576), rel=0.05)
    assert torch.equal(conv.bias, torch.zeros(64))
    no_bias = nn.Conv2d(4, 4, 1, bias=False)
    c2_msra_fill(no_bias)  # no bias: nothing else to fill


def test_importing_the_package_prints_no_torchscript_deprecation_warning():
    code = ("import warnings; warnings.simplefilter('error', FutureWarning); "
            "import mask2former_rankseg.modeling, mask2former_rankseg.engine, mask2former_rankseg.layers")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
