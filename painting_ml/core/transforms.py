"""Names of the offline augmentation transforms — pure, so the config can validate them without
importing PIL or the database layer (painting_ml.data.augment applies them)."""

from __future__ import annotations

import re

FIXED = ("hflip", "vflip", "hvflip", "rot90", "rot180", "rot270")
#: JSON-schema pattern of a transform name (the trigger form checks it; is_transform adds the range).
TRANSFORM_PATTERN = r"^(hflip|vflip|hvflip|rot[0-9]{1,3}(\.[0-9]+)?)$"


def parse_angle(transform: str) -> float | None:
    """``rot<degrees>`` -> degrees (counter-clockwise), for any angle in (0, 360); None otherwise."""
    m = re.fullmatch(r"rot(\d{1,3}(?:\.\d+)?)", transform)
    return float(m.group(1)) if m and 0 < float(m.group(1)) < 360 else None


def is_transform(name: str) -> bool:
    return name in FIXED or parse_angle(name) is not None
