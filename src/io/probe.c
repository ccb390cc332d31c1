// SPDX-License-Identifier: MIT
/*
 * What the machine allows: the device class behind a file (sysfs), whether io_uring can be set up
 * and entered (it may be disabled by kernel.io_uring_disabled, refused by seccomp with EPERM or
 * ENOSYS, or fail for memory), and the O_DIRECT alignment a file needs.
 *
 * The io_uring probe does a full round trip (setup, then a NOP through io_uring_enter), because a
 * seccomp policy may allow io_uring_setup and still refuse io_uring_enter. DIO alignment comes
 * from statx(STATX_DIOALIGN) (Linux 6.1); glibc 2.36's struct statx lacks those fields, so the
 * kernel layout is declared here. Where statx does not say, the logical block size of the device
 * is used: a filesystem is never assumed to lack O_DIRECT, it is tried.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "io/io_int.h"

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

/* The kernel's struct statx (include/uapi/linux/stat.h, 6.1), 256 bytes. */
struct io_statx {
	uint32_t mask, blksize;
	uint64_t attributes;
	uint32_t nlink, uid, gid;
	uint16_t mode, spare0;
	uint64_t ino, size, blocks, attributes_mask;
	struct {
		int64_t sec;
		uint32_t nsec;
		int32_t reserved;
	} atime, btime, ctime, mtime;
	uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
	uint64_t mnt_id;
	uint32_t dio_mem_align, dio_offset_align;
	uint64_t spare3[12];
};

_Static_assert(sizeof(struct io_statx) == 256, "struct statx is 256 bytes");

/* Read a small sysfs file into buf (trailing newline removed). 0 or -errno. */
static int read_small(const char *path, char *buf, size_t cap)
{
	ssize_t n;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap - 1);
	if (n < 0) {
		rc = -errno;
		n = 0;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	close(fd);
	return rc;
}

const char *dw__probe_sysfs = "/sys";

void dw__probe_device(dev_t dev, struct io_devprobe *out)
{
	char link[PATH_MAX], path[PATH_MAX], file[PATH_MAX + 32], val[32];
	char *real = NULL, *slash;
	unsigned maj, min;
	int n;

	memset(out, 0, sizeof(*out));
	out->class_ = DW_IO_CLASS_UNKNOWN;
	out->logical_block = 512;
	out->disk = dev;
	snprintf(out->name, sizeof(out->name), "dev-%u:%u", major(dev), minor(dev));
	if (major(dev) == 0)
		return; /* anonymous device: tmpfs, overlay, btrfs subvolume... */
	n = snprintf(link, sizeof(link), "%s/dev/block/%u:%u", dw__probe_sysfs, major(dev),
		     minor(dev));
	if (n < 0 || (size_t)n >= sizeof(link))
		return;
	real = realpath(link, NULL);
	if (!real)
		return;
	n = snprintf(path, sizeof(path), "%s", real);
	free(real);
	if (n < 0 || (size_t)n >= sizeof(path))
		return;
	/* A partition's queue is its disk's: go up one level, and share the disk's scheduler. */
	n = snprintf(file, sizeof(file), "%s/partition", path);
	if (n > 0 && (size_t)n < sizeof(file) && access(file, F_OK) == 0) {
		slash = strrchr(path, '/');
		if (slash)
			*slash = '\0';
		n = snprintf(file, sizeof(file), "%s/dev", path);
		if (n > 0 && (size_t)n < sizeof(file) && read_small(file, val, sizeof(val)) == 0 &&
		    sscanf(val, "%u:%u", &maj, &min) == 2)
			out->disk = makedev(maj, min);
	}
	slash = strrchr(path, '/');
	slash = slash ? slash + 1 : path;
	if (strlen(slash) < sizeof(out->name))
		memcpy(out->name, slash, strlen(slash) + 1);

	n = snprintf(file, sizeof(file), "%s/queue/logical_block_size", path);
	if (n > 0 && (size_t)n < sizeof(file) && read_small(file, val, sizeof(val)) == 0) {
		long lb = strtol(val, NULL, 10);

		if (lb >= 512 && lb <= 65536)
			out->logical_block = (unsigned)lb;
	}
	if (strncmp(out->name, "nvme", 4) == 0) {
		out->class_ = DW_IO_CLASS_NVME;
		return;
	}
	n = snprintf(file, sizeof(file), "%s/queue/rotational", path);
	if (n > 0 && (size_t)n < sizeof(file) && read_small(file, val, sizeof(val)) == 0)
		out->class_ = strcmp(val, "1") == 0 ? DW_IO_CLASS_HDD : DW_IO_CLASS_SSD;
}

int dw__probe_uring(void)
{
	struct io_uring ring;
	struct io_uring_probe *p;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int rc;

	rc = io_uring_queue_init(4, &ring, 0);
	if (rc < 0)
		return rc;
	p = io_uring_get_probe_ring(&ring);
	if (!p) {
		rc = -EOPNOTSUPP;
		goto out;
	}
	if (!io_uring_opcode_supported(p, IORING_OP_READ) ||
	    !io_uring_opcode_supported(p, IORING_OP_WRITE) ||
	    !io_uring_opcode_supported(p, IORING_OP_FSYNC))
		rc = -EOPNOTSUPP;
	io_uring_free_probe(p);
	if (rc < 0)
		goto out;
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_nop(sqe);
	rc = io_uring_submit_and_wait(&ring, 1);
	if (rc < 0)
		goto out;
	rc = io_uring_peek_cqe(&ring, &cqe);
	if (rc == 0) {
		rc = cqe->res < 0 ? cqe->res : 0;
		io_uring_cqe_seen(&ring, cqe);
	}
out:
	io_uring_queue_exit(&ring);
	return rc;
}

int dw__probe_dioalign(int fd, uint32_t *mem_align, uint32_t *off_align)
{
	struct io_statx st;

	memset(&st, 0, sizeof(st));
	if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &st) < 0)
		return -errno;
	if (!(st.mask & STATX_DIOALIGN) || st.dio_mem_align == 0 || st.dio_offset_align == 0)
		return DW_EUNSUPPORTED;
	*mem_align = st.dio_mem_align;
	*off_align = st.dio_offset_align;
	return 0;
}

int dw_io_probe_path(const char *path, dw_io_dev_info *out, size_t *mem_align, size_t *off_align)
{
	struct io_devprobe dp;
	struct stat st;
	uint32_t ma = 0, oa = 0;
	int fd = -1, rc;

	memset(out, 0, sizeof(*out));
	*mem_align = *off_align = 1;
	if (!path)
		return DW_EUSAGE;
	if (stat(path, &st) < 0)
		return -errno;
	dw__probe_device(st.st_dev, &dp);
	snprintf(out->name, sizeof(out->name), "%s", dp.name);
	out->dev = st.st_dev;
	out->class_ = dp.class_;
	out->depth = dw_io_class_depth(dp.class_);
	snprintf(out->depth_why, sizeof(out->depth_why), "class %s", dw_io_class_name(dp.class_));
	out->uring_errno = dw__probe_uring();
	out->backend = out->uring_errno == 0 ? DW_IO_ENGINE_URING : DW_IO_ENGINE_PSYNC;

	/* O_DIRECT: open the file itself, or an unnamed temporary file in the directory. */
	if (S_ISDIR(st.st_mode))
		fd = open(path, O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
	else
		fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		/* Only EINVAL says the filesystem refuses O_DIRECT; anything else: not known. */
		out->direct_errno = rc == -EINVAL ? rc : 1;
		if (rc != -EINVAL && !S_ISDIR(st.st_mode))
			return rc;
		return 0;
	}
	out->direct_errno = 0;
	if (dw__probe_dioalign(fd, &ma, &oa) == 0) {
		*mem_align = ma;
		*off_align = oa;
	} else {
		*mem_align = *off_align = dp.logical_block;
	}
	close(fd);
	return 0;
}
