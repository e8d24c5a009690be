// The fpcore operator namespace. Each operator declares its schema in its own file with
// TORCH_LIBRARY_FRAGMENT(fpcore, m) and registers kernels per dispatch key in cpu/ and cuda/.
#include <torch/library.h>

TORCH_LIBRARY(fpcore, m) {}
