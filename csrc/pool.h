// The native core's one thread pool: ROTAQUANT_NUM_THREADS threads (default: the cores),
// the calling thread included. Safe for any number of concurrent callers: each call is a job
// whose tasks the caller and idle workers take; a caller never waits for another job.
#pragma once

#include <cstdint>
#include <functional>

namespace rq {

// Threads a job can use (>= 1), the caller included.
int pool_size();

// Runs fn(task, slot) for every task in [0, tasks) and returns when all are done. `slot` in
// [0, pool_size()) is unique among the threads working on this call, so per-slot scratch
// needs no lock. The first exception a task throws is rethrown here (after all tasks end).
void parallel_for(int64_t tasks, const std::function<void(int64_t task, int slot)>& fn);

}  // namespace rq
