"""MXNet 1.9.1 (built for numpy < 1.24) on Python 3.12 and 3.13: the numpy names it reads, put back while it loads.

Python 3.12 needs numpy 1.26, 3.13 numpy 2.1 or newer, which removed names MXNet reads. Only those the installed
numpy lacks are set, as numpy 1.23 had them, and only while MXNet loads but for the two it reads as it runs
(CALL_TIME); no installed file is edited (docs/install.md)."""
from __future__ import annotations

import contextlib
import warnings

# Read by MXNet's functions, not only as it loads: mxnet/numpy/multiarray.py's boolean indexing (numpy.bool,
# which numpy 1.24-1.26 lack) and the handlers of mxnet/gluon/contrib/estimator (numpy.Inf, gone in numpy 2).
CALL_TIME = ("bool", "Inf")


def restore_numpy_names(numpy) -> list:
    """Put back on `numpy` the names MXNet reads that this numpy removed; return the names set."""
    def alias(name):  # a function of its own: MXNet's __array_function__ table is keyed by the function object
        return lambda *args, **kwargs: getattr(numpy, name)(*args, **kwargs)

    def removed(name):  # what numpy 1.20-1.26 itself returned for the financial functions (NEP 32)
        def refuse(*args, **kwargs):
            raise RuntimeError(f"numpy.{name} was removed in NumPy 1.20 (NEP 32): see numpy_financial")
        return refuse

    names = {
        "bool": bool,  # numpy 1.24 removed the alias (2.0 brought it back, as bool_): mxnet/numpy/utils.py
        # numpy 2.0 removed these constants: mxnet/numpy/utils.py reads them
        "PZERO": 0.0, "NZERO": -0.0, "PINF": float("inf"), "NINF": float("-inf"), "NAN": float("nan"),
        "NaN": float("nan"),
        "Inf": float("inf"),  # numpy 2.0: a default argument in mxnet/gluon/contrib/estimator/event_handler.py
        # numpy 2.0 removed alltrue and msort, 2.4 in1d and trapz: mxnet/numpy/fallback.py re-exports them
        "alltrue": alias("all"), "msort": lambda a: numpy.sort(a, axis=0),
        "in1d": lambda ar1, ar2, *args, **kwargs: numpy.isin(numpy.asarray(ar1).ravel(), ar2, *args, **kwargs),
        "trapz": alias("trapezoid"),
        # numpy 2.0 removed these too: mxnet/numpy_dispatch_protocol.py registers them for mx.np arrays
        "sometrue": alias("any"), "round_": alias("round"), "product": alias("prod"),
        # numpy 2.0 dropped the refusing stubs 1.20-1.26 kept: mxnet/numpy/fallback.py re-exports them
        **{name: removed(name) for name in ("mirr", "npv", "pmt", "ppmt", "pv", "rate")},
    }
    with warnings.catch_warnings():  # numpy 1.x warns as it hands out a deprecated name
        warnings.simplefilter("ignore")
        missing = [name for name in names if not hasattr(numpy, name)]
    for name in missing:
        setattr(numpy, name, names[name])
    return missing


@contextlib.contextmanager
def numpy_names(numpy):
    """A context in which MXNet 1.9.1 can load: numpy's names back (after it, only CALL_TIME's stay)."""
    restored = restore_numpy_names(numpy)
    try:
        yield
    finally:  # MXNet keeps what it read as it loaded (module constants, its dispatch table)
        for name in set(restored) - set(CALL_TIME):
            delattr(numpy, name)
