"""The compiled fast path (responder/_accel/_speedups.c) is optional: without a C compiler and
the Python headers the build goes on without it and the pure-Python parser does all the
work (slower, same answers). Everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "responder._accel._speedups",
            ["responder/_accel/_speedups.c"],
            depends=["responder/_accel/_framing.h"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
