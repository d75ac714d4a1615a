// SPDX-License-Identifier: GPL-2.0
/*
 * The EL1 half of the fault campaign (`cargo xtask faults`, issue 16 item
 * 4): what only kernel code can do to the monitor. Loaded only by the
 * campaign's attacker VM (its own initramfs); the guests under test stay
 * unmodified. Each load performs one injection and then refuses to stay
 * loaded (-EAGAIN), so the next injection can load it again.
 *
 *   insmod disco_inject.ko kind=K seed=S count=N [virtio=BASE]
 *
 * kind:
 *   hvc, smc  N calls with random SMCCC function IDs (fully random, in the
 *             fast-call ranges, and in PSCI's range except the calls that
 *             end the VM, which have kinds of their own) and random args
 *   sysreg    N trapped system register accesses: reads of the ID space
 *             (HCR_EL2.TID3) and random ICC_SGI1R_EL1 writes (vGIC SGIs)
 *   mmio      N random reads and writes of the emulated devices' registers
 *             in the windows win=LO,HI,LO,HI,... (its vGIC distributor and
 *             redistributors, the PL011's registers, its virtio-mmio
 *             slot): aligned 32-bit, and 1 in 256 of another width or
 *             unaligned (which the monitor refuses with an external
 *             abort: an oops here). Kernel code, since /dev/mem refuses
 *             regions a driver holds.
 *   vqueue    N random writes to the queue registers of the virtio-mmio
 *             device at BASE, pointing its rings at a page of random bytes
 *             (garbage descriptors) or at random addresses, with notifies
 *   cpu_off   PSCI CPU_OFF on this (the last online) vCPU
 *   spin      an endless loop with interrupts masked
 *   oops      a NULL pointer store
 */
#include <linux/module.h>
#include <linux/init.h>
#include <linux/io.h>
#include <linux/irqflags.h>
#include <linux/gfp.h>
#include <linux/mm.h>

static char *kind = "hvc";
static ulong seed = 1;
static int count = 64;
static ulong virtio;
static ulong win[16];
static int nwin;
module_param(kind, charp, 0);
module_param_array(win, ulong, &nwin, 0);
module_param(seed, ulong, 0);
module_param(count, int, 0);
module_param(virtio, ulong, 0);

static u64 rng;

/* xorshift64*: reproducible from the seed the campaign prints. */
static u64 next(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

#define PSCI_CPU_OFF 0x84000002UL

static u64 function_id(void)
{
	u64 r = next();

	switch (r & 3) {
	case 0:
		return next(); /* anything */
	case 1:
		return 0x80000000UL | (next() & 0x7f00ffffUL); /* fast calls, any owner */
	default: {
		/*
		 * PSCI 0x84/0xc4 0000..001f, minus CPU_OFF, SYSTEM_OFF and
		 * SYSTEM_RESET(2) (kinds of their own): those become
		 * PSCI_VERSION.
		 */
		u64 f = ((r & 4) ? 0xc4000000UL : 0x84000000UL) | ((r >> 8) & 0x1f);
		u32 low = f & 0x1f;

		return (low == 2 || low == 8 || low == 9 || low == 0x12) ? f & ~0x1fUL : f;
	}
	}
}

#define CALL(insn)                                                                              \
	static u64 call_##insn(u64 a[8])                                                        \
	{                                                                                       \
		register u64 x0 asm("x0") = a[0], x1 asm("x1") = a[1], x2 asm("x2") = a[2];     \
		register u64 x3 asm("x3") = a[3], x4 asm("x4") = a[4], x5 asm("x5") = a[5];     \
		register u64 x6 asm("x6") = a[6], x7 asm("x7") = a[7];                          \
		asm volatile(#insn " #0"                                                        \
			     : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3), "+r"(x4), "+r"(x5), "+r"(x6), \
			       "+r"(x7)                                                         \
			     :                                                                  \
			     : "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17", \
			       "memory");                                                       \
		return x0;                                                                      \
	}
CALL(hvc)
CALL(smc)

static int calls(u64 (*call)(u64 *))
{
	int i, j, supported = 0;

	for (i = 0; i < count; i++) {
		u64 a[8];

		a[0] = function_id();
		for (j = 1; j < 8; j++)
			a[j] = next();
		supported += (s64)call(a) != -1; /* -1: NOT_SUPPORTED */
	}
	pr_info("disco_inject: %s: %d calls, %d not refused\n", kind, count, supported);
	return 0;
}

/* Reads of op0=3 op1=0 CRn=0 CRm=1..7: every one traps under TID3. */
#define ID(m, o) case (m) * 8 + (o): asm volatile("mrs %0, s3_0_c0_c" #m "_" #o : "=r"(v)); break;
#define ID_ROW(m) ID(m, 0) ID(m, 1) ID(m, 2) ID(m, 3) ID(m, 4) ID(m, 5) ID(m, 6) ID(m, 7)

static u64 read_id(unsigned int which)
{
	u64 v = 0;

	switch (which) {
	ID_ROW(1) ID_ROW(2) ID_ROW(3) ID_ROW(4) ID_ROW(5) ID_ROW(6) ID_ROW(7)
	}
	return v;
}

static int sysregs(void)
{
	int i, sgis = 0;
	u64 mix = 0;

	for (i = 0; i < count; i++) {
		u64 r = next();

		if (r & 1) {
			mix ^= read_id(8 + (r >> 8) % 56);
		} else {
			/*
			 * Random ICC_SGI1R_EL1 (target list, affinity, IRM, RS),
			 * with INTIDs 8-15 (which Linux does not use) but 1 in 64:
			 * its IPIs 0-7 include CPU_STOP, which a fully random
			 * write sends often enough to end most runs of this kind.
			 */
			u64 v = next();

			if (r & 0x3f00)
				v |= 8ULL << 24;

			asm volatile("msr s3_0_c12_c11_5, %0" : : "r"(v));
			sgis++;
		}
	}
	pr_info("disco_inject: sysreg: %d accesses, %d SGI writes, id mix %llx\n", count, sgis, mix);
	return 0;
}

/* virtio-mmio v2 queue and status registers (virtio 1.2, 4.2.2). */
static const u16 vq_regs[] = { 0x030, 0x038, 0x044, 0x050, 0x064, 0x070, 0x080, 0x084,
			       0x090, 0x094, 0x0a0, 0x0a4, 0x014, 0x024, 0x020 };

static int vqueue(void)
{
	void __iomem *dev;
	struct page *garbage;
	u64 phys;
	int i;

	if (!virtio) {
		pr_info("disco_inject: vqueue: no virtio= base\n");
		return -EINVAL;
	}
	dev = ioremap(virtio, 0x200);
	/* Never freed: the device may still write to it after we are gone. */
	garbage = alloc_page(GFP_KERNEL);
	if (!dev || !garbage)
		return -ENOMEM;
	phys = page_to_phys(garbage);
	for (i = 0; i < count; i++) {
		u64 *words = page_address(garbage);
		u64 r = next(), value;
		u16 reg = vq_regs[(r >> 8) % ARRAY_SIZE(vq_regs)];
		int w;

		for (w = 0; w < PAGE_SIZE / 8; w++)
			words[w] = next();
		switch (r & 3) {
		case 0: value = (u32)(phys + (next() & 0xff0)); break; /* low half of a garbage ring */
		case 1: value = (u32)(phys >> 32); break;
		case 2: value = next() & 0xff; break; /* small: queue index, size, ready */
		default: value = (u32)next(); break;
		}
		writel((u32)value, dev + reg);
		if (next() & 1)
			writel((u32)next() & 3, dev + 0x050); /* QueueNotify */
	}
	iounmap(dev);
	pr_info("disco_inject: vqueue: %d writes at %lx, garbage page %llx\n", count, virtio, phys);
	return 0;
}

static int mmio(void)
{
	void __iomem *map[8] = { NULL };
	int i, w, n = nwin / 2, odd = 0;

	if (n == 0)
		return -EINVAL;
	for (w = 0; w < n; w++) {
		map[w] = ioremap(win[2 * w], win[2 * w + 1] - win[2 * w] + 1);
		if (!map[w])
			return -ENOMEM;
	}
	for (i = 0; i < count; i++) {
		u64 r = next(), size;
		void __iomem *p;

		w = (r >> 8) % n;
		size = win[2 * w + 1] - win[2 * w] + 1;
		p = map[w] + (next() % size & ~3UL);
		if ((r & 0xff0) == 0) {
			/* 1 in 256: a width or alignment registers may refuse. */
			odd++;
			p += next() & 3;
			switch (next() % 4) {
			case 0: if (r & 1) writeb(next(), p); else (void)readb(p); break;
			case 1: if (r & 1) writew(next(), p); else (void)readw(p); break;
			case 2: if (r & 1) writeq(next(), p); else (void)readq(p); break;
			default: if (r & 1) writel(next(), p); else (void)readl(p); break;
			}
		} else if (r & 1) {
			writel((u32)next(), p);
		} else {
			(void)readl(p);
		}
	}
	for (w = 0; w < n; w++)
		iounmap(map[w]);
	pr_info("disco_inject: mmio: %d accesses in %d windows, %d of odd width or alignment\n", count, n, odd);
	return 0;
}

static int __init disco_inject_init(void)
{
	int err = 0;

	rng = seed * 0x9e3779b97f4a7c15ULL + 1;
	if (!strcmp(kind, "hvc")) {
		err = calls(call_hvc);
	} else if (!strcmp(kind, "smc")) {
		err = calls(call_smc);
	} else if (!strcmp(kind, "sysreg")) {
		err = sysregs();
	} else if (!strcmp(kind, "mmio")) {
		err = mmio();
	} else if (!strcmp(kind, "vqueue")) {
		err = vqueue();
	} else if (!strcmp(kind, "cpu_off")) {
		u64 a[8] = { PSCI_CPU_OFF };

		pr_info("disco_inject: CPU_OFF on cpu %d\n", raw_smp_processor_id());
		call_hvc(a);
		pr_info("disco_inject: CPU_OFF returned\n");
	} else if (!strcmp(kind, "spin")) {
		pr_info("disco_inject: spinning with interrupts masked on cpu %d\n", raw_smp_processor_id());
		local_irq_disable();
		for (;;)
			cpu_relax();
	} else if (!strcmp(kind, "oops")) {
		*(volatile int *)NULL = 1;
	} else {
		pr_info("disco_inject: unknown kind %s\n", kind);
		return -EINVAL;
	}
	return err ? err : -EAGAIN;
}
module_init(disco_inject_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Fault injection for the Disco monitor's campaign (attacker VM only)");
