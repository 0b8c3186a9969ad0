"""`pycontainer serve`: a daemon speaking the Docker Engine API on a unix socket, so the docker CLI and
docker-py drive this project's containers, images, networks and volumes.

    http.py       HTTP/1.1 on asyncio: keep-alive, chunked bodies both ways, hijacked connections
    router.py     /vX.Y prefixes, routes, the 404 for what is not here
    routes_*.py   the endpoints, with dockerd's JSON shapes and status codes
    backend.py    the containers: create, start (through the warm launcher), stop, wait, remove
    stdio.py      stdin and terminals: a container's stdio channel, the detach keys (-i, -t, attach, exec)
    daemon.py     start-up, the socket, signals, logs

The daemon keeps no container state of its own that matters: containers live in workloads/daemon_store.py
records, each run by a supervisor process (workloads/supervisor.py) that outlives the daemon.

May import: lab/, oci/, workloads/, runtime/ and everything below them. Never display/, magics/, cli/ or
kernel/; never IPython, pandas, matplotlib or ipywidgets (the daemon's import path stays lean).
"""
