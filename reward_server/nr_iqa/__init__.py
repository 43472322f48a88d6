"""No-reference image-quality metrics with published parameters: BRISQUE, NIQE and PIQE (lower is better).

Self-contained (numpy for the parameter files, torch for the maths); the reward service wraps
them as reward terms.
"""

from .brisque import Brisque
from .niqe import Niqe
from .piqe import Piqe
from .params import provenance_note

__all__ = ["Brisque", "Niqe", "Piqe", "provenance_note"]
