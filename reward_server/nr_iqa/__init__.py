"""No-reference image-quality metrics with published parameters: BRISQUE and NIQE (lower is better).

Self-contained (numpy for the parameter files, torch for the maths); the reward service wraps
them as reward terms.
"""

from .brisque import Brisque
from .niqe import Niqe
from .params import provenance_note

__all__ = ["Brisque", "Niqe", "provenance_note"]
