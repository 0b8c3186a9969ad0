"""Kubernetes quantities (`64Mi`, `500m`, `1.5G`, `2e3`): parse, check, and write them.

The OpenAPI schema types a quantity only as "string or number", so `kubernetes-validate` passes
`memory: 12QB`; the API server would refuse it. This is the API server's grammar
(k8s.io/apimachinery/pkg/api/resource, quantity.go):

    <quantity> ::= <signedNumber><suffix>
    <suffix>   ::= Ki | Mi | Gi | Ti | Pi | Ei | m | "" | k | M | G | T | P | E | (e|E)<signedNumber>
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from ..errors import InvalidInput

QUANTITY_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
            "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}
HINT = "like 64Mi, 1G, 500m or 0.5"


class QuantityError(InvalidInput):
    """Not a Kubernetes quantity (64Mi, 1G, 500m, 0.5)."""


def parse_quantity(value: object) -> Decimal:
    """The quantity's value (bytes for memory, cores for cpu). QuantityError if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QuantityError(f"{value!r} is not a Kubernetes quantity ({HINT})")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise QuantityError(f"{value!r} is not a Kubernetes quantity ({HINT})")
        return Decimal(str(value))
    m = QUANTITY_RE.match(value.strip()) if value == value.strip() else None
    if m is None:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity ({HINT})")
    number, suffix = Decimal(m.group(1)), m.group(2) or ""
    try:
        if suffix in _BINARY:
            return number * _BINARY[suffix]
        if suffix in _DECIMAL:
            return number * _DECIMAL[suffix]
        return number * Decimal(10) ** int(suffix[1:])
    except (InvalidOperation, OverflowError, ValueError):
        raise QuantityError(f"{value!r} is out of range") from None


def memory(n: int) -> str:
    """Bytes as Kubernetes writes them: the largest binary suffix that divides exactly (64Mi, 1536Ki),
    else plain bytes."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if n and n % _BINARY[suffix] == 0:
            return f"{n // _BINARY[suffix]}{suffix}"
    return str(n)


def cpu(cores: float) -> str:
    """Cores as millicores (`500m`), or whole cores (`2`). Kubernetes' resolution is 1m."""
    milli = round(cores * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def to_bytes(value: object) -> int:
    """A memory quantity as whole bytes (rounded up, as the kubelet does)."""
    return int(math.ceil(parse_quantity(value)))


def to_cores(value: object) -> float:
    return float(parse_quantity(value))


__all__ = ["QuantityError", "cpu", "memory", "parse_quantity", "to_bytes", "to_cores"]
