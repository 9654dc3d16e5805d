"""Only the optional C kernel; everything else about the package is in pyproject.toml.

Bulyan's coordinate kernel (defenses/aggregation/native.py) is a plain C shared library
loaded with ctypes. ``optional=True``: without a C compiler the install goes on and
Bulyan uses its NumPy path. ``-ffinite-math-only``: its inputs are finite (aggregators
reject non-finite updates first), so fminf/fmaxf become single SIMD instructions.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "defenses.aggregation._closest_to_median",
    sources=["defenses/aggregation/_closest_to_median.c"],
    extra_compile_args=["-O3", "-ffinite-math-only", "-fno-signed-zeros"],
    optional=True,
)])
