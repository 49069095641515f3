#include "kv.h"

namespace rq {

void register_kv(nanobind::module_&) {}

}  // namespace rq
