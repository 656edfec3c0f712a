"""SMS segment counting: what a carrier bills, so a notice can be kept within a budget.

GSM-7 text is counted in septets (extension-table characters take an escape plus the character);
anything else forces UCS-2, counted in UTF-16 code units. A concatenated message loses room per
part to the UDH header, and a character's units are never split across two parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_LIMIT = {"GSM-7": 160, "UCS-2": 70}
MULTIPART_LIMIT = {"GSM-7": 153, "UCS-2": 67}

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SegmentInfo:
    encoding: Encoding
    units: int
    segments: int


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def sms_encoding(text: str) -> Encoding:
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def char_units(ch: str, encoding: Encoding) -> int:
    if encoding == "GSM-7":
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def sms_segments(text: str) -> SegmentInfo:
    encoding = sms_encoding(text)
    sizes = [char_units(ch, encoding) for ch in text]
    units = sum(sizes)
    if units == 0:
        return SegmentInfo(encoding, 0, 0)
    if units <= SINGLE_LIMIT[encoding]:
        return SegmentInfo(encoding, units, 1)
    return SegmentInfo(encoding, units, _count_parts(sizes, MULTIPART_LIMIT[encoding]))


def _count_parts(sizes: list[int], capacity: int) -> int:
    parts, used = 1, 0
    for size in sizes:
        if used + size > capacity:
            parts, used = parts + 1, 0
        used += size
    return parts


def fits_sms(text: str, max_segments: int) -> bool:
    return sms_segments(text).segments <= max_segments


def ellipsis_for(text: str) -> str:
    """The ellipsis that keeps the text's encoding: "…" would turn GSM-7 text into UCS-2."""
    return "..." if is_gsm7(text) else "…"
