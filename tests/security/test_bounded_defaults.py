"""MED 7 of issue 16: a container started with Docker's options is bounded by default — a pids limit (a fork
bomb stops there) and a size for its writable layer (a full disk stops there, instead of eating the host's
RAM: the layer is a tmpfs) — overridable per cell and in a configuration file, and shown in the summary card."""

from __future__ import annotations

import os

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.runtime import SpecError
from pycontainer_magics.runtime.config import DEFAULT_PIDS_LIMIT, DEFAULT_STORAGE_SIZE
from pycontainer_magics.runtime.parse import build_spec


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("PYCONTAINER_CONFIG", str(path))
    return path




def test_the_lab_defaults_apply_unless_a_cell_or_the_configuration_says_otherwise(config, monkeypatch):
    monkeypatch.delenv("PYCONTAINER_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config.parent / "none"))
    s = build_spec(command=["true"])
    assert (s.pids_limit, s.storage_size, s.default_bounds) == (DEFAULT_PIDS_LIMIT, DEFAULT_STORAGE_SIZE,
                                                                ("pids_limit", "storage_size"))
    s = build_spec(command=["true"], pids_limit="-1", storage_opt=["size=unlimited"])
    assert (s.pids_limit, s.storage_size, s.default_bounds) == (None, None, ())
    s = build_spec(command=["true"], pids_limit="50", storage_opt=["size=2g"])
    assert (s.pids_limit, s.storage_size, s.default_bounds) == (50, 2 << 30, ())
    monkeypatch.setenv("PYCONTAINER_CONFIG", str(config))
    config.write_text('[container]\npids-limit = 64\nstorage-size = "256m"\n')
    s = build_spec(command=["true"])
    assert (s.pids_limit, s.storage_size, s.default_bounds) == (64, 256 << 20, ("pids_limit", "storage_size"))
    config.write_text("[container]\npids-limit = -1\nstorage-size = 'unlimited'\n")
    assert build_spec(command=["true"]).pids_limit is None
    config.write_text("[container]\npids = 5\n")
    with pytest.raises(SpecError, match=r"config.toml: unknown key 'pids' in \[container\]"):
        build_spec(command=["true"])
    config.write_text("[container]\npids-limit = 0\n")
    with pytest.raises(SpecError, match="pids-limit = 0: a positive whole number, or -1"):
        build_spec(command=["true"])
    config.write_text("")
    with pytest.raises(SpecError, match="unsupported --storage-opt 'quota=1g': expected size=SIZE"):
        build_spec(command=["true"], storage_opt=["quota=1g"])


def test_the_configuration_file_is_found_where_the_variables_say_as_they_change(tmp_path, monkeypatch):
    """Where to look is kept while the variables that name it stay the same: a file made there later is still
    found, and a changed $XDG_CONFIG_HOME or $HOME moves the look-up."""
    from pycontainer_magics.runtime.config import config_path, defaults

    if os.path.exists("/etc/pycontainer_magics/config.toml"):
        pytest.skip("this host has a configuration file in /etc")

    monkeypatch.delenv("PYCONTAINER_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert (config_path(), defaults().pids_limit) == (None, DEFAULT_PIDS_LIMIT)
    made = tmp_path / "xdg" / "pycontainer_magics" / "config.toml"
    made.parent.mkdir(parents=True)
    made.write_text("[container]\npids-limit = 33\n")
    assert (config_path(), defaults().pids_limit) == (str(made), 33)
    made.write_text("[container]\npids-limit = 34\n")
    os.utime(made, ns=(0, 1))  # (a new mtime whatever the clock's grain)
    assert defaults().pids_limit == 34
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    assert config_path() is None
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    at_home = tmp_path / "home" / ".config" / "pycontainer_magics" / "config.toml"
    at_home.parent.mkdir(parents=True)
    at_home.write_text("[container]\npids-limit = 35\n")
    assert (config_path(), defaults().pids_limit) == (str(at_home), 35)
    monkeypatch.setenv("PYCONTAINER_CONFIG", str(tmp_path / "missing.toml"))  # named: taken as it is
    assert config_path() == str(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="missing.toml: cannot read it"):
        defaults()


FORK_BOMB = """
import os, time
children = []
try:
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    print("not stopped")
except OSError as e:
    print("stopped", type(e).__name__)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


@pytest.mark.root
@pytest.mark.usefixtures("host_clean")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)")
def test_a_fork_bomb_and_a_full_disk_stop_at_the_default_bounds(config):
    from pycontainer_magics.display.html import summary_rows
    from pycontainer_magics.runtime import run

    config.write_text('[container]\npids-limit = 40\nstorage-size = "32m"\n')
    bomb = run(build_spec(python_code=FORK_BOMB))
    assert bomb.pids_limit == 40 and bomb.peak_pids is not None and bomb.peak_pids <= 40
    assert bomb.stdout.split() == ["stopped", "BlockingIOError"], bomb.stdout + bomb.stderr
    rows = dict(summary_rows(bomb))
    assert rows["peak pids"].endswith("/ 40 (default)") and rows["writable layer"] == "up to 32.0 MiB (default)"
    fill = "dd if=/dev/zero of=/big bs=1M count=64 2>&1 | grep -o 'No space left on device'; ls -l /big"
    full = run(build_spec(command=["sh", "-c", fill + " | tr -s ' ' | cut -d' ' -f5"]))
    assert "No space left on device" in full.stdout and int(full.stdout.split()[-1]) < 32 << 20, full.stdout
    roomy = run(build_spec(command=["sh", "-c", "dd if=/dev/zero of=/big bs=1M count=64 2>/dev/null && echo ok"],
                           storage_opt=["size=128m"]))
    assert roomy.stdout == "ok\n"
