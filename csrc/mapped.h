// Memory-mapped index files whose truncation is an error, not a crash (see mapped.cpp).
#pragma once

#include <nanobind/nanobind.h>

namespace rq {

void register_mapped(nanobind::module_& m);

}  // namespace rq
