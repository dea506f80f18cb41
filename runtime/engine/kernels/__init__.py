"""numba kernels of the SNN engine (arrays and scalars only; compiled with ``cache=True`` at stage init)."""
