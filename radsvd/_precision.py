"""The one precision policy: the names "auto", "single", "double", their dtypes, and the two
"auto" rules (docs/design.md, API conventions).

- Landscapes and alignments (:meth:`Precision.of`): "auto" is single precision for
  compressed landscapes, whose truncation error dwarfs float32 rounding, and double for the
  full ones.
- Transforms (:func:`radsvd._nufft.transform_precision`): "auto" follows the data (single
  for float32 stacks and maps, double for float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError

PRECISIONS = ("auto", "single", "double")


def check_precision(precision) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else an :class:`InputError`."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InputError(f"precision must be 'auto', 'single' or 'double', got {precision!r}")
    return precision


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` "single" or "double" and its real and complex dtypes."""

    name: str

    @classmethod
    def of(cls, precision, *, compressed: bool) -> Precision:
        """The precision of a landscape or an alignment: "auto" is "single" when
        ``compressed`` (a rank below the full one), else "double"."""
        precision = check_precision(precision)
        if precision == "auto":
            precision = "single" if compressed else "double"
        return cls(precision)

    @property
    def single(self) -> bool:
        return self.name == "single"

    @property
    def real(self) -> type:
        return np.float32 if self.single else np.float64

    @property
    def complex(self) -> type:
        return np.complex64 if self.single else np.complex128
