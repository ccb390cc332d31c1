// SPDX-License-Identifier: MIT
/*
 * Fabric UDP transport: one non-blocking IPv4 datagram socket, and the loop that drives a fabric
 * node from it (poll for datagrams until the node's next deadline, feed them in, tick).
 *
 * The protocol logic never sees the socket: it gets received bytes through dw_fabric_receive()
 * and sends through the vtable returned by dw_fabric_udp_transport(). A drop rate, for tests on
 * kernels without netem, discards that share of datagrams both ways, from a seeded generator.
 *
 * Threads and locking: a dw_fabric_udp is used by the one thread that runs dw_fabric_udp_run();
 * the stop flag is the only field read across threads (an atomic, relaxed: it is polled every
 * loop and the loop wakes at least every 100 ms).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fabric_int.h"

/* A loop wakes at least this often to see the stop flag. */
#define UDP_MAX_WAIT_MS 100
/* Datagrams drained per wake before the timers get a turn, so a flood cannot starve them. */
#define UDP_BURST 256

struct dw_fabric_udp {
	int fd;
	double drop_rate;
	uint64_t rng;
	uint64_t dropped_in, dropped_out;
};

static bool drop(dw_fabric_udp *u)
{
	if (u->drop_rate <= 0)
		return false;
	return (double)(dw__rand_next(&u->rng) >> 11) * 0x1.0p-53 < u->drop_rate;
}

static int udp_send(void *ctx, const dw_fabric_addr *to, const void *buf, size_t len)
{
	dw_fabric_udp *u = ctx;
	struct sockaddr_in sa;

	if (drop(u)) {
		u->dropped_out++;
		return 0;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(to->ip);
	sa.sin_port = htons(to->port);
	if (sendto(u->fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return 0;
}

int dw_fabric_udp_open(const dw_fabric_addr *bind_addr, double drop_rate, uint64_t seed,
		       dw_fabric_udp **out)
{
	dw_fabric_udp *u;
	struct sockaddr_in sa;
	int rc;

	*out = NULL;
	if (!(drop_rate >= 0 && drop_rate < 1))
		return DW_EUSAGE;
	u = dw_calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->drop_rate = drop_rate;
	u->rng = seed ? seed : 0x5eed;
	u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0) {
		rc = -errno;
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(bind_addr->ip);
	sa.sin_port = htons(bind_addr->port);
	if (bind(u->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		goto out;
	}
	*out = u;
	return 0;
out:
	dw_fabric_udp_close(u);
	return rc;
}

void dw_fabric_udp_close(dw_fabric_udp *u)
{
	if (!u)
		return;
	if (u->fd >= 0)
		close(u->fd);
	dw_free(u);
}

dw_fabric_transport dw_fabric_udp_transport(dw_fabric_udp *u)
{
	dw_fabric_transport t = { .send = udp_send, .ctx = u };

	return t;
}

int dw_fabric_udp_fd(dw_fabric_udp *u)
{
	return u->fd;
}

uint64_t dw_fabric_udp_dropped(dw_fabric_udp *u)
{
	return u->dropped_in + u->dropped_out;
}

int dw_fabric_udp_pump(dw_fabric_udp *u, dw_fabric *f)
{
	uint8_t buf[DW__WIRE_MAX_PACKET + 1];
	int n = 0;

	for (int i = 0; i < UDP_BURST; i++) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		dw_fabric_addr from;
		ssize_t len = recvfrom(u->fd, buf, sizeof(buf), MSG_DONTWAIT,
				       (struct sockaddr *)&sa, &sl);

		if (len < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (drop(u)) {
			u->dropped_in++;
			continue;
		}
		from.ip = ntohl(sa.sin_addr.s_addr);
		from.port = ntohs(sa.sin_port);
		(void)dw_fabric_receive(f, &from, buf, (size_t)len);
		n++;
	}
	return n;
}

int dw_fabric_udp_run(dw_fabric_udp *u, dw_fabric *f, const atomic_bool *stop,
		      const dw_clock *clock)
{
	int rc = 0;

	while (!atomic_load_explicit(stop, memory_order_relaxed)) {
		uint64_t next = dw_fabric_tick(f), now = dw_clock_now(clock);
		uint64_t wait_ms = next > now ? (next - now + DW_NS_PER_MS - 1) / DW_NS_PER_MS : 0;
		struct pollfd p = { .fd = u->fd, .events = POLLIN };

		if (wait_ms > UDP_MAX_WAIT_MS)
			wait_ms = UDP_MAX_WAIT_MS;
		if (poll(&p, 1, (int)wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (p.revents & POLLIN) {
			rc = dw_fabric_udp_pump(u, f);
			if (rc < 0)
				break;
			rc = 0;
		}
	}
	return rc;
}
