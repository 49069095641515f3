/* An AVX2-only CPU for one process tree, on a machine that has AVX-512: LD_PRELOAD this
 * library and every CPUID the process executes reports no AVX-512, so every library that
 * dispatches at run time (rotaquant, turbovec, FAISS, numpy, OpenBLAS, torch) takes the path it
 * would take on an AVX2-only CPU, in the same process, on the same silicon.
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID 0; /proc/cpuinfo flag `cpuid_fault`)
 * turns every CPUID instruction into SIGSEGV. The handler executes the real CPUID with faulting
 * briefly off, clears the AVX-512 feature bits (and AVX512_BF16 / AVX512_FP16; AVX2, FMA, F16C,
 * BMI2, GFNI and VAES stay), writes the registers and steps over the instruction. Any other
 * SIGSEGV goes to the handler the program installed (sigaction and signal are wrapped so that
 * ours stays first) or kills the process as usual. The setting is per thread and inherited by
 * threads and forked children; exec (a new program) clears it, so child processes that exec
 * need LD_PRELOAD in their environment too (it is inherited).
 *
 * Limits: code that ran CPUID before this library's constructor (the dynamic loader's own
 * glibc dispatch: memcpy, strlen) keeps its choice; the XGETBV instruction still reports the
 * AVX-512 register state enabled (detection code checks CPUID too, so nothing picks AVX-512).
 *
 * Build: gcc -O2 -shared -fPIC -o hide_avx512.so hide_avx512.c -ldl
 * Use:   LD_PRELOAD=./hide_avx512.so python -m bench.index ...   (bench --isa avx2 does this)
 * Only for benchmarks and tests of dispatch; never linked into rotaquant. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static struct sigaction chained;  /* the program's own SIGSEGV disposition */
static int chained_set = 0;

static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static void cpuid_real(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  if (leaf == 7 && sub == 0) {
    /* EBX: F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31 */
    r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) |
              (1u << 30) | (1u << 31));
    /* ECX: VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14 */
    r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
    /* EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, FP16 23 */
    r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23));
  } else if (leaf == 7 && sub == 1) {
    r[0] &= ~(1u << 5); /* AVX512_BF16 */
  } else if (leaf == 0xD && sub == 0) {
    r[0] &= ~0xE0u; /* XCR0 bits the OS may enable: opmask, ZMM_Hi256, Hi16_ZMM */
  }
}

static void on_segv(int sig, siginfo_t *info, void *ctx) {
  ucontext_t *uc = (ucontext_t *)ctx;
  greg_t *g = uc->uc_mcontext.gregs;
  const uint8_t *ip = (const uint8_t *)g[REG_RIP];
  if (info->si_code == SI_KERNEL && ip[0] == 0x0F && ip[1] == 0xA2) {
    uint32_t r[4];
    const uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX];
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    cpuid_real(leaf, sub, r);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    mask(leaf, sub, r);
    g[REG_RAX] = r[0];
    g[REG_RBX] = r[1];
    g[REG_RCX] = r[2];
    g[REG_RDX] = r[3];
    g[REG_RIP] += 2;
    return;
  }
  if (chained_set && (chained.sa_flags & SA_SIGINFO) && chained.sa_sigaction) {
    chained.sa_sigaction(sig, info, ctx);
    return;
  }
  if (chained_set && chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) {
    chained.sa_handler(sig);
    return;
  }
  /* default action: restore it and return, so the faulting instruction faults again */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  real_sigaction(SIGSEGV, &dfl, NULL);
}

/* The program's SIGSEGV handlers are kept aside and called for faults that are not CPUID. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  if (sig != SIGSEGV) return real_sigaction(sig, act, old);
  if (old) *old = chained_set ? chained : (struct sigaction){0};
  if (act) {
    chained = *act;
    chained_set = 1;
  }
  return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
  struct sigaction act, old;
  memset(&act, 0, sizeof act);
  act.sa_handler = handler;
  act.sa_flags = SA_RESTART;
  if (sigaction(sig, &act, &old) != 0) return SIG_ERR;
  return old.sa_handler;
}

__attribute__((constructor)) static void hide_avx512(void) {
  real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
  struct sigaction act;
  memset(&act, 0, sizeof act);
  act.sa_sigaction = on_segv;
  act.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&act.sa_mask);
  if (real_sigaction(SIGSEGV, &act, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
    fprintf(stderr, "hide_avx512: CPUID faulting is not available here (no cpuid_fault)\n");
    exit(70);
  }
}
