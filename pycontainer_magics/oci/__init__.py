"""OCI: runtime bundles (bundle.py: ContainerSpec <-> config.json, validated against the runtime-spec
schemas shipped in schemas/), the runc-compatible lifecycle engines call (lifecycle.py: create, start,
state, kill, delete, list, spec) and the conformance table against crun and runc (conformance.py).

May import: workloads/, runtime/ and everything below them. Never lab/, display/, magics/, cli/ or
kernel/; never IPython, pandas, matplotlib or ipywidgets (engines call the lifecycle often: keep it lean).
"""
