// The BPF ABI header for C++, with the layout checks the BPF side relies on.
#pragma once

#include <linux/types.h>

#include "kleak.h"

static_assert(sizeof(kleak_alloc) == 80, "kleak_alloc layout changed: update both sides");
static_assert(sizeof(kleak_stack) == 8 + KLEAK_MAX_STACK_DEPTH * 8, "kleak_stack layout changed");
static_assert(sizeof(kleak_peek_slot) == 16 + KLEAK_PEEK_MAX_BYTES, "kleak_peek_slot layout changed");
static_assert(sizeof(kleak_counters) == KLEAK_CNT_MAX * 8, "kleak_counters layout changed");
static_assert(sizeof(kleak_module) == 40 + KLEAK_MODULE_NAME_LEN, "kleak_module layout changed");

#include "kleak_user.h"

static_assert(sizeof(kleak_user_counters) == KLEAK_UCNT_MAX * 8, "kleak_user_counters layout changed");
static_assert(KLEAK_USER_MAX_PIDS <= 256, "the slot must fit the cookie's and the live key's top byte");
