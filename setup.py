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
    python_requires='>=3.8',
    # mxnet 1.9.1 breaks with numpy >= 1.24 and fails to import under numpy 2.
    install_requires=['mxnet>=1.9.1,<2', 'numpy>=1.16,<1.24'],
    extras_require={
        'gluoncv': ['gluoncv==0.10.5.post0'],
        'viz': ['matplotlib>=3.3'],
        'test': ['pytest>=7', 'hypothesis>=6'],
    },
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
