/* Picks the committed vmlinux.h for the BPF target architecture.
 * Regenerate with scripts/gen-vmlinux.sh; the build never dumps the build
 * host's BTF by itself. */
#ifndef KLEAK_VMLINUX_DISPATCH_H
#define KLEAK_VMLINUX_DISPATCH_H
#if defined(__TARGET_ARCH_x86)
#include "x86/vmlinux.h"
#else
#error "kleak: no committed vmlinux.h for this architecture (see scripts/gen-vmlinux.sh)"
#endif
#endif
