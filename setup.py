"""Build script for mask2former_rankseg (metadata lives in pyproject.toml)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["mask2former_rankseg", "mask2former_rankseg.*"]),
    include_package_data=True,
)
