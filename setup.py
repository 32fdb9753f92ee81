"""Builds the one compiled module, nelo_etl._wirefast (the staging parser's single pass over the
bytes; see nelo_etl/_wirefast.c). The Makefile runs it: `python setup.py build_ext --inplace`.
Nothing else here is packaged: the project runs from its folder."""
from setuptools import Extension, setup

setup(
    name="nelo-etl-native",
    version="1",
    ext_modules=[Extension("nelo_etl._wirefast", ["nelo_etl/_wirefast.c"],
                           extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
                           libraries=["dl"])],
)
