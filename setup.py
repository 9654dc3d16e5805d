"""What pyproject.toml cannot say: the ``fedarena.*`` package mapping and the optional C kernel.

The repository keeps ``attacks/``, ``defenses/``, ``fl_core/`` and ``benchmarks/`` at its
root; a wheel (or an editable install) ships them as ``fedarena.attacks`` … so FedArena
takes no top-level name but ``fedarena`` (see ``fedarena/__init__.py``). The subpackages
are found here, not listed, so a new one ships without an edit.

Bulyan's coordinate kernel (defenses/aggregation/native.py) is a plain C shared library
loaded with ctypes. ``optional=True``: without a C compiler the install goes on and
Bulyan uses its NumPy path. ``-ffinite-math-only``: its inputs are finite (aggregators
reject non-finite updates first), so fminf/fmaxf become single SIMD instructions.
"""

from setuptools import Extension, find_packages, setup

TOP = ("attacks", "defenses", "fl_core", "benchmarks")

setup(
    packages=["fedarena"] + [f"fedarena.{p}" for p in find_packages(include=[f"{t}*" for t in TOP])],
    package_dir={"fedarena": "fedarena", **{f"fedarena.{t}": t for t in TOP}},
    ext_modules=[Extension(
        "fedarena.defenses.aggregation._closest_to_median",
        sources=["defenses/aggregation/_closest_to_median.c"],
        extra_compile_args=["-O3", "-ffinite-math-only", "-fno-signed-zeros"],
        optional=True,
    )],
)
