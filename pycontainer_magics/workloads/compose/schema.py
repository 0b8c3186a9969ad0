"""The JSON schema of the Compose Specification's subset `%%compose` runs.

Structure and types only; what a schema cannot say well (references between sections, cycles, sizes and
durations that must parse) is checked in model.py. Keys of the Compose Specification that are valid
there but not run here are listed in UNSUPPORTED_*, so the error can say "not supported" rather than
"unknown". `x-` keys (extensions) are allowed at the top level and in a service, as the spec allows.
"""

from __future__ import annotations

from typing import Any

STR_OR_LIST: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
NUM_OR_STR: dict[str, Any] = {"type": ["number", "string"]}
DURATION: dict[str, Any] = {"type": ["string", "number"]}
SIZE: dict[str, Any] = {"type": ["string", "integer"]}
NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
# HOST:CONTAINER with optional IP and protocol, or a container port alone (host port picked).
PORT_PATTERN = r"^((\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d{1,5}:)?\d{1,5}(/(tcp|udp))?$"
RESTART_PATTERN = r"^(no|always|unless-stopped|on-failure(:[0-9]+)?)$"

ENVIRONMENT: dict[str, Any] = {
    "oneOf": [
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "patternProperties": {".+": {"type": ["string", "number", "boolean", "null"]}},
         "additionalProperties": False},
    ]
}

HEALTHCHECK: dict[str, Any] = {
    "type": "object",
    "properties": {
        "test": STR_OR_LIST,
        "interval": DURATION,
        "timeout": DURATION,
        "retries": {"type": "integer", "minimum": 0},
        "start_period": DURATION,
        "start_interval": DURATION,
        "disable": {"type": "boolean"},
    },
    "additionalProperties": False,
}

DEPENDS_ON: dict[str, Any] = {
    "oneOf": [
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "patternProperties": {".+": {
            "type": "object",
            "properties": {
                "condition": {"enum": ["service_started", "service_healthy", "service_completed_successfully"]},
                "required": {"type": "boolean"},
                "restart": {"type": "boolean"},
            },
            "additionalProperties": False,
        }}},
    ]
}

VOLUME_LONG: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"enum": ["volume", "bind", "tmpfs"]},
        "source": {"type": "string"},
        "target": {"type": "string"},
        "read_only": {"type": "boolean"},
        "tmpfs": {"type": "object", "properties": {"size": SIZE, "mode": {"type": ["integer", "string"]}},
                  "additionalProperties": False},
        "bind": {"type": "object"},
        "volume": {"type": "object"},
    },
    "required": ["type", "target"],
    "additionalProperties": False,
}

PORT_LONG: dict[str, Any] = {
    "type": "object",
    "properties": {
        "target": {"type": "integer"},
        "published": {"type": ["integer", "string"]},
        "host_ip": {"type": "string"},
        "protocol": {"enum": ["tcp", "udp"]},
        "mode": {"enum": ["host", "ingress"]},
        "name": {"type": "string"},
    },
    "required": ["target"],
    "additionalProperties": False,
}

LIMITS: dict[str, Any] = {
    "type": "object",
    "properties": {"memory": SIZE, "cpus": NUM_OR_STR, "pids": {"type": "integer"}},
    "additionalProperties": False,
}

SERVICE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "image": {"type": "string"},
        "build": {"oneOf": [
            {"type": "string"},
            {"type": "object", "properties": {
                "context": {"type": "string"},
                "dockerfile": {"type": "string"},
                "args": ENVIRONMENT,
            }, "additionalProperties": False},
        ]},
        "command": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        "entrypoint": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                                 {"type": "null"}]},
        "environment": ENVIRONMENT,
        "ports": {"type": "array", "items": {"oneOf": [
            {"type": "string", "pattern": PORT_PATTERN}, {"type": "integer"}, PORT_LONG]}},
        "expose": {"type": "array", "items": {"type": ["string", "integer"]}},
        "volumes": {"type": "array", "items": {"oneOf": [{"type": "string"}, VOLUME_LONG]}},
        "tmpfs": STR_OR_LIST,
        "networks": {"oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "patternProperties": {".+": {"oneOf": [
                {"type": "null"},
                {"type": "object", "properties": {"aliases": {"type": "array", "items": {"type": "string"}}},
                 "additionalProperties": False}]}}},
        ]},
        "depends_on": DEPENDS_ON,
        "healthcheck": HEALTHCHECK,
        "restart": {"type": "string", "pattern": RESTART_PATTERN},
        "mem_limit": SIZE,
        "memswap_limit": SIZE,
        "cpus": NUM_OR_STR,
        "cpu_shares": {"type": "integer"},
        "cpuset": {"type": "string"},
        "pids_limit": {"type": "integer"},
        "deploy": {"type": "object", "properties": {
            "resources": {"type": "object", "properties": {"limits": LIMITS, "reservations": {"type": "object"}},
                          "additionalProperties": False},
            "restart_policy": {"type": "object", "properties": {
                "condition": {"enum": ["none", "on-failure", "any"]},
                "max_attempts": {"type": "integer", "minimum": 0},
            }, "additionalProperties": False},
        }, "additionalProperties": False},
        "hostname": {"type": "string"},
        "working_dir": {"type": "string"},
        "user": {"type": ["string", "integer"]},
        "container_name": {"type": "string", "pattern": NAME_PATTERN},
        "read_only": {"type": "boolean"},
        "cap_add": {"type": "array", "items": {"type": "string"}},
        "cap_drop": {"type": "array", "items": {"type": "string"}},
        "stop_grace_period": DURATION,
        "labels": ENVIRONMENT,
        "ulimits": {"type": "object", "patternProperties": {".+": {"oneOf": [
            {"type": ["integer", "string"]},
            {"type": "object", "properties": {"soft": {"type": ["integer", "string"]},
                                              "hard": {"type": ["integer", "string"]}},
             "required": ["soft", "hard"], "additionalProperties": False}]}}},
    },
    "patternProperties": {"^x-": {}},
    "additionalProperties": False,
}

COMPOSE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "version": {"type": ["string", "number"]},  # obsolete, accepted and ignored (as docker compose does)
        "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]*$"},
        "services": {"type": "object", "patternProperties": {".+": SERVICE}},
        "networks": {"type": ["object", "null"], "patternProperties": {".+": {"oneOf": [
            {"type": "null"},
            {"type": "object", "properties": {
                "name": {"type": "string"},
                "external": {"type": "boolean"},
                "internal": {"type": "boolean"},
                "driver": {"enum": ["bridge"]},
                "ipam": {"type": "object", "properties": {
                    "config": {"type": "array", "items": {"type": "object", "properties": {
                        "subnet": {"type": "string"}, "gateway": {"type": "string"}},
                        "additionalProperties": False}}},
                    "additionalProperties": False},
                "labels": ENVIRONMENT,
            }, "additionalProperties": False}]}}},
        "volumes": {"type": ["object", "null"], "patternProperties": {".+": {"oneOf": [
            {"type": "null"},
            {"type": "object", "properties": {
                "name": {"type": "string"}, "external": {"type": "boolean"}, "driver": {"enum": ["local"]},
                "labels": ENVIRONMENT,
            }, "additionalProperties": False}]}}},
    },
    "required": ["services"],
    "patternProperties": {"^x-": {}},
    "additionalProperties": False,
}

# Valid Compose Specification keys this subset does not run: refused with "not supported here".
UNSUPPORTED_TOP = {"configs", "secrets", "include", "models"}
UNSUPPORTED_SERVICE = {
    "annotations", "attach", "blkio_config", "cgroup", "cgroup_parent", "configs", "cpu_count", "cpu_percent",
    "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "credential_spec", "device_cgroup_rules",
    "devices", "dns", "dns_opt", "dns_search", "domainname", "env_file", "extends", "external_links",
    "extra_hosts", "group_add", "init", "ipc", "isolation", "links", "logging", "mac_address", "mem_reservation",
    "mem_swappiness", "network_mode", "oom_kill_disable", "oom_score_adj", "pid", "platform", "privileged",
    "profiles", "pull_policy", "runtime", "scale", "secrets", "security_opt", "shm_size", "stdin_open",
    "stop_signal", "storage_opt", "sysctls", "tty", "userns_mode", "uts", "volumes_from", "develop",
    "gpus", "label_file", "provider", "post_start", "pre_stop", "use_api_socket",
}

SERVICE_KEYS = sorted(SERVICE["properties"])
TOP_KEYS = sorted(COMPOSE["properties"])
