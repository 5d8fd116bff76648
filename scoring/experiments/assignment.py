"""Deterministic arm assignment: a hash of (experiment salt, lead id) picks the arm.

The same lead always lands in the same arm of an experiment, whichever process scores it and
however often (rescores, restarts), and leads of two experiments (two salts) are assigned
independently. SHA-256 rather than Python's `hash`, which is salted per process."""

from __future__ import annotations

import hashlib

import numpy as np

CHAMPION = "champion"
CHALLENGER = "challenger"
_SCALE = float(2**64)


def assignment_unit(salt: str, lead_id: int) -> float:
    """A number in [0, 1), uniform over leads, fixed by (salt, lead id)."""
    digest = hashlib.sha256(f"{salt}:{int(lead_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def challenger_mask(salt: str, lead_ids: np.ndarray, split: float) -> np.ndarray:
    """True where the lead is in the challenger arm: its unit falls below `split` (the
    challenger's share). Hashing is per lead, but no I/O: a 20,000-lead chunk takes ~20 ms."""
    if not 0.0 < split < 1.0:
        raise ValueError(f"split must be strictly between 0 and 1; got {split}")
    units = np.fromiter(
        (assignment_unit(salt, lead_id) for lead_id in np.asarray(lead_ids).tolist()),
        dtype=np.float64,
        count=len(lead_ids),
    )
    return units < split


def arm_of(salt: str, lead_id: int, split: float) -> str:
    """The arm name of one lead."""
    return CHALLENGER if assignment_unit(salt, lead_id) < split else CHAMPION
