# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes resource quantities ("500m", "1Gi", "2e3", "1.5") as exact numbers.

Pure functions, no client library: parsing follows the grammar of
``k8s.io/apimachinery/pkg/api/resource`` (sign, decimal number, then a binary-SI suffix
``Ki Mi Gi Ti Pi Ei``, a decimal-SI suffix ``n u m k M G T P E`` or an exponent ``e3``/``E-2``).
Values are kept as ``fractions.Fraction`` so "0.1" and "100m" compare equal, and are rounded up
only when turned into the integer units the scheduler counts in (millicores for CPU, whole units
for everything else), the same way the scheduler rounds a request.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {
    "n": Fraction(1, 10 ** 9),
    "u": Fraction(1, 10 ** 6),
    "m": Fraction(1, 10 ** 3),
    "": Fraction(1),
    "k": Fraction(10 ** 3),
    "M": Fraction(10 ** 6),
    "G": Fraction(10 ** 9),
    "T": Fraction(10 ** 12),
    "P": Fraction(10 ** 15),
    "E": Fraction(10 ** 18),
}
_QUANTITY_RE = re.compile(
    r"^(?P<sign>[+-]?)(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exp>[+-]?[0-9]+))?$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value) -> Fraction:
    """Return the exact value of a quantity string (or int/float) as a Fraction.

    >>> parse_quantity("500m")
    Fraction(1, 2)
    """
    if isinstance(value, bool):
        raise QuantityError("not a quantity: %r" % (value,))
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    if not isinstance(value, str):
        raise QuantityError("not a quantity: %r" % (value,))
    match = _QUANTITY_RE.match(value.strip())
    if not match or not (match.group("int") or match.group("frac")):
        raise QuantityError("not a quantity: %r" % (value,))
    digits = (match.group("int") or "0") + "." + (match.group("frac") or "0")
    number = Fraction(digits)
    if match.group("exp") is not None:
        number *= Fraction(10) ** int(match.group("exp"))
    else:
        suffix = match.group("suffix") or ""
        number *= _BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix]
    return -number if match.group("sign") == "-" else number


def _ceil(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def to_milli(value) -> int:
    """Quantity in thousandths, rounded up (CPU: "1.5" -> 1500, "100m" -> 100)."""
    return _ceil(parse_quantity(value) * 1000)


def to_units(value) -> int:
    """Quantity in whole units, rounded up (memory: "1Ki" -> 1024, "1.5k" -> 1500)."""
    return _ceil(parse_quantity(value))


_AMOUNT_CACHE = {}
_AMOUNT_CACHE_LIMIT = 4096


def resource_amount(resource: str, value) -> int:
    """The integer a scheduler compares for ``resource``: millicores for cpu, units otherwise.

    Memoized: a cluster's pods repeat a few hundred distinct values ("100m", "128Mi") tens of
    thousands of times, and exact parsing is the costly part of reading a pod.
    """
    key = (resource == "cpu", value)
    try:
        return _AMOUNT_CACHE[key]
    except KeyError:
        pass
    except TypeError:  # unhashable: not a quantity, let the parser say so
        return to_milli(value) if resource == "cpu" else to_units(value)
    amount = to_milli(value) if resource == "cpu" else to_units(value)
    if len(_AMOUNT_CACHE) < _AMOUNT_CACHE_LIMIT:
        _AMOUNT_CACHE[key] = amount
    return amount


def format_milli(millis: int) -> str:
    """Millicores as kubectl shows them: 1500 -> "1500m", 2000 -> "2"."""
    if millis % 1000 == 0:
        return str(millis // 1000)
    return "%dm" % millis


def format_bytes(amount: int) -> str:
    """Bytes with the largest binary suffix that keeps the value exact: 1536Mi, 2Gi, 1000."""
    if amount == 0:
        return "0"
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if amount % _BINARY[suffix] == 0:
            return "%d%s" % (amount // _BINARY[suffix], suffix)
    return str(amount)


def format_amount(resource: str, amount: int) -> str:
    """Inverse of :func:`resource_amount` for messages."""
    if resource == "cpu":
        return format_milli(amount)
    if resource == "memory" or resource == "ephemeral-storage" or resource.startswith("hugepages-"):
        return format_bytes(amount)
    return str(amount)
