"""Kubernetes: containers, pods and compose projects exported as Kubernetes YAML (generate.py), checked
offline against the Kubernetes OpenAPI schemas with kubernetes-validate, quantities and names checked
ourselves (validate.py, quantity.py), and Pod/Deployment YAML run here with this project's runtime as
pods (play.py).

May import: workloads/, runtime/ and everything below them. Never oci/, lab/, display/, magics/, cli/ or
kernel/; never IPython, pandas, matplotlib or ipywidgets.
"""
