"""gluon-samplers: drop-in, correct and fast samplers for MXNet/Gluon detection training."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'samplers', '__init__.py'), encoding='utf-8') as f:
    VERSION = re.search(r"^__version__ = '([^']+)'", f.read(), re.M).group(1)
with open(os.path.join(HERE, 'README.md'), encoding='utf-8') as f:
    LONG_DESCRIPTION = f.read()

setup(
    name='gluon-samplers',
    version=VERSION,
    description='Drop-in positive/negative samplers for MXNet/Gluon object detection '
                '(GluonCV compatible), with hard-object flags',
    long_description=LONG_DESCRIPTION,
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['samplers', 'samplers.*']),
    license_files=['LICENSE'],
    # Tested on 3.8 to 3.12 (Makefile's SUPPORTED). mxnet 1.9.1 cannot install on 3.13: it
    # needs numpy < 2, which has no build for 3.13.
    python_requires='>=3.8,<3.13',
    # mxnet 1.9.1 fails to import under numpy 2. numpy 1.24 to 1.26 work only with the aliases
    # samplers/_compat.py restores; 3.12 needs them (its first numpy build is 1.26) and
    # setuptools for the distutils mxnet and gluoncv import.
    install_requires=[
        'mxnet>=1.9.1,<2',
        'numpy>=1.16,<1.24; python_version < "3.12"',
        'numpy>=1.26,<2; python_version >= "3.12"',
        'setuptools; python_version >= "3.12"',
    ],
    extras_require={
        'gluoncv': ['gluoncv==0.10.5.post0'],
        'viz': ['matplotlib>=3.3'],
        'test': ['pytest>=7', 'hypothesis>=6'],
    },
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.8',
        'Programming Language :: Python :: 3.9',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
