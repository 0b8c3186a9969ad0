"""`python -m pycontainer_magics run [options] -- CMD` (the same as the `pycontainer` command)."""

from .cli import main

raise SystemExit(main())
