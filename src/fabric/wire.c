// SPDX-License-Identifier: MIT
/*
 * Fabric wire format: encoding, decoding and authentication of one datagram.
 *
 *  0               1               2               3
 *  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
 * +---------------+---------------+---------------+---------------+
 * |  magic 0xd5   |  magic 0xfb   |  version = 1  |     type      |  0
 * +---------------+---------------+---------------+---------------+
 * |                     key id (big endian)                       |  4
 * +---------------------------------------------------------------+
 * |                     sender node id (64)                       |  8
 * |                                                               |
 * +---------------------------------------------------------------+
 * |                     sequence number (64)                      | 16
 * |                                                               |
 * +---------------+---------------+-------------------------------+
 * |     flags     |  reserved 0   |          body length          | 24
 * +---------------+---------------+-------------------------------+
 * |  body: items, each  kind (1) | length (1) | value (length)    | 28
 * |  ...                                                          |
 * +---------------------------------------------------------------+
 * |  tag: HMAC-SHA256(key[key id], bytes 0 .. 28+body) first 16   |
 * +---------------------------------------------------------------+
 *
 * Every integer is big endian. The tag covers the whole header and body, so nothing a receiver
 * acts on is unauthenticated; it is checked in constant time before any item is read. Items
 * carry their own length so a newer sender can add kinds (or grow a kind) and an older receiver
 * skips what it does not know. The sequence number feeds a per-sender replay window kept by the
 * receiver (receive.c): senders start it at generation << 32, so a restarted node's packets are
 * always newer than anything it sent before.
 *
 * Decoding never trusts a length: every read is bounds-checked against the datagram, which is
 * what the fuzz target (tests/fuzz/fuzz_fabric_wire.c) hammers.
 */
#include <errno.h>
#include <string.h>

/*
 * HMAC is computed from SHA-256 states precomputed once per key (key XOR ipad, key XOR opad):
 * a packet then costs two struct copies and the hashing of its own bytes. OpenSSL 3 marks the
 * SHA256_* calls deprecated in favour of EVP, whose per-packet context duplication cost more than
 * the hashing itself on fabric-sized packets (half the simulator's time), so they are used here
 * on purpose.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "fabric_int.h"

/* ---- byte helpers ------------------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get64(const uint8_t *p)
{
	return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

/* ---- keys --------------------------------------------------------------------------------- */

struct hmac_key {
	SHA256_CTX inner; /* state after hashing key ^ ipad */
	SHA256_CTX outer; /* state after hashing key ^ opad */
};

int dw__wire_keys_init(struct dw__wire_keys *k, const dw_fabric_keyring *ring)
{
	int rc = 0;

	memset(k, 0, sizeof(*k));
	if (!ring || ring->n == 0 || ring->n > DW_FABRIC_MAX_KEYS)
		return DW_EBADKEY;
	for (size_t i = 0; i < ring->n; i++) {
		struct hmac_key *hk;
		uint8_t pad[SHA256_CBLOCK];

		if (ring->keys[i].id == 0) {
			rc = DW_EBADKEY;
			goto out;
		}
		hk = dw_calloc(1, sizeof(*hk));
		if (!hk) {
			rc = -ENOMEM;
			goto out;
		}
		k->ctx[i] = hk;
		k->ids[i] = ring->keys[i].id;
		k->n = i + 1;
		/* the key (32 bytes) is shorter than the block: zero-padded, never hashed first */
		memset(pad, 0x36, sizeof(pad));
		for (size_t j = 0; j < DW_FABRIC_KEY_LEN; j++)
			pad[j] ^= ring->keys[i].secret[j];
		SHA256_Init(&hk->inner);
		SHA256_Update(&hk->inner, pad, sizeof(pad));
		memset(pad, 0x5c, sizeof(pad));
		for (size_t j = 0; j < DW_FABRIC_KEY_LEN; j++)
			pad[j] ^= ring->keys[i].secret[j];
		SHA256_Init(&hk->outer);
		SHA256_Update(&hk->outer, pad, sizeof(pad));
		OPENSSL_cleanse(pad, sizeof(pad));
	}
out:
	if (rc < 0)
		dw__wire_keys_release(k);
	return rc;
}

void dw__wire_keys_release(struct dw__wire_keys *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->n; i++) {
		if (k->ctx[i]) {
			OPENSSL_cleanse(k->ctx[i], sizeof(struct hmac_key));
			dw_free(k->ctx[i]);
		}
	}
	memset(k, 0, sizeof(*k));
}

/* tag = first DW__WIRE_TAG_LEN bytes of HMAC-SHA256(key, data) */
static int compute_tag(const void *keyed, const uint8_t *data, size_t len, uint8_t *tag)
{
	const struct hmac_key *hk = keyed;
	SHA256_CTX c;
	uint8_t inner[SHA256_DIGEST_LENGTH], full[SHA256_DIGEST_LENGTH];

	c = hk->inner;
	SHA256_Update(&c, data, len);
	SHA256_Final(inner, &c);
	c = hk->outer;
	SHA256_Update(&c, inner, sizeof(inner));
	SHA256_Final(full, &c);
	memcpy(tag, full, DW__WIRE_TAG_LEN);
	return 0;
}

/* ---- writing ------------------------------------------------------------------------------ */

void dw__wire_begin(struct dw__wire_writer *w, uint8_t *buf, size_t cap, uint8_t type,
		    uint8_t flags, uint64_t sender, uint64_t seq)
{
	w->buf = buf;
	w->cap = cap > DW__WIRE_MAX_PACKET ? DW__WIRE_MAX_PACKET : cap;
	w->len = DW__WIRE_HDR_LEN;
	w->nitems = 0;
	buf[0] = DW__WIRE_MAGIC0;
	buf[1] = DW__WIRE_MAGIC1;
	buf[2] = DW__WIRE_VERSION;
	buf[3] = type;
	put32(buf + 4, 0);
	put64(buf + 8, sender);
	put64(buf + 16, seq);
	buf[24] = flags;
	buf[25] = 0;
	put16(buf + 26, 0);
}

bool dw__wire_room(const struct dw__wire_writer *w, size_t vlen)
{
	return w->len + 2 + vlen + DW__WIRE_TAG_LEN <= w->cap;
}

static size_t item_len(uint8_t kind)
{
	switch (kind) {
	case DW__ITEM_MEMBER:
		return DW__MEMBER_ITEM_LEN;
	case DW__ITEM_CLUSTER:
		return DW__CLUSTER_ITEM_LEN;
	case DW__ITEM_EVID_REQ:
		return DW__EVID_REQ_ITEM_LEN;
	case DW__ITEM_EVID:
		return DW__EVID_ITEM_LEN;
	case DW__ITEM_JOIN_RESULT:
		return DW__JOIN_RESULT_ITEM_LEN;
	case DW__ITEM_PAGE:
		return DW__PAGE_ITEM_LEN;
	case DW__ITEM_SYNC_REQ:
		return DW__SYNC_REQ_ITEM_LEN;
	}
	return 0;
}

int dw__wire_put(struct dw__wire_writer *w, const struct dw__wire_item *it)
{
	size_t vlen = item_len(it->kind);
	uint8_t *p;

	if (vlen == 0)
		return -EINVAL;
	if (!dw__wire_room(w, vlen))
		return DW_ETOOBIG;
	p = w->buf + w->len;
	p[0] = it->kind;
	p[1] = (uint8_t)vlen;
	p += 2;
	switch (it->kind) {
	case DW__ITEM_MEMBER: {
		const struct dw__wire_member *m = &it->u.member;

		put64(p, m->id);
		put32(p + 8, m->gen);
		put32(p + 12, m->ctr);
		p[16] = m->state;
		p[17] = m->flags;
		put16(p + 18, m->group);
		p[20] = 4; /* address family: IPv4 */
		put32(p + 21, m->ip);
		put16(p + 25, m->port);
		break;
	}
	case DW__ITEM_CLUSTER:
		put32(p, it->u.cluster.epoch);
		p[4] = it->u.cluster.topology;
		put32(p + 5, it->u.cluster.size);
		put32(p + 9, it->u.cluster.group_size);
		break;
	case DW__ITEM_EVID_REQ:
		put64(p, it->u.subject);
		break;
	case DW__ITEM_EVID:
		put64(p, it->u.evid.subject);
		put32(p + 8, it->u.evid.age_ms);
		break;
	case DW__ITEM_JOIN_RESULT: {
		const struct dw__wire_join_result *j = &it->u.join;

		p[0] = j->status;
		p[1] = j->topology;
		p[2] = j->missed;
		p[3] = j->mode;
		put32(p + 4, j->interval_ms);
		put32(p + 8, j->limit);
		put32(p + 12, j->epoch);
		put32(p + 16, j->size);
		break;
	}
	case DW__ITEM_PAGE:
		put32(p, it->u.page.total);
		put32(p + 4, it->u.page.offset);
		break;
	case DW__ITEM_SYNC_REQ:
		put32(p, it->u.offset);
		break;
	}
	w->len += 2 + vlen;
	w->nitems++;
	return 0;
}

int dw__wire_finish(struct dw__wire_writer *w, const struct dw__wire_keys *k)
{
	int rc;

	if (!k || k->n == 0)
		return DW_EBADKEY;
	if (w->len + DW__WIRE_TAG_LEN > w->cap)
		return DW_ETOOBIG;
	put32(w->buf + 4, k->ids[0]);
	put16(w->buf + 26, (uint16_t)(w->len - DW__WIRE_HDR_LEN));
	rc = compute_tag(k->ctx[0], w->buf, w->len, w->buf + w->len);
	if (rc < 0)
		return rc;
	w->len += DW__WIRE_TAG_LEN;
	return (int)w->len;
}

/* ---- reading ------------------------------------------------------------------------------ */

#define DROP(reason) (-(int)(reason)-1)

int dw__wire_parse_header(const uint8_t *buf, size_t len, struct dw__wire_hdr *hdr,
			  size_t *body_len)
{
	size_t blen;

	if (len < DW__WIRE_HDR_LEN + DW__WIRE_TAG_LEN || len > DW__WIRE_MAX_PACKET)
		return DROP(DW_FABRIC_DROP_MALFORMED);
	if (buf[0] != DW__WIRE_MAGIC0 || buf[1] != DW__WIRE_MAGIC1)
		return DROP(DW_FABRIC_DROP_MALFORMED);
	if (buf[2] != DW__WIRE_VERSION)
		return DROP(DW_FABRIC_DROP_VERSION);
	hdr->version = buf[2];
	hdr->type = buf[3];
	hdr->key_id = get32(buf + 4);
	hdr->sender = get64(buf + 8);
	hdr->seq = get64(buf + 16);
	hdr->flags = buf[24];
	blen = get16(buf + 26);
	if (buf[25] != 0 || hdr->type == 0 || hdr->type > DW__PKT__MAX || hdr->sender == 0 ||
	    DW__WIRE_HDR_LEN + blen + DW__WIRE_TAG_LEN != len)
		return DROP(DW_FABRIC_DROP_MALFORMED);
	*body_len = blen;
	return 0;
}

int dw__wire_open(const struct dw__wire_keys *k, const uint8_t *buf, size_t len,
		  struct dw__wire_hdr *hdr, const uint8_t **body, size_t *body_len)
{
	uint8_t tag[DW__WIRE_TAG_LEN];
	size_t blen = 0;
	size_t ki;
	int rc;

	rc = dw__wire_parse_header(buf, len, hdr, &blen);
	if (rc < 0)
		return rc;
	for (ki = 0; ki < k->n; ki++) {
		if (k->ids[ki] == hdr->key_id)
			break;
	}
	if (ki == k->n)
		return DROP(DW_FABRIC_DROP_UNKNOWN_KEY);
	if (compute_tag(k->ctx[ki], buf, DW__WIRE_HDR_LEN + blen, tag) < 0)
		return DROP(DW_FABRIC_DROP_AUTH);
	if (CRYPTO_memcmp(tag, buf + DW__WIRE_HDR_LEN + blen, DW__WIRE_TAG_LEN) != 0)
		return DROP(DW_FABRIC_DROP_AUTH);
	*body = buf + DW__WIRE_HDR_LEN;
	*body_len = blen;
	return 0;
}

int dw__wire_next(struct dw__wire_reader *r, struct dw__wire_item *it)
{
	const uint8_t *p;
	size_t vlen, need;

	if (r->p >= r->end)
		return 0;
	if (r->end - r->p < 2)
		return DW_EPROTO;
	it->kind = r->p[0];
	vlen = r->p[1];
	p = r->p + 2;
	if ((size_t)(r->end - p) < vlen)
		return DW_EPROTO;
	r->p = p + vlen;
	need = item_len(it->kind);
	if (need == 0)
		return 1; /* unknown kind: caller skips it */
	if (vlen < need)
		return DW_EPROTO; /* a known kind may grow, never shrink */
	switch (it->kind) {
	case DW__ITEM_MEMBER: {
		struct dw__wire_member *m = &it->u.member;

		m->id = get64(p);
		m->gen = get32(p + 8);
		m->ctr = get32(p + 12);
		m->state = p[16];
		m->flags = p[17];
		m->group = get16(p + 18);
		if (p[20] != 4 || m->id == 0 || m->state > DW_FABRIC_DEAD)
			return DW_EPROTO;
		m->ip = get32(p + 21);
		m->port = get16(p + 25);
		break;
	}
	case DW__ITEM_CLUSTER:
		it->u.cluster.epoch = get32(p);
		it->u.cluster.topology = p[4];
		if (p[4] > DW_FABRIC_FEDERATED)
			return DW_EPROTO;
		it->u.cluster.size = get32(p + 5);
		it->u.cluster.group_size = get32(p + 9);
		break;
	case DW__ITEM_EVID_REQ:
		it->u.subject = get64(p);
		break;
	case DW__ITEM_EVID:
		it->u.evid.subject = get64(p);
		it->u.evid.age_ms = get32(p + 8);
		break;
	case DW__ITEM_JOIN_RESULT: {
		struct dw__wire_join_result *j = &it->u.join;

		j->status = p[0];
		j->topology = p[1];
		j->missed = p[2];
		j->mode = p[3];
		j->interval_ms = get32(p + 4);
		j->limit = get32(p + 8);
		j->epoch = get32(p + 12);
		j->size = get32(p + 16);
		if (j->status > DW__JOIN_REDIRECT || j->topology > DW_FABRIC_FEDERATED ||
		    j->mode > DW_FABRIC_MODE_RECOMMEND)
			return DW_EPROTO;
		break;
	}
	case DW__ITEM_PAGE:
		it->u.page.total = get32(p);
		it->u.page.offset = get32(p + 4);
		break;
	case DW__ITEM_SYNC_REQ:
		it->u.offset = get32(p);
		break;
	}
	return 1;
}

/* ---- replay window ------------------------------------------------------------------------ */

bool dw__replay_ok(const struct dw__replay *r, uint64_t seq)
{
	uint64_t d;

	if (seq > r->top)
		return true;
	d = r->top - seq;
	if (d >= DW__REPLAY_WINDOW)
		return false;
	return !(r->bits[d / 64] & (1ULL << (d % 64)));
}

void dw__replay_mark(struct dw__replay *r, uint64_t seq)
{
	uint64_t d;

	if (seq > r->top) {
		uint64_t shift = seq - r->top;

		if (shift >= DW__REPLAY_WINDOW) {
			memset(r->bits, 0, sizeof(r->bits));
		} else {
			/* shift the whole bitmap towards older: word moves, then bit moves */
			size_t words = (size_t)(shift / 64), bits = (size_t)(shift % 64);
			size_t nw = DW__REPLAY_WINDOW / 64;

			for (size_t i = nw; i-- > 0;) {
				uint64_t v = i >= words ? r->bits[i - words] : 0;
				uint64_t lower = i >= words + 1 ? r->bits[i - words - 1] : 0;

				r->bits[i] = bits ? (v << bits) | (lower >> (64 - bits)) : v;
			}
		}
		r->top = seq;
	}
	d = r->top - seq;
	if (d < DW__REPLAY_WINDOW)
		r->bits[d / 64] |= 1ULL << (d % 64);
}
