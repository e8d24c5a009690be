#pragma once
// FPCORE_HD marks maths shared by the CPU and CUDA kernels: __host__ __device__ under nvcc,
// plain inline functions (exercised by the CPU build and tests) otherwise.
#if defined(__CUDACC__)
#define FPCORE_HD __host__ __device__ __forceinline__
#else
#define FPCORE_HD inline
#endif
