"""numba kernels of the file readers. Each takes arrays and scalars only; each has a slow, obviously correct
twin in ``tests/test_sensors_formats_kernels.py`` that it is compared against."""
