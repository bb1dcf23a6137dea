/* LD_PRELOAD library: this process and its children see the CPU without AVX-512, VNNI and AMX (AVX2 + FMA only),
or with LIVEVAE_CPUMASK=avx512 as a Skylake-SP: AVX-512 F/CD/BW/DQ/VL kept, VNNI, AMX and the later AVX-512 sets masked.

Benchmarks only, never shipped: it lets one machine run the code paths of an AVX2-only CPU (an AMD EPYC Zen 2/3,
a pre-Ice-Lake Intel) for real. Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID; /proc/cpuinfo flag
cpuid_fault) turns every CPUID instruction into SIGSEGV; the handler runs the real CPUID with faulting off for a
moment, clears the feature bits below, writes the registers back and steps over the instruction. ONNX Runtime's
MLAS, oneDNN, PyTorch's cpuinfo and FFmpeg all choose their kernels from CPUID, so they all take their AVX2 paths.
glibc reads CPUID before any constructor runs, so its string functions keep their AVX-512 variants (no effect on
the kernels measured). LIVEVAE_CPUMASK_QUIET=1 silences the start-up line. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

static struct sigaction previous;
static volatile long masked_calls;

static long set_cpuid(int allowed) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, allowed); }

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static int keep_avx512; /* LIVEVAE_CPUMASK=avx512 */

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0 && keep_avx512) {
        /* Skylake-SP: F 16, DQ 17, CD 28, BW 30, VL 31 stay; IFMA 21 goes; ECX and EDX as below */
        r[1] &= ~(1u << 21);
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 0) {
        /* EBX: AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31 */
        r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) |
                  (1u << 31));
        /* ECX: VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14 */
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        /* EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, AMX-BF16 22, AVX512-FP16 23, AMX-TILE 24, AMX-INT8 25 */
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI 4, AVX512-BF16 5, AMX-FP16 21, AVX-IFMA 23; EDX: AVX-VNNI-INT8 4, AVX10 19 */
        r[0] &= ~((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23));
        r[3] &= ~((1u << 4) | (1u << 19));
    } else if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0; /* AMX tile and AVX10 leaves: absent */
    }
}

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    ucontext_t *uc = (ucontext_t *)ctx;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) { /* cpuid */
        uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX], r[4];
        set_cpuid(1);
        real_cpuid(leaf, sub, r);
        set_cpuid(0);
        mask(leaf, sub, r);
        g[REG_RAX] = r[0];
        g[REG_RBX] = r[1];
        g[REG_RCX] = r[2];
        g[REG_RDX] = r[3];
        g[REG_RIP] += 2;
        masked_calls++;
        return;
    }
    /* a real fault: hand it to whoever had SIGSEGV before (Python's faulthandler, or the default: a core) */
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, ctx);
    } else if (previous.sa_handler != SIG_IGN && previous.sa_handler != SIG_DFL) {
        previous.sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
}

__attribute__((constructor)) static void cpumask_init(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous);
    const char *quiet = getenv("LIVEVAE_CPUMASK_QUIET");
    const char *kind = getenv("LIVEVAE_CPUMASK");
    keep_avx512 = kind && strcmp(kind, "avx512") == 0;
    if (set_cpuid(0) != 0) {
        fprintf(stderr, "cpumask: CPUID faulting unavailable here (no cpuid_fault); the CPU is NOT masked\n");
        return;
    }
    if (!(quiet && *quiet == '1'))
        fprintf(stderr, "cpumask: pid %d sees %s\n", (int)getpid(),
                keep_avx512 ? "an AVX-512 CPU without VNNI (VNNI, AMX, later AVX-512 sets masked)"
                            : "an AVX2-only CPU (AVX-512, VNNI, AMX masked)");
}
