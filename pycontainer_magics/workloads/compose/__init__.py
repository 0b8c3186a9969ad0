"""Compose: multi-container projects from a compose file (the Compose Specification's common subset).

model.py parses and validates a file into typed data (no kernel access); project.py brings a project up
and down on the runtime's detached containers, user networks and named volumes."""

from __future__ import annotations

from .model import ComposeError, ComposeFile, Service, load

__all__ = ["ComposeError", "ComposeFile", "Service", "load"]
