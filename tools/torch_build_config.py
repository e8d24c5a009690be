"""Print, as KEY=VALUE lines, what CMake needs to compile against the torch of this interpreter."""

import torch
import torch.utils.cpp_extension as cpp_extension

arches = sorted({a.split("_")[1] for a in torch.cuda.get_arch_list() if a.startswith("sm_")})
print(f"TORCH_VERSION={torch.__version__}")
print(f"TORCH_CUDA_VERSION={torch.version.cuda}")
print(f"TORCH_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}")
print(f"TORCH_INCLUDE_DIRS={'|'.join(cpp_extension.include_paths())}")
print(f"TORCH_LIBRARY_DIRS={'|'.join(cpp_extension.library_paths())}")
print(f"TORCH_CUDA_ARCHITECTURES={'|'.join(arches)}")
