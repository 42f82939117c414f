/* kernels_empty.c — placeholder translation unit until kernels/cpu has sources. */
typedef int qq_kernels_empty_unit;
