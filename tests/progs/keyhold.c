/* kleak-keyhold: leaves kernel memory held by the keyring after it exits,
 * the "held keys" case of the CI tests (a leak that no reclaim frees).
 *
 *   kleak-keyhold N         makes a keyring "kleak-keyhold-PID" in the user
 *                           keyring and adds N "user" keys of 64 bytes to it;
 *                           prints "ring ID", exits. The keys stay.
 *   kleak-keyhold --drop ID unlinks keyring ID from the user keyring: the
 *                           kernel's key garbage collector frees it all.
 *
 * Each key: one struct key (key_jar, key_alloc), its description
 * (kmemdup), its payload (kmalloc in user_preparse): N each. */
#define _GNU_SOURCE
#include <linux/keyctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long add_key(const char *type, const char *desc, const void *payload, size_t len, long ring)
{
	return syscall(SYS_add_key, type, desc, payload, len, ring);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--drop"))
		return syscall(SYS_keyctl, KEYCTL_UNLINK, atol(argv[2]), KEY_SPEC_USER_KEYRING) == 0 ? 0 : 1;
	if (argc != 2 || atoi(argv[1]) <= 0)
		return 2;
	int n = atoi(argv[1]);
	char name[64], payload[64];
	snprintf(name, sizeof(name), "kleak-keyhold-%d", getpid());
	long ring = add_key("keyring", name, NULL, 0, KEY_SPEC_USER_KEYRING);
	if (ring < 0) {
		perror("kleak-keyhold: add_key keyring");
		return 1;
	}
	memset(payload, 'k', sizeof(payload));
	for (int i = 0; i < n; i++) {
		char desc[64];
		snprintf(desc, sizeof(desc), "kleak-key-%d", i);
		if (add_key("user", desc, payload, sizeof(payload), ring) < 0) {
			perror("kleak-keyhold: add_key user");
			return 1;
		}
	}
	printf("ring %ld\n", ring);
	return 0;
}
