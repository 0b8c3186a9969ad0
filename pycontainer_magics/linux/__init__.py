"""Kernel interfaces only: syscalls through ctypes (libc.py), namespaces, mounts, cgroups v1 and v2 behind
one interface (cgroups/), capabilities, seccomp filters, id maps, rlimits, network devices.

May import: the standard library and the package's top-level helpers (paths.py, errors.py). Nothing else
of the package; never IPython, pandas, matplotlib or ipywidgets.
"""
