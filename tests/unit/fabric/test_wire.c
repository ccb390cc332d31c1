// SPDX-License-Identifier: MIT
/*
 * Fabric wire format: every item kind round-trips; a tampered, truncated, re-versioned or
 * wrongly keyed packet is refused with the right drop reason; key rotation accepts any ring key
 * and signs with the primary; the replay window accepts each sequence once; key files and
 * addresses parse strictly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fabric/fabric_int.h"

static void make_ring(dw_fabric_keyring *r, const uint32_t *ids, size_t n)
{
	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < n; i++) {
		r->keys[i].id = ids[i];
		for (int j = 0; j < DW_FABRIC_KEY_LEN; j++)
			r->keys[i].secret[j] = (uint8_t)(ids[i] * 7 + (uint32_t)j);
	}
	r->n = n;
}

/* A packet with one item of each kind, signed with ring's primary key. */
static int build(const struct dw__wire_keys *k, uint8_t *buf)
{
	struct dw__wire_writer w;
	struct dw__wire_item it;

	dw__wire_begin(&w, buf, DW__WIRE_MAX_PACKET, DW__PKT_PING, DW__PKT_FLAG_ACK_REQ, 0xabcdef,
		       (7ULL << 32) | 5);
	memset(&it, 0, sizeof(it));
	it.kind = DW__ITEM_MEMBER;
	it.u.member = (struct dw__wire_member){ .id = 0xabcdef,
						.gen = 7,
						.ctr = 3,
						.state = DW_FABRIC_SUSPECT,
						.flags = 1,
						.group = 42,
						.ip = 0x7f000001,
						.port = 7946 };
	assert_int_equal(dw__wire_put(&w, &it), 0);
	it.kind = DW__ITEM_CLUSTER;
	it.u.cluster = (struct dw__wire_cluster){
		.epoch = 9, .topology = DW_FABRIC_FEDERATED, .size = 10000, .group_size = 97
	};
	assert_int_equal(dw__wire_put(&w, &it), 0);
	it.kind = DW__ITEM_EVID_REQ;
	it.u.subject = 77;
	assert_int_equal(dw__wire_put(&w, &it), 0);
	it.kind = DW__ITEM_EVID;
	it.u.evid.subject = 78;
	it.u.evid.age_ms = 1234;
	assert_int_equal(dw__wire_put(&w, &it), 0);
	it.kind = DW__ITEM_JOIN_RESULT;
	it.u.join = (struct dw__wire_join_result){ .status = DW__JOIN_FULL,
						   .topology = 1,
						   .missed = 3,
						   .mode = 1,
						   .interval_ms = 15000,
						   .limit = 500,
						   .epoch = 2,
						   .size = 500 };
	assert_int_equal(dw__wire_put(&w, &it), 0);
	it.kind = DW__ITEM_PAGE;
	it.u.page.total = 300;
	it.u.page.offset = 46;
	assert_int_equal(dw__wire_put(&w, &it), 0);
	it.kind = DW__ITEM_SYNC_REQ;
	it.u.offset = 92;
	assert_int_equal(dw__wire_put(&w, &it), 0);
	return dw__wire_finish(&w, k);
}

static void test_roundtrip(void **state)
{
	dw_fabric_keyring ring;
	struct dw__wire_keys k;
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_hdr h;
	const uint8_t *body;
	size_t blen;
	struct dw__wire_reader r;
	struct dw__wire_item it;
	int len, n = 0;

	(void)state;
	make_ring(&ring, (uint32_t[]){ 11 }, 1);
	assert_int_equal(dw__wire_keys_init(&k, &ring), 0);
	len = build(&k, buf);
	assert_true(len > DW__WIRE_HDR_LEN + DW__WIRE_TAG_LEN);
	assert_int_equal(dw__wire_open(&k, buf, (size_t)len, &h, &body, &blen), 0);
	assert_int_equal(h.type, DW__PKT_PING);
	assert_int_equal(h.flags, DW__PKT_FLAG_ACK_REQ);
	assert_int_equal(h.key_id, 11);
	assert_true(h.sender == 0xabcdef);
	assert_true(h.seq == ((7ULL << 32) | 5));
	r.p = body;
	r.end = body + blen;
	while (dw__wire_next(&r, &it) > 0) {
		switch (it.kind) {
		case DW__ITEM_MEMBER:
			assert_true(it.u.member.id == 0xabcdef);
			assert_int_equal(it.u.member.gen, 7);
			assert_int_equal(it.u.member.ctr, 3);
			assert_int_equal(it.u.member.state, DW_FABRIC_SUSPECT);
			assert_int_equal(it.u.member.flags, 1);
			assert_int_equal(it.u.member.group, 42);
			assert_int_equal(it.u.member.ip, 0x7f000001);
			assert_int_equal(it.u.member.port, 7946);
			break;
		case DW__ITEM_CLUSTER:
			assert_int_equal(it.u.cluster.epoch, 9);
			assert_int_equal(it.u.cluster.topology, DW_FABRIC_FEDERATED);
			assert_int_equal(it.u.cluster.size, 10000);
			assert_int_equal(it.u.cluster.group_size, 97);
			break;
		case DW__ITEM_EVID_REQ:
			assert_true(it.u.subject == 77);
			break;
		case DW__ITEM_EVID:
			assert_true(it.u.evid.subject == 78);
			assert_int_equal(it.u.evid.age_ms, 1234);
			break;
		case DW__ITEM_JOIN_RESULT:
			assert_int_equal(it.u.join.status, DW__JOIN_FULL);
			assert_int_equal(it.u.join.interval_ms, 15000);
			assert_int_equal(it.u.join.limit, 500);
			assert_int_equal(it.u.join.size, 500);
			break;
		case DW__ITEM_PAGE:
			assert_int_equal(it.u.page.total, 300);
			assert_int_equal(it.u.page.offset, 46);
			break;
		case DW__ITEM_SYNC_REQ:
			assert_int_equal(it.u.offset, 92);
			break;
		default:
			fail();
		}
		n++;
	}
	assert_int_equal(n, 7);
	dw__wire_keys_release(&k);
}

/* The tag is standard HMAC-SHA256 (truncated), checked against OpenSSL's own HMAC(). */
static void test_tag_is_hmac_sha256(void **state)
{
	dw_fabric_keyring ring;
	struct dw__wire_keys k;
	uint8_t buf[DW__WIRE_MAX_PACKET], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	int len;

	(void)state;
	make_ring(&ring, (uint32_t[]){ 11 }, 1);
	assert_int_equal(dw__wire_keys_init(&k, &ring), 0);
	len = build(&k, buf);
	assert_non_null(HMAC(EVP_sha256(), ring.keys[0].secret, DW_FABRIC_KEY_LEN, buf,
			     (size_t)len - DW__WIRE_TAG_LEN, mac, &maclen));
	assert_int_equal(maclen, 32);
	assert_memory_equal(buf + len - DW__WIRE_TAG_LEN, mac, DW__WIRE_TAG_LEN);
	dw__wire_keys_release(&k);
}

static void test_rejects(void **state)
{
	dw_fabric_keyring ring, other;
	struct dw__wire_keys k, ko;
	uint8_t buf[DW__WIRE_MAX_PACKET], bad[DW__WIRE_MAX_PACKET];
	struct dw__wire_hdr h;
	const uint8_t *body;
	size_t blen;
	int len, rc;

	(void)state;
	make_ring(&ring, (uint32_t[]){ 11 }, 1);
	make_ring(&other, (uint32_t[]){ 12 }, 1);
	assert_int_equal(dw__wire_keys_init(&k, &ring), 0);
	assert_int_equal(dw__wire_keys_init(&ko, &other), 0);
	len = build(&k, buf);

	/* every single flipped bit is refused */
	for (int i = 0; i < len; i++) {
		memcpy(bad, buf, (size_t)len);
		bad[i] ^= 0x01;
		rc = dw__wire_open(&k, bad, (size_t)len, &h, &body, &blen);
		assert_true(rc < 0);
	}
	/* a flipped body bit is an authentication failure */
	memcpy(bad, buf, (size_t)len);
	bad[DW__WIRE_HDR_LEN + 3] ^= 0x80;
	rc = dw__wire_open(&k, bad, (size_t)len, &h, &body, &blen);
	assert_int_equal(dw__wire_drop_reason(rc), DW_FABRIC_DROP_AUTH);
	/* truncated anywhere */
	for (int cut = 0; cut < len; cut++) {
		rc = dw__wire_open(&k, buf, (size_t)cut, &h, &body, &blen);
		assert_int_equal(dw__wire_drop_reason(rc), DW_FABRIC_DROP_MALFORMED);
	}
	/* another version */
	memcpy(bad, buf, (size_t)len);
	bad[2] = 2;
	rc = dw__wire_open(&k, bad, (size_t)len, &h, &body, &blen);
	assert_int_equal(dw__wire_drop_reason(rc), DW_FABRIC_DROP_VERSION);
	/* a key we do not hold */
	rc = dw__wire_open(&ko, buf, (size_t)len, &h, &body, &blen);
	assert_int_equal(dw__wire_drop_reason(rc), DW_FABRIC_DROP_UNKNOWN_KEY);
	/* a key id we hold but another secret behind it: forged */
	make_ring(&other, (uint32_t[]){ 11 }, 1);
	other.keys[0].secret[0] ^= 1;
	dw__wire_keys_release(&ko);
	assert_int_equal(dw__wire_keys_init(&ko, &other), 0);
	rc = dw__wire_open(&ko, buf, (size_t)len, &h, &body, &blen);
	assert_int_equal(dw__wire_drop_reason(rc), DW_FABRIC_DROP_AUTH);
	dw__wire_keys_release(&k);
	dw__wire_keys_release(&ko);
}

static void test_rotation(void **state)
{
	dw_fabric_keyring old_ring, both, new_ring;
	struct dw__wire_keys ko, kb, kn;
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_hdr h;
	const uint8_t *body;
	size_t blen;
	int len;

	(void)state;
	make_ring(&old_ring, (uint32_t[]){ 1 }, 1);
	make_ring(&both, (uint32_t[]){ 2, 1 }, 2); /* new key sent, old accepted */
	make_ring(&new_ring, (uint32_t[]){ 2 }, 1);
	assert_int_equal(dw__wire_keys_init(&ko, &old_ring), 0);
	assert_int_equal(dw__wire_keys_init(&kb, &both), 0);
	assert_int_equal(dw__wire_keys_init(&kn, &new_ring), 0);
	len = build(&ko, buf); /* an old node */
	assert_int_equal(dw__wire_open(&kb, buf, (size_t)len, &h, &body, &blen), 0);
	assert_true(dw__wire_open(&kn, buf, (size_t)len, &h, &body, &blen) < 0);
	len = build(&kb, buf); /* a rotating node signs with its primary */
	assert_int_equal(dw__wire_open(&kb, buf, (size_t)len, &h, &body, &blen), 0);
	assert_int_equal(h.key_id, 2);
	assert_int_equal(dw__wire_open(&kn, buf, (size_t)len, &h, &body, &blen), 0);
	assert_true(dw__wire_open(&ko, buf, (size_t)len, &h, &body, &blen) < 0);
	dw__wire_keys_release(&ko);
	dw__wire_keys_release(&kb);
	dw__wire_keys_release(&kn);
}

static void test_items_bounds(void **state)
{
	struct dw__wire_reader r;
	struct dw__wire_item it;
	uint8_t unknown[] = { 200, 3, 1, 2, 3, DW__ITEM_SYNC_REQ, 4, 0, 0, 0, 9 };
	uint8_t shortk[] = { DW__ITEM_EVID, 4, 0, 0, 0, 1 };
	uint8_t overrun[] = { DW__ITEM_SYNC_REQ, 10, 0, 0 };
	uint8_t half[] = { DW__ITEM_SYNC_REQ };
	uint8_t badfam[2 + DW__MEMBER_ITEM_LEN] = { DW__ITEM_MEMBER, DW__MEMBER_ITEM_LEN };

	(void)state;
	/* an unknown kind is skipped, what follows is read */
	r.p = unknown;
	r.end = unknown + sizeof(unknown);
	assert_int_equal(dw__wire_next(&r, &it), 1);
	assert_int_equal(it.kind, 200);
	assert_int_equal(dw__wire_next(&r, &it), 1);
	assert_int_equal(it.kind, DW__ITEM_SYNC_REQ);
	assert_int_equal(it.u.offset, 9);
	assert_int_equal(dw__wire_next(&r, &it), 0);
	/* a known kind shorter than its size, a length past the end, a lone kind byte */
	r.p = shortk;
	r.end = shortk + sizeof(shortk);
	assert_int_equal(dw__wire_next(&r, &it), DW_EPROTO);
	r.p = overrun;
	r.end = overrun + sizeof(overrun);
	assert_int_equal(dw__wire_next(&r, &it), DW_EPROTO);
	r.p = half;
	r.end = half + sizeof(half);
	assert_int_equal(dw__wire_next(&r, &it), DW_EPROTO);
	/* member with id 0 / unknown address family */
	r.p = badfam;
	r.end = badfam + sizeof(badfam);
	assert_int_equal(dw__wire_next(&r, &it), DW_EPROTO);
}

static void test_writer_full(void **state)
{
	dw_fabric_keyring ring;
	struct dw__wire_keys k;
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;
	struct dw__wire_item it;
	int n = 0, len;

	(void)state;
	make_ring(&ring, (uint32_t[]){ 3 }, 1);
	assert_int_equal(dw__wire_keys_init(&k, &ring), 0);
	dw__wire_begin(&w, buf, sizeof(buf), DW__PKT_UPDATE, 0, 5, 1);
	memset(&it, 0, sizeof(it));
	it.kind = DW__ITEM_MEMBER;
	it.u.member.id = 1;
	while (dw__wire_put(&w, &it) == 0)
		n++;
	assert_int_equal(n, (int)(DW__WIRE_MAX_BODY / (2 + DW__MEMBER_ITEM_LEN)));
	len = dw__wire_finish(&w, &k);
	assert_true(len > 0 && len <= DW__WIRE_MAX_PACKET);
	dw__wire_keys_release(&k);
}

static void test_replay_window(void **state)
{
	struct dw__replay r;

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_true(dw__replay_ok(&r, 100));
	dw__replay_mark(&r, 100);
	assert_false(dw__replay_ok(&r, 100));
	assert_true(dw__replay_ok(&r, 99)); /* reordered, not seen yet */
	dw__replay_mark(&r, 99);
	assert_false(dw__replay_ok(&r, 99));
	dw__replay_mark(&r, 100 + 70); /* a jump across a word */
	assert_false(dw__replay_ok(&r, 100));
	assert_false(dw__replay_ok(&r, 99));
	assert_true(dw__replay_ok(&r, 101));
	assert_false(dw__replay_ok(&r, 170));
	dw__replay_mark(&r, 170 + DW__REPLAY_WINDOW - 1);
	assert_false(dw__replay_ok(&r, 170));
	assert_true(dw__replay_ok(&r, 171));
	assert_false(dw__replay_ok(&r, 169)); /* fell out of the window: too old */
	dw__replay_mark(&r, 1ULL << 40);      /* a restart's generation jump */
	assert_true(dw__replay_ok(&r, (1ULL << 40) + 1));
	assert_false(dw__replay_ok(&r, 171));
}

static void test_keyring_parse(void **state)
{
	dw_fabric_keyring ring;
	dw_fabric_key key;
	char line[128], text[400], err[160];

	(void)state;
	assert_int_equal(dw_fabric_key_generate(&key), 0);
	assert_true(key.id != 0);
	assert_int_equal(dw_fabric_key_format(&key, line, sizeof(line)), 0);
	snprintf(text, sizeof(text), "# cluster key\n\n%s\n7 %064d\n", line, 0);
	assert_int_equal(dw_fabric_keyring_parse(text, &ring, err, sizeof(err)), 0);
	assert_int_equal(ring.n, 2);
	assert_int_equal(ring.keys[0].id, key.id);
	assert_memory_equal(ring.keys[0].secret, key.secret, DW_FABRIC_KEY_LEN);
	assert_int_equal(ring.keys[1].id, 7);
	assert_int_equal(dw_fabric_key_format(&key, line, 10), DW_ETOOBIG);

	assert_int_equal(dw_fabric_keyring_parse("", &ring, err, sizeof(err)), DW_EBADKEY);
	assert_non_null(strstr(err, "no key"));
	assert_int_equal(dw_fabric_keyring_parse("1 abcd\n", &ring, err, sizeof(err)), DW_EBADKEY);
	assert_non_null(strstr(err, "line 1"));
	snprintf(text, sizeof(text), "0 %064d\n", 0);
	assert_int_equal(dw_fabric_keyring_parse(text, &ring, err, sizeof(err)), DW_EBADKEY);
	snprintf(text, sizeof(text), "5 %064d\n5 %064d\n", 0, 1);
	assert_int_equal(dw_fabric_keyring_parse(text, &ring, err, sizeof(err)), DW_EBADKEY);
	assert_non_null(strstr(err, "duplicate"));
	snprintf(text, sizeof(text), "5 %063dg\n", 0);
	assert_int_equal(dw_fabric_keyring_parse(text, &ring, err, sizeof(err)), DW_EBADKEY);
	snprintf(text, sizeof(text), "5 %064d trailing\n", 0);
	assert_int_equal(dw_fabric_keyring_parse(text, &ring, err, sizeof(err)), DW_EBADKEY);
	/* one key more than the ring holds */
	{
		char *big = malloc(80 * (DW_FABRIC_MAX_KEYS + 2));

		assert_non_null(big);
		big[0] = '\0';
		for (int i = 1; i <= DW_FABRIC_MAX_KEYS + 1; i++) {
			char one[80];

			snprintf(one, sizeof(one), "%d %064d\n", i, 0);
			strcat(big, one);
		}
		assert_int_equal(dw_fabric_keyring_parse(big, &ring, err, sizeof(err)), DW_EBADKEY);
		assert_non_null(strstr(err, "more than"));
		free(big);
	}
}

static void test_keyring_load(void **state)
{
	dw_fabric_keyring ring;
	char dir[256], path[300], err[200];
	const char *base = getenv("DW_TEST_TMPDIR");
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/fabric_wire_XXXXXX", base ? base : "/tmp");
	if (base)
		(void)mkdir(base, 0700); /* may exist already */
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "9 %064d\n", 1);
	fclose(f);
	assert_int_equal(dw_fabric_keyring_load(path, &ring, err, sizeof(err)), 0);
	assert_int_equal(ring.keys[0].id, 9);
	unlink(path);
	assert_true(dw_fabric_keyring_load(path, &ring, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "cannot open"));
	rmdir(dir);
}

static void test_addr(void **state)
{
	dw_fabric_addr a;
	char buf[32];

	(void)state;
	assert_int_equal(dw_fabric_addr_parse("127.0.0.5:7946", &a), 0);
	assert_int_equal(a.ip, 0x7f000005);
	assert_int_equal(a.port, 7946);
	assert_string_equal(dw_fabric_addr_format(&a, buf, sizeof(buf)), "127.0.0.5:7946");
	assert_int_equal(dw_fabric_addr_parse("127.0.0.256:1", &a), DW_EUSAGE);
	assert_int_equal(dw_fabric_addr_parse("127.0.0:1", &a), DW_EUSAGE);
	assert_int_equal(dw_fabric_addr_parse("127.0.0.1:65536", &a), DW_EUSAGE);
	assert_int_equal(dw_fabric_addr_parse("127.0.0.1:", &a), DW_EUSAGE);
	assert_int_equal(dw_fabric_addr_parse("127.0.0.1", &a), DW_EUSAGE);
	assert_int_equal(dw_fabric_addr_parse("a.b.c.d:1", &a), DW_EUSAGE);
	assert_int_equal(dw_fabric_addr_parse("127.0.0.1:80x", &a), DW_EUSAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),     cmocka_unit_test(test_tag_is_hmac_sha256),
		cmocka_unit_test(test_rejects),	      cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_items_bounds),  cmocka_unit_test(test_writer_full),
		cmocka_unit_test(test_replay_window), cmocka_unit_test(test_keyring_parse),
		cmocka_unit_test(test_keyring_load),  cmocka_unit_test(test_addr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
