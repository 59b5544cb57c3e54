"""gluon-samplers: the metadata is in pyproject.toml; this file lets `setup.py egg_info` run."""
from setuptools import setup

setup()
