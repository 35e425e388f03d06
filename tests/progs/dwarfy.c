// Code with known inlining for the kernel DWARF reader's tests: each
// *_inline function is always inlined, two deep, into an out-of-line
// caller, as the kernel's inline helpers are (kmalloc in kmemdup_nul).
#include <stdlib.h>
#include <string.h>

void _stext(void) {}

volatile int sink;

static inline __attribute__((always_inline)) void *inner_inline(size_t n) {
  sink += (int)n;
  return malloc(n);
}

static inline __attribute__((always_inline)) void *middle_inline(size_t n) {
  void *p = inner_inline(n + 1);
  sink += 3;
  return p;
}

__attribute__((noinline)) void *outer_alloc(size_t n) {
  void *p = middle_inline(n * 2);
  if (p) memset(p, 0, n);
  return p;
}

__attribute__((noinline)) void *plain_alloc(size_t n) {
  return calloc(1, n);
}

int main(int argc, char **argv) {
  (void)argv;
  free(outer_alloc((size_t)argc));
  free(plain_alloc((size_t)argc));
  return 0;
}
