"""Builds the one compiled module, nelo_etl._wirefast (the staging parser's single pass over the
bytes; see nelo_etl/_wirefast.c). The Makefile runs it: `python setup.py build_ext --inplace`.
Nothing else here is packaged: the project runs from its folder."""
import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "nelo_etl/_wirefast.c"
# the module carries the hash of the source it was built from: staging refuses a stale build
SOURCE_SHA = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()

setup(
    name="nelo-etl-native",
    version="1",
    ext_modules=[Extension("nelo_etl._wirefast", [SOURCE],
                           define_macros=[("SOURCE_SHA", f'"{SOURCE_SHA}"')],
                           extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
                           libraries=["dl"])],
)
