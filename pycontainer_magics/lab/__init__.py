"""Teaching experiments built on the rest: the doctor (doctor.py: what this host can and cannot do, each
probe in a fresh interpreter), named cgroups (groups.py), a process run in a group and sampled
(group_run.py) and the cgroup experiments (experiments.py: OOM, CPU quota and shares, fork bomb).

May import: oci/, workloads/, runtime/ and everything below them. Never display/, magics/, cli/ or
kernel/; never IPython, pandas, matplotlib or ipywidgets (display/ draws what these return).
"""
