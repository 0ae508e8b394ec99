"""Former home of :mod:`radsvd.rotations` (moved to the ground layer so that the volume
engine may import it); this path re-exports it."""

from radsvd.rotations import (as_rotations, euler_to_rotation, quaternion_to_rotation,
                              random_rotations, rotation_to_euler)

__all__ = ["as_rotations", "euler_to_rotation", "quaternion_to_rotation", "random_rotations",
           "rotation_to_euler"]
