"""Configuration: ``get_cfg()`` with every upstream key (and the package's own), safe YAML loading, validation."""

from .config import CfgNode, ConfigError, dump_config, load_yaml_with_base
from .defaults import (
    add_deeplab_config,
    add_maskformer2_config,
    add_maskformer2_video_config,
    add_package_config,
    add_rankseg_config,
    get_cfg,
)
from .safe_eval import UnsafeExpressionError, safe_eval
from .shipped import find_shipped_config, list_shipped_configs, resolve_config_file
from .validate import validate_config

__all__ = [
    "CfgNode",
    "ConfigError",
    "UnsafeExpressionError",
    "get_cfg",
    "add_deeplab_config",
    "add_maskformer2_config",
    "add_maskformer2_video_config",
    "add_rankseg_config",
    "add_package_config",
    "validate_config",
    "dump_config",
    "load_yaml_with_base",
    "safe_eval",
    "find_shipped_config",
    "list_shipped_configs",
    "resolve_config_file",
]
