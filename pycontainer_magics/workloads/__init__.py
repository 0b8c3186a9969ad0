"""What runs many containers or keeps them: detached containers (containers.py), exec into a running
one (exec.py), pods (pods.py), compose projects (compose/), Dockerfile builds, which run a container per
RUN step (build.py; the Dockerfile parser is images/dockerfile.py), named volumes (volumes.py), and prune
of what a killed kernel left (prune.py); and the Engine API daemon's containers: their records on disk
(daemon_store.py, json_log.py), a supervisor process each that outlives the daemon (supervisor.py),
forked by a warm launcher (launcher.py).

May import: runtime/ and everything below it (linux/, images/, network/, paths.py, errors.py). Never
oci/, lab/, display/, magics/, cli/ or kernel/; never IPython, pandas, matplotlib or ipywidgets.
Importing this package installs the pod resolver of runtime.run (so `--pod NAME` works).
"""

from __future__ import annotations

from . import pods as _pods  # noqa: F401 - installs runtime.run's pod resolver
