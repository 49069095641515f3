// What the two halves of the Python boundary (module.cpp, kv.cpp) share: the arrays they take
// (C-contiguous, in CPU memory: what the kernels' pointer arithmetic assumes) and ValueError
// for anything else, raised before any kernel runs.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <string>

namespace rq {
namespace {

template <typename T, int N>
using Array = nanobind::ndarray<T, nanobind::ndim<N>, nanobind::c_contig, nanobind::device::cpu>;
template <typename T>
using Array1 = Array<T, 1>;
template <typename T>
using Array2 = Array<T, 2>;

[[noreturn]] inline void fail(const std::string& message) {
  throw nanobind::value_error(message.c_str());
}

// Constant messages only: a message built with std::string would be built on every call,
// checks inside loops use `if (!ok) fail(...)`.
inline void require(bool ok, const char* message) {
  if (!ok) fail(message);
}

}  // namespace
}  // namespace rq
