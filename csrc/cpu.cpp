#include "cpu.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#if defined(ROTAQUANT_X86)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif
#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace rq {

namespace {

#if defined(ROTAQUANT_X86)
uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(ROTAQUANT_X86)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29);
  if (!osxsave) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31);
  const bool vbmi = c & (1u << 1), vnni = c & (1u << 11);
  f.avx2 = ymm_state && avx2 && fma && bmi2 && f16c;
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl && vbmi && vnni;
#elif defined(__aarch64__)
  f.neon = true;
#if defined(__linux__)
  f.dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
  int value = 0;
  size_t size = sizeof value;
  f.dotprod = sysctlbyname("hw.optional.arm.FEAT_DotProd", &value, &size, nullptr, 0) == 0 && value;
#endif
#endif
  return f;
}

std::atomic<const Kernels*> g_active{nullptr};

const Kernels* find(const std::string& name) {
  for (const Kernels* k : available_kernels()) {
    if (name == k->name) return k;
  }
  std::string known;
  for (const Kernels* k : available_kernels()) known += std::string(known.empty() ? "" : ", ") + k->name;
  throw std::invalid_argument("ROTAQUANT_SIMD=" + name + " is not available here; choose one of: " +
                              known);
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::vector<const Kernels*> available_kernels() {
  std::vector<const Kernels*> out;
#if defined(ROTAQUANT_X86)
  if (cpu_features().avx512) out.push_back(&avx512_kernels());
  if (cpu_features().avx2) out.push_back(&avx2_kernels());
#endif
#if defined(ROTAQUANT_NEON)
  if (cpu_features().dotprod) out.push_back(&neon_dotprod_kernels());
  if (cpu_features().neon) out.push_back(&neon_kernels());
#endif
  out.push_back(&scalar_kernels());
  return out;
}

const Kernels& active_kernels() {
  const Kernels* k = g_active.load(std::memory_order_acquire);
  if (k == nullptr) {
    const char* env = std::getenv("ROTAQUANT_SIMD");
    k = env && *env ? find(env) : available_kernels().front();
    g_active.store(k, std::memory_order_release);
  }
  return *k;
}

void select_kernels(const std::string& name) { g_active.store(find(name), std::memory_order_release); }

}  // namespace rq
