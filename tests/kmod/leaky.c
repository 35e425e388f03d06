// SPDX-License-Identifier: GPL-2.0
/*
 * leaky: a deliberately leaking /proc file, the target of scripts/vmtest.
 *
 * /proc/kleak_leaky reproduces the old /proc/schedstat bug: open() puts a
 * PAGE_SIZE buffer of its own into the seq_file (so a long report never
 * needs seq_read's retry-and-double), and release() is hand-written: it
 * frees the seq_operations and the seq_file that single_open() made, but
 * not the buffer. Every open+close leaks one kmalloc-4k object whose stack
 * runs through leaky_open().
 *
 * /proc/kleak_fixed has the same open and the upstream fix, single_release(),
 * which frees m->buf too: it must leave nothing behind.
 *
 * Test-only: never load this on a machine you care about.
 */
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/atomic.h>
#include <linux/cpumask.h>
#include <linux/jiffies.h>

static atomic_t opens = ATOMIC_INIT(0);

/* schedstat-like text: a version line, a timestamp, one line per CPU. */
static int leaky_show(struct seq_file *m, void *v)
{
	int cpu;

	seq_printf(m, "version 15\ntimestamp %lu\n", jiffies);
	for_each_online_cpu(cpu)
		seq_printf(m, "cpu%d 0 0 0 0 0 0 %llu %llu %u\n", cpu, 0ULL, 0ULL,
			   atomic_read(&opens));
	return 0;
}

/* noinline: the open function must be its own frame in the stack. */
static noinline int leaky_open(struct inode *inode, struct file *file)
{
	struct seq_file *m;
	char *buf;
	int err;

	atomic_inc(&opens);
	buf = kmalloc(PAGE_SIZE, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	err = single_open(file, leaky_show, NULL);
	if (err) {
		kfree(buf);
		return err;
	}
	m = file->private_data;
	m->buf = buf;
	m->size = PAGE_SIZE;
	return 0;
}

/*
 * The bug: what single_release() does, minus kvfree(m->buf). The seq_file
 * comes from seq_file_cache; kfree() of a slab cache object is fine (SLUB).
 */
static int leaky_release(struct inode *inode, struct file *file)
{
	struct seq_file *m = file->private_data;

	kfree(m->op);
	kfree(m);
	return 0;
}

static const struct proc_ops leaky_ops = {
	.proc_open = leaky_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = leaky_release,
};

static const struct proc_ops fixed_ops = {
	.proc_open = leaky_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
};

static struct proc_dir_entry *leaky_pde, *fixed_pde;

static int __init leaky_init(void)
{
	leaky_pde = proc_create("kleak_leaky", 0444, NULL, &leaky_ops);
	fixed_pde = proc_create("kleak_fixed", 0444, NULL, &fixed_ops);
	if (!leaky_pde || !fixed_pde) {
		proc_remove(leaky_pde);
		proc_remove(fixed_pde);
		return -ENOMEM;
	}
	pr_info("leaky: /proc/kleak_leaky leaks %lu bytes per open, /proc/kleak_fixed none\n", PAGE_SIZE);
	return 0;
}

static void __exit leaky_exit(void)
{
	proc_remove(fixed_pde);
	proc_remove(leaky_pde);
	pr_info("leaky: unloaded after %d opens\n", atomic_read(&opens));
}

module_init(leaky_init);
module_exit(leaky_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kleak test target: a /proc file whose release leaks its seq_file buffer");
