"""Teaching experiments built on the rest: the doctor (doctor.py: what this host can and cannot do, each
probe in a fresh interpreter) and the cgroup experiments (groups.py: named groups, OOM, CPU quota and
shares, fork bomb, run a workload in a group and sample it).

May import: oci/, workloads/, runtime/ and everything below them. Never display/, magics/, cli/ or
kernel/; never IPython, pandas, matplotlib or ipywidgets (display/ draws what these return).
"""
