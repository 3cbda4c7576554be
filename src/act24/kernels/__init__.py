"""2:4 sparse GEMM backends behind one interface, each with a capability probe.

A backend computes `a @ b` where `a` (M x K) is already 2:4 sparse along K (a dense tensor holding at most 2
non-zeros in every group of 4 consecutive elements of a row). `reference` runs anywhere with dense math;
the others compress `a` and call real sparse tensor-core kernels. Every backend is checked against the
reference (`check_backend`) before it is trusted: a backend that gives wrong results is reported as
incorrect, never used.
"""

from .backend import Backend, BackendStatus, ReferenceBackend
from .backends import BACKENDS, BackendUnavailable, backend_statuses, check_backend, get_backend, select_backend
from .stock import CuSparseLtBackend, XformersCusparseLtBackend, XformersCutlassBackend, XformersFp8Sm90Backend

__all__ = ["BACKENDS", "Backend", "BackendStatus", "BackendUnavailable", "CuSparseLtBackend", "ReferenceBackend",
           "XformersCusparseLtBackend", "XformersCutlassBackend", "XformersFp8Sm90Backend", "backend_statuses",
           "check_backend", "get_backend", "select_backend"]
