"""`python -m pycontainer_magics.cli ...`, the same as `pycontainer ...`."""

from . import main

raise SystemExit(main())
