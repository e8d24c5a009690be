#pragma once
// Parameter tables (wACSF, EAD) reach the CUDA kernels through a pinned staging buffer. A host-to-device
// copy from pageable memory synchronises the stream (the driver stages it through its own buffer), so
// building the table with at::tensor(...).to(device) stalled the host on every descriptor call; from
// pinned memory the copy is asynchronous and stream-ordered, so a training step does not wait on it. The
// caching host allocator keeps the staging buffer until the copy has run (it records an event on the
// stream), and reuses it afterwards, so after the first calls no allocation reaches the driver either.
// The values stay host lists in the schemas, so the operators keep validating them (and deriving the
// packed entries) on the host without reading anything back from the device.
#include <ATen/ATen.h>

#include <algorithm>

namespace fpcore {

inline at::Tensor device_parameter_table(at::ArrayRef<double> values, const at::TensorOptions& options) {
  at::Tensor host =
      at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(at::kDouble).pinned_memory(true));
  std::copy(values.begin(), values.end(), host.data_ptr<double>());
  // Copy in double, then convert on the device: a copy that also changes the dtype converts on the host
  // first, into a pageable temporary, and a copy from pageable memory waits for the stream again.
  return host.to(options.dtype(at::kDouble), /*non_blocking=*/true).to(options.dtype());
}

}  // namespace fpcore
