// SPDX-License-Identifier: MIT
/*
 * Fuzz target: fabric datagrams. Must never crash, leak or read out of bounds.
 *
 * Input modes (first byte):
 *   0x00  the rest is "type, flags, body": it is framed with a header (sender 0x1234, a fresh
 *         sequence) and signed with the fuzz key, so the fuzzer reaches item decoding and the
 *         protocol logic behind authentication;
 *   other the bytes are a datagram as it would arrive from the network.
 * Either way the datagram goes to dw__wire_parse_header/dw__wire_open, every item is walked,
 * and it is fed to a live fabric node (key id 1, secret of 0x5a bytes) whose state carries over
 * between inputs, as a real node's would. The corpus in corpus/fabric_wire/ holds valid signed
 * packets of each type, body-mode inputs and garbage.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fabric/fabric_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int null_send(void *ctx, const dw_fabric_addr *to, const void *buf, size_t len)
{
	(void)ctx;
	(void)to;
	(void)buf;
	(void)len;
	return 0;
}

static void fuzz_ring(dw_fabric_keyring *r)
{
	memset(r, 0, sizeof(*r));
	r->n = 1;
	r->keys[0].id = 1;
	memset(r->keys[0].secret, 0x5a, DW_FABRIC_KEY_LEN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static dw_fake_clock fc;
	static dw_fabric *node;
	static struct dw__wire_keys keys;
	static uint64_t seq = 1ULL << 32;
	uint8_t pkt[DW__WIRE_MAX_PACKET];
	const uint8_t *in = data;
	size_t len = size;
	struct dw__wire_hdr hdr;
	const uint8_t *body;
	size_t blen;
	dw_fabric_addr from = { 0x7f000002, 7946 };

	if (!node) {
		dw_fabric_config cfg;

		dw_fake_clock_init(&fc, DW_NS_PER_SEC, DW_NS_PER_SEC);
		dw_fabric_config_default(&cfg);
		cfg.node_id = 0x99;
		cfg.generation = 1;
		cfg.addr = (dw_fabric_addr){ 0x7f000001, 7946 };
		fuzz_ring(&cfg.keyring);
		cfg.clock = &fc.clock;
		cfg.transport.send = null_send;
		if (dw_fabric_open(&cfg, &node) < 0 || dw__wire_keys_init(&keys, &cfg.keyring) < 0)
			abort();
		dw_fabric_join(node, NULL, 0);
	}
	if (size >= 3 && data[0] == 0x00) {
		struct dw__wire_writer w;
		size_t bl = size - 3;
		int n;

		if (bl > DW__WIRE_MAX_BODY)
			bl = DW__WIRE_MAX_BODY;
		dw__wire_begin(&w, pkt, sizeof(pkt), data[1], data[2], 0x1234, ++seq);
		memcpy(pkt + DW__WIRE_HDR_LEN, data + 3, bl);
		w.len += bl;
		n = dw__wire_finish(&w, &keys);
		if (n < 0)
			return 0;
		in = pkt;
		len = (size_t)n;
	}
	if (dw__wire_parse_header(in, len, &hdr, &blen) == 0 &&
	    dw__wire_open(&keys, in, len, &hdr, &body, &blen) == 0) {
		struct dw__wire_reader r = { body, body + blen };
		struct dw__wire_item it;

		while (dw__wire_next(&r, &it) > 0)
			;
	}
	dw_fabric_receive(node, &from, in, len);
	dw_fake_clock_advance(&fc, 100 * DW_NS_PER_MS);
	dw_fabric_tick(node);
	return 0;
}
