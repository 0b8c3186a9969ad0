"""One error hierarchy: every error the library raises is a PycontainerError; OS and netlink failures keep
their errno, the path or object and a hint; str() is one line from those fields; the fields survive the
fork pipe (pickle)."""

from __future__ import annotations

import errno
import importlib
import inspect
import os
import pickle
import pkgutil

import pytest

import pycontainer_magics
from pycontainer_magics.errors import InvalidInput, OSFailure, PycontainerError

# Exceptions of the package that are not errors of the library, each for a reason.
NOT_LIBRARY_ERRORS = {
    "pycontainer_magics.runtime.run.ContainerInterrupted",  # an interrupt (a KeyboardInterrupt), not an error
    "pycontainer_magics.runtime.holder.SetupFailed",  # internal: carries a child's report, re-raised as LaunchError
    "pycontainer_magics.runtime.run._HostChanged",  # internal: a kept plan no longer fits the host; run() starts again
    "pycontainer_magics.lab.doctor.ProbeFailed",  # internal: a probe's failure becomes a row of the table
    "pycontainer_magics.engine.http.ApiError",  # an HTTP answer of the Engine API (status + message), not raised out
    "pycontainer_magics.engine.http._ClientGone",  # internal: the HTTP client hung up
    "pycontainer_magics.cli.oci.UsageError",  # internal to the runc command line: becomes a log line and exit 1
    "pycontainer_magics.images.tarstream._Truncated",  # internal: the tar reader's end of data, caught there
}
OPTIONAL = ("kube", "engine")  # layers whose imports may need extras


def _exception_classes() -> list[type[BaseException]]:
    out = []
    for m in pkgutil.walk_packages(pycontainer_magics.__path__, "pycontainer_magics."):
        if m.name.endswith("__main__") or m.name.startswith("pycontainer_magics.magics"):
            continue  # the magic layer's own CellError family renders errors; it is not the library's
        try:
            mod = importlib.import_module(m.name)
        except ImportError:
            if m.name.split(".")[1] in OPTIONAL:
                continue
            raise
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == m.name:
                out.append(obj)
    return out


def test_every_library_error_is_a_pycontainer_error():
    classes = _exception_classes()
    assert len(classes) > 30
    stray = [f"{c.__module__}.{c.__qualname__}" for c in classes
             if not issubclass(c, PycontainerError) and f"{c.__module__}.{c.__qualname__}" not in NOT_LIBRARY_ERRORS]
    assert not stray, f"not derived from errors.PycontainerError: {stray}"


def test_os_failures_are_oserrors_and_bad_input_is_a_valueerror():
    from pycontainer_magics.linux.cgroups import CgroupError
    from pycontainer_magics.network import NetworkError
    from pycontainer_magics.oci.bundle import BundleError
    from pycontainer_magics.runtime import LaunchError, SpecError

    for cls in (CgroupError, NetworkError, LaunchError):
        assert issubclass(cls, OSFailure) and issubclass(cls, OSError)
    for cls in (SpecError, BundleError):
        assert issubclass(cls, InvalidInput) and issubclass(cls, ValueError)


def test_one_line_from_the_fields_and_the_fields_survive_pickling():
    from pycontainer_magics.linux.cgroups import CgroupError

    e = CgroupError(errno.EACCES, "cannot create group", "/sys/fs/cgroup/memory/x")
    e.hint = "delegate a cgroup"
    assert str(e) == "cannot create group (/sys/fs/cgroup/memory/x); delegate a cgroup"
    assert (e.errno, e.filename, e.path, e.needs) == (errno.EACCES, "/sys/fs/cgroup/memory/x",
                                                      "/sys/fs/cgroup/memory/x", "cgroup_limits")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is CgroupError and str(back) == str(e)
    assert (back.errno, back.filename, back.hint, back.needs) == (e.errno, e.filename, e.hint, e.needs)
    assert "\n" not in str(e) and not str(e).startswith("[Errno")


def test_an_os_failure_keeps_errno_and_path():
    from pycontainer_magics.linux.cgroups import CgroupError
    from pycontainer_magics.linux.cgroups._io import write

    with pytest.raises(CgroupError) as info:
        write("/proc/self/no-such-control-file", "1")
    assert info.value.errno == errno.ENOENT and info.value.path == "/proc/self/no-such-control-file"


@pytest.mark.root
@pytest.mark.network
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_netlink_failure_keeps_its_errno():
    from pycontainer_magics.network import NetworkError
    from pycontainer_magics.network.netns import iproute

    with pytest.raises(NetworkError) as info, iproute() as ipr:
        ipr.link("del", index=2**31 - 7)  # no such link: the kernel answers ENODEV
    e = info.value
    assert e.errno == errno.ENODEV and "ENODEV" in str(e) and "\n" not in str(e), str(e)
    assert e.needs == "networks"
