"""Volume alignment (paper §4): spherical-harmonic shells, Wigner-d, SO(3) landscapes,
and the radial- and degree-SVD."""
