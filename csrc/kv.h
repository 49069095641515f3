// KV cache row readers: bindings of the kernels' kv_* entries (see kv.cpp).
#pragma once

#include <nanobind/nanobind.h>

namespace rq {

void register_kv(nanobind::module_& m);

}  // namespace rq
