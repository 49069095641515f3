// Memory-mapped index files whose truncation is an error, not a crash.
//
// Another process can truncate a file this process has mapped; reading a page past the new end
// raises SIGBUS, which kills the process (a busy reader meets it in nearly every run). The JVM
// and Go (debug.SetPanicOnFault) turn such faults into errors; so does this:
//
// * map_file() maps a file copy-on-write and registers the range in a fixed table.
// * A SIGBUS handler, installed once and chained to the previous one, looks the faulting address
//   up in the table. Inside a registered range it replaces the pages from the faulting one to the
//   range's end with anonymous zero pages (one mmap(MAP_FIXED) call, async-signal-safe in
//   practice on Linux and macOS) and marks the range faulted; the interrupted read resumes on
//   zeros. Outside, the previous handler runs (or the default action: the process ends as before).
// * The caller asks faulted() after every read of the mapping and discards what it computed
//   (rotaquant/index/file_guard.py: MappedSource.check raises FileChangedError).
//
// The table entry lives exactly as long as the mapping: the numpy array returned owns both, and
// its capsule unregisters the range before unmapping it, so no later mapping at that address is
// ever mistaken for ours.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "check.h"
#include "mapped.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace rq {
namespace {

constexpr int kSlots = 4096;  // mapped files open at once

struct Slot {
  std::atomic<uintptr_t> start{0};  // 0: free
  std::atomic<uintptr_t> end{0};
  std::atomic<int> faulted{0};
  std::atomic<bool> taken{false};
};

Slot g_slots[kSlots];
struct sigaction g_previous;
uintptr_t g_page = 4096;
std::once_flag g_installed;

void fall_through(int sig, siginfo_t* info, void* context) {
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != nullptr) {
      g_previous.sa_sigaction(sig, info, context);
      return;
    }
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
    return;
  }
  // the default action: reinstall it and return; the faulting access repeats and ends the process
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
}

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& slot : g_slots) {
    const uintptr_t start = slot.start.load(std::memory_order_acquire);
    if (start == 0 || address < start) continue;
    const uintptr_t end = slot.end.load(std::memory_order_acquire);
    if (address >= end) continue;
    const uintptr_t page = address & ~(g_page - 1);
    void* zeros = mmap(reinterpret_cast<void*>(page), end - page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (zeros == MAP_FAILED) break;
    slot.faulted.store(1, std::memory_order_release);
    return;
  }
  fall_through(sig, info, context);
}

void install_handler() {
  g_page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_sigaction = on_sigbus;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGBUS, &action, &g_previous) != 0) fail("cannot install the SIGBUS handler for mapped files");
}

struct Mapping {
  void* base;
  size_t length;
  Slot* slot;
};

using MappedArray = nb::ndarray<nb::numpy, uint8_t>;

nb::tuple map_file(int fd, int64_t length) {
  if (length <= 0) fail("map_file: length must be positive, got " + std::to_string(length));
  std::call_once(g_installed, install_handler);
  Slot* slot = nullptr;
  for (Slot& candidate : g_slots) {
    bool free = false;
    if (candidate.taken.compare_exchange_strong(free, true)) {
      slot = &candidate;
      break;
    }
  }
  if (slot == nullptr) fail("map_file: more than 4096 mapped index files are open; load with mmap=False");
  const size_t size = static_cast<size_t>(length);
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (base == MAP_FAILED) {
    slot->taken.store(false);
    fail(std::string("map_file: mmap failed: ") + std::strerror(errno));
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(base);
  slot->faulted.store(0, std::memory_order_relaxed);
  slot->end.store(start + size, std::memory_order_release);
  slot->start.store(start, std::memory_order_release);
  auto* mapping = new Mapping{base, size, slot};
  nb::capsule owner(mapping, [](void* p) noexcept {
    auto* m = static_cast<Mapping*>(p);
    m->slot->start.store(0, std::memory_order_release);  // unregistered before it is unmapped
    m->slot->end.store(0, std::memory_order_release);
    munmap(m->base, m->length);
    m->slot->taken.store(false, std::memory_order_release);
    delete m;
  });
  const size_t shape[1] = {size};
  return nb::make_tuple(MappedArray(base, 1, shape, owner), static_cast<int64_t>(slot - g_slots));
}

bool mapping_faulted(nb::ndarray<uint8_t, nb::ndim<1>, nb::c_contig> mapping, int64_t slot) {
  const bool ours = slot >= 0 && slot < kSlots &&
                    g_slots[slot].start.load(std::memory_order_acquire) == reinterpret_cast<uintptr_t>(mapping.data());
  if (!ours) fail("mapping_faulted: not an array and slot map_file returned");
  return g_slots[slot].faulted.load(std::memory_order_acquire) != 0;
}

}  // namespace

void register_mapped(nb::module_& m) {
  m.def("map_file", &map_file, "fd"_a, "length"_a,
        "(array, slot): the first `length` bytes of the open file `fd` mapped copy-on-write as a writable "
        "uint8 array; a SIGBUS inside it (the file truncated underneath) reads zeros and marks it faulted.");
  m.def("mapping_faulted", &mapping_faulted, "mapping"_a.noconvert(), "slot"_a,
        "Whether a read of this map_file array met a truncated file (its results are not to be used).");
}

}  // namespace rq
