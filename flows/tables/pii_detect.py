"""Privacy by default: spot columns that look like personal data before they land undeclared.

Privacy used to apply only where a table declared it, so a raw export with an `email` column reached
bronze in clear without anyone deciding that it should. Two cheap detectors flag such columns:

- by **name** (validate time, from the spec's columns): the usual words for personal data — email,
  phone, name, address, ssn, iban, card, ip, dob, … — matched as whole words of the column name
  (`customer_email`, `billing_address`, `ip_addr`; not `shipping` or `zipper`);
- by **value** (build time, a small sample of each string column): e-mail addresses, phone numbers,
  card numbers that pass the Luhn check, IBANs that pass the ISO 13616 mod-97 check, national ids (US
  SSN, UK NINO, French NIR shapes) and IPv4/IPv6 addresses (the standard library's `ipaddress`). A column
  is flagged when most of its non-empty sampled values match one detector, so a free-text column with
  one stray address is not.

Pure functions, no pyarrow/duckdb: `specd validate` imports this module.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

# Whole-word name hints (a column name is split on `_`, `-`, `.`, digits and camelCase).
NAME_HINTS: dict[str, str] = {
    "email": "e-mail", "mail": "e-mail", "phone": "phone", "mobile": "phone", "tel": "phone",
    "firstname": "name", "lastname": "name", "surname": "name", "fullname": "name",
    "address": "address", "addr": "address", "street": "address", "postcode": "address", "zip": "address",
    "ssn": "national id", "nino": "national id", "nir": "national id", "passport": "national id",
    "iban": "IBAN", "card": "card number", "pan": "card number", "ip": "IP address", "dob": "date of birth",
    "birthdate": "date of birth", "birthday": "date of birth",
}
_PAIRS = {("first", "name"), ("last", "name"), ("birth", "date"), ("date", "birth"), ("of", "birth"), ("national", "id"),
          ("tax", "id"), ("credit", "card")}
_PERSONS = {"customer", "user", "person", "full", "contact", "client", "patient", "employee", "holder", "maiden"}
_SPLIT = re.compile(r"[_\-.\s0-9]+|(?<=[a-z])(?=[A-Z])")

_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^(\+|\()?[0-9][0-9 ()./\-]{6,18}[0-9]$")
_DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|^\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")
_CARD = re.compile(r"^[0-9][0-9 \-]{11,21}[0-9]$")
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_NATIONAL = (re.compile(r"^(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$"),  # US SSN
             re.compile(r"^[A-CEGHJ-PR-TW-Z]{2}\d{6}[A-D]$"),  # UK NINO
             re.compile(r"^[12]\d{2}(0[1-9]|1[0-2])\d{8}(\d{2})?$"))  # French NIR (13 or 15 digits)
SAMPLE_THRESHOLD = 0.6  # share of the non-empty sampled values one detector must match


def name_kind(column: str) -> str | None:
    """What a column name suggests it holds (`'e-mail'`, `'phone'`, …), or None."""
    words = [w.lower() for w in _SPLIT.split(column) if w]
    for pair in zip(words, words[1:], strict=False):
        if pair in _PAIRS:
            return {"name": "name", "date": "date of birth", "birth": "date of birth", "id": "national id",
                    "card": "card number"}[pair[1]]
    if words == ["name"] or (len(words) >= 2 and words[-1] == "name" and words[-2] in _PERSONS):
        return "name"
    for word in words:
        if word in NAME_HINTS:
            return NAME_HINTS[word]
    return None


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of a card number's digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    value = text.replace(" ", "").upper()
    if not _IBAN.match(value):
        return False
    moved = value[4:] + value[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _is_ip(text: str) -> bool:
    if not (("." in text and text.count(".") == 3) or ":" in text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def value_kind(text: str) -> str | None:
    """What one value looks like (`'e-mail'`, `'card number'`, …), or None."""
    value = text.strip()
    if not value or len(value) > 320:
        return None
    if "@" in value:
        return "e-mail" if _EMAIL.match(value) else None
    if _is_ip(value):
        return "IP address"
    if iban_ok(value):
        return "IBAN"
    if any(p.match(value) for p in _NATIONAL):
        return "national id"
    if _CARD.match(value):
        digits = re.sub(r"[ \-]", "", value)
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return "card number"
    if _PHONE.match(value) and not _DATE.match(value) and (value.startswith("+") or re.search(r"[ ()./\-]", value)):
        digits = re.sub(r"\D", "", value)
        if 7 <= len(digits) <= 15:
            return "phone"
    return None


def sample_kind(values: Iterable[object]) -> str | None:
    """The kind most of a sample of values share (SAMPLE_THRESHOLD of the non-empty ones), or None."""
    counts: dict[str, int] = {}
    seen = 0
    for value in values:
        if not isinstance(value, str) or not value.strip():
            continue
        seen += 1
        kind = value_kind(value)
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    if not seen or not counts:
        return None
    kind, hits = max(counts.items(), key=lambda item: item[1])
    return kind if hits >= SAMPLE_THRESHOLD * seen else None
