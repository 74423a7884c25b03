// Macros shared by the CPU and CUDA sources.
#pragma once

// Marks the math shared by host and device code.
#if defined(__CUDACC__)
#define FASTGAN_HOST_DEVICE __host__ __device__
#else
#define FASTGAN_HOST_DEVICE
#endif
