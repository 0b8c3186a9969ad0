"""Kubernetes: containers, pods and compose projects exported as Kubernetes YAML (generate.py), checked
offline against the Kubernetes OpenAPI schemas (validate.py), and Pod/Deployment YAML run here with this
project's runtime (play.py). Above workloads/, below the magics and the CLI."""
