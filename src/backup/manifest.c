// SPDX-License-Identifier: MIT
/*
 * Manifest files: the streamed description of one backup.
 *
 * A manifest is a sequence of records, written and read in one pass with a fixed-size buffer, so
 * neither side holds the tree in memory. Entries come in the walk order (dw__path_cmp: the root
 * ".", then depth-first, names in byte order), which lets an incremental merge its walk of the
 * source with a sequential read of its parent's manifest.
 *
 *   record   +------+-----------+------------------+
 *            | type | len (u32) | payload (len)    |      type is one ASCII letter
 *            +------+-----------+------------------+
 *
 *   H header   magic "DWMF" u32 version, u8 type, u32 block_size, u64 created_ns,
 *              u16 chain_len, chain_len x (u8 n, id[n]), u16 n, source[n]
 *   D F L K S  entry: u16 n, path[n], u32 mode, u32 uid, u32 gid, i64 mtime_s, u32 mtime_ns,
 *              i64 ctime_s, u32 ctime_ns, u64 size, u64 ino, u64 rdev, u16 n, target[n]
 *              (target: symlink text for L, first name of the inode for K, else empty)
 *   B block    u16 chain_idx, u8 flags, u32 pack, u64 offset, u32 clen, u32 ulen, sha256[32]
 *   E file end u64 size, sha256[32] of the file, u32 flags (1 = partial: read error)
 *   T trailer  16 x u64 (13 counters of dw_backup_stats, finished_ns, 2 reserved),
 *              sha256[32] of every byte before this field, magic "DWMFEND1"
 *
 * A file is F, then one B per block in order, then E. The file hash is SHA-256 over the
 * concatenated block hashes: it is computed without reading the data twice, and still binds
 * every byte and the block order. The trailer has a fixed size (DW__TRAILER_SIZE) so listing
 * reads only the first and last bytes of each manifest.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "backup/backup_int.h"

#define MF_MAGIC    "DWMF"
#define MF_END	    "DWMFEND1"
#define MF_BUF	    (256u << 10)
#define MF_REC_MAX  (2 * DW__PATH_MAX + 128) /* largest entry record */
#define MF_HEAD_MAX (16 + (DW_BACKUP_CHAIN_MAX + 1) * DW_BACKUP_ID_MAX + DW__PATH_MAX + 64)

/* ---- encoding helpers ------------------------------------------------------------------------ */

struct enc {
	uint8_t *p;
	size_t len, cap;
	bool overflow;
};

static void put(struct enc *e, const void *v, size_t n)
{
	if (e->len + n > e->cap) {
		e->overflow = true;
		return;
	}
	memcpy(e->p + e->len, v, n);
	e->len += n;
}

static void put_u8(struct enc *e, uint8_t v)
{
	put(e, &v, 1);
}

static void put_u16(struct enc *e, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	put(e, b, 2);
}

static void put_u32(struct enc *e, uint32_t v)
{
	uint8_t b[4];

	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put(e, b, 4);
}

static void put_u64(struct enc *e, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put(e, b, 8);
}

static void put_str16(struct enc *e, const char *s)
{
	size_t n = strlen(s);

	if (n > 0xffff) {
		e->overflow = true;
		return;
	}
	put_u16(e, (uint16_t)n);
	put(e, s, n);
}

struct dec {
	const uint8_t *p;
	size_t len, pos;
	bool bad;
};

static void get(struct dec *d, void *v, size_t n)
{
	if (d->bad || d->pos + n > d->len) {
		d->bad = true;
		memset(v, 0, n);
		return;
	}
	memcpy(v, d->p + d->pos, n);
	d->pos += n;
}

static uint8_t get_u8(struct dec *d)
{
	uint8_t v;

	get(d, &v, 1);
	return v;
}

static uint16_t get_u16(struct dec *d)
{
	uint8_t b[2];

	get(d, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

static uint32_t get_u32(struct dec *d)
{
	uint8_t b[4];
	uint32_t v = 0;

	get(d, b, 4);
	for (int i = 3; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static uint64_t get_u64(struct dec *d)
{
	uint8_t b[8];
	uint64_t v = 0;

	get(d, b, 8);
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

/* A length-prefixed string into out (cap bytes with the NUL); no embedded NULs. */
static void get_str(struct dec *d, size_t lenbytes, char *out, size_t cap)
{
	size_t n = lenbytes == 1 ? get_u8(d) : get_u16(d);

	if (d->bad || n >= cap || d->pos + n > d->len) {
		d->bad = true;
		out[0] = '\0';
		return;
	}
	memcpy(out, d->p + d->pos, n);
	out[n] = '\0';
	if (strlen(out) != n)
		d->bad = true;
	d->pos += n;
}

/* ---- writer ------------------------------------------------------------------------------------
 */

/* Write the buffer out: as is, or as one sealed frame (crypt.c) in an encrypted repository. */
static int mw_flush(struct dw__mwriter *w)
{
	int rc;

	if (w->len == 0)
		return 0;
	if (w->crypt) {
		if (!w->fbuf) {
			w->fbuf = dw_malloc(DW__FRAME_MAX + DW__FRAME_OVERHEAD);
			if (!w->fbuf)
				return w->err = -ENOMEM;
		}
		rc = dw__frame_seal(w->crypt, w->id, w->written - w->len, w->buf, (uint32_t)w->len,
				    w->fbuf);
		if (rc == 0)
			rc = dw__write_all(w->fd, w->fbuf, w->len + DW__FRAME_OVERHEAD);
		if (rc < 0)
			return w->err = rc;
		w->foff += w->len + DW__FRAME_OVERHEAD;
	} else {
		rc = dw__write_all(w->fd, w->buf, w->len);
		if (rc < 0)
			return w->err = rc;
		w->foff += w->len;
	}
	w->len = 0;
	return 0;
}

/* Append bytes to the file (hashed). */
static int mw_raw(struct dw__mwriter *w, const void *data, size_t n)
{
	if (w->err)
		return w->err;
	if (EVP_DigestUpdate(w->sha, data, n) != 1)
		return w->err = DW_EBACKEND;
	if (w->len + n > w->cap) {
		int rc = mw_flush(w);

		if (rc < 0)
			return rc;
	}
	if (n > w->cap)
		return w->err = DW_ETOOBIG;
	memcpy(w->buf + w->len, data, n);
	w->len += n;
	w->written += n;
	return 0;
}

static int mw_record(struct dw__mwriter *w, char type, const struct enc *e)
{
	uint8_t hdr[5] = { (uint8_t)type, (uint8_t)e->len, (uint8_t)(e->len >> 8),
			   (uint8_t)(e->len >> 16), (uint8_t)(e->len >> 24) };
	int rc;

	if (e->overflow)
		return w->err = DW_ETOOBIG;
	rc = mw_raw(w, hdr, sizeof(hdr));
	if (rc < 0)
		return rc;
	return mw_raw(w, e->p, e->len);
}

int dw__mw_open(struct dw__mwriter *w, int fd)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->cap = MF_BUF;
	w->buf = dw_malloc(w->cap);
	w->sha = EVP_MD_CTX_new();
	if (!w->buf || !w->sha) {
		dw__mw_close(w);
		return -ENOMEM;
	}
	if (EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1) {
		dw__mw_close(w);
		return DW_EBACKEND;
	}
	return 0;
}

int dw__mw_header(struct dw__mwriter *w, const struct dw__mheader *h)
{
	uint8_t *tmp = dw_malloc(MF_HEAD_MAX);
	struct enc e = { .p = tmp, .cap = MF_HEAD_MAX };
	int rc;

	if (!tmp)
		return -ENOMEM;
	put(&e, MF_MAGIC, 4);
	put_u32(&e, DW__REPO_VERSION);
	put_u8(&e, h->type);
	put_u32(&e, h->block_size);
	put_u64(&e, h->created_ns);
	put_u16(&e, h->chain_len);
	for (uint16_t i = 0; i < h->chain_len; i++) {
		size_t n = strlen(h->chain[i]);

		put_u8(&e, (uint8_t)n);
		put(&e, h->chain[i], n);
	}
	put_str16(&e, h->source);
	rc = mw_record(w, DW__REC_HEADER, &e);
	dw_free(tmp);
	return rc;
}

int dw__mw_entry(struct dw__mwriter *w, const struct dw__entry *en)
{
	uint8_t tmp[MF_REC_MAX];
	struct enc e = { .p = tmp, .cap = sizeof(tmp) };

	put_str16(&e, en->path);
	put_u32(&e, en->mode);
	put_u32(&e, en->uid);
	put_u32(&e, en->gid);
	put_u64(&e, (uint64_t)en->mtime_sec);
	put_u32(&e, en->mtime_nsec);
	put_u64(&e, (uint64_t)en->ctime_sec);
	put_u32(&e, en->ctime_nsec);
	put_u64(&e, en->size);
	put_u64(&e, en->ino);
	put_u64(&e, en->rdev);
	put_str16(&e,
		  en->kind == DW__REC_SYMLINK || en->kind == DW__REC_HARDLINK ? en->target : "");
	return mw_record(w, en->kind, &e);
}

int dw__mw_block(struct dw__mwriter *w, const struct dw__bref *b)
{
	uint8_t tmp[64];
	struct enc e = { .p = tmp, .cap = sizeof(tmp) };

	put_u16(&e, b->chain_idx);
	put_u8(&e, b->flags);
	put_u32(&e, b->pack);
	put_u64(&e, b->off);
	put_u32(&e, b->clen);
	put_u32(&e, b->ulen);
	put(&e, b->sha, DW__SHA_LEN);
	return mw_record(w, DW__REC_BLOCK, &e);
}

int dw__mw_file_end(struct dw__mwriter *w, const struct dw__file_end *fe)
{
	uint8_t tmp[64];
	struct enc e = { .p = tmp, .cap = sizeof(tmp) };

	put_u64(&e, fe->size);
	put(&e, fe->sha, DW__SHA_LEN);
	put_u32(&e, fe->flags);
	return mw_record(w, DW__REC_FILE_END, &e);
}

static void enc_trailer_fields(struct enc *e, const struct dw__mtrailer *t)
{
	const dw_backup_stats *s = &t->stats;

	put_u64(e, s->files);
	put_u64(e, s->dirs);
	put_u64(e, s->symlinks);
	put_u64(e, s->hardlinks);
	put_u64(e, s->specials);
	put_u64(e, s->unreadable);
	put_u64(e, s->files_changed);
	put_u64(e, s->files_unchanged);
	put_u64(e, s->bytes_total);
	put_u64(e, s->bytes_read);
	put_u64(e, s->blocks_new);
	put_u64(e, s->blocks_reused);
	put_u64(e, s->bytes_stored);
	put_u64(e, t->finished_ns);
	put_u64(e, 0);
	put_u64(e, 0);
}

static void dec_trailer_fields(struct dec *d, struct dw__mtrailer *t)
{
	dw_backup_stats *s = &t->stats;

	s->files = get_u64(d);
	s->dirs = get_u64(d);
	s->symlinks = get_u64(d);
	s->hardlinks = get_u64(d);
	s->specials = get_u64(d);
	s->unreadable = get_u64(d);
	s->files_changed = get_u64(d);
	s->files_unchanged = get_u64(d);
	s->bytes_total = get_u64(d);
	s->bytes_read = get_u64(d);
	s->blocks_new = get_u64(d);
	s->blocks_reused = get_u64(d);
	s->bytes_stored = get_u64(d);
	t->finished_ns = get_u64(d);
	(void)get_u64(d);
	(void)get_u64(d);
}

int dw__mw_finish(struct dw__mwriter *w, const struct dw__mtrailer *t)
{
	uint8_t tmp[DW__TRAILER_SIZE];
	struct enc e = { .p = tmp, .cap = sizeof(tmp) };
	uint32_t plen = DW__TRAILER_SIZE - 5;
	uint8_t sha[DW__SHA_LEN];
	unsigned int n = 0;
	int rc;

	if (w->crypt) {
		/* the trailer is a frame of its own, so that list reads only the last frame */
		rc = mw_flush(w);
		if (rc < 0)
			return rc;
	}
	put_u8(&e, DW__REC_TRAILER);
	put_u32(&e, plen);
	enc_trailer_fields(&e, t);
	rc = mw_raw(w, e.p, e.len);
	if (rc < 0)
		return rc;
	if (EVP_DigestFinal_ex(w->sha, sha, &n) != 1)
		return w->err = DW_EBACKEND;
	e.len = 0;
	put(&e, sha, DW__SHA_LEN);
	put(&e, MF_END, 8);
	/* the hash and magic are not part of what is hashed: write them around mw_raw */
	if (w->len + e.len > w->cap) {
		rc = mw_flush(w);
		if (rc < 0)
			return rc;
	}
	memcpy(w->buf + w->len, e.p, e.len);
	w->len += e.len;
	w->written += e.len;
	return mw_flush(w);
}

int dw__mw_sync(struct dw__mwriter *w, uint64_t *len, uint8_t sha[DW__SHA_LEN])
{
	EVP_MD_CTX *c;
	unsigned int n = 0;
	int rc = mw_flush(w);

	if (rc < 0)
		return rc;
	c = EVP_MD_CTX_new();
	if (!c)
		return -ENOMEM;
	rc = EVP_MD_CTX_copy_ex(c, w->sha) == 1 && EVP_DigestFinal_ex(c, sha, &n) == 1
		     ? 0
		     : DW_EBACKEND;
	EVP_MD_CTX_free(c);
	*len = w->foff;
	return rc;
}

/* Hash the frames of an encrypted manifest's first len file bytes again. */
static int mw_resume_frames(struct dw__mwriter *w, int fd, uint64_t len)
{
	uint64_t off = 0;
	int rc;

	w->fbuf = dw_malloc(DW__FRAME_MAX + DW__FRAME_OVERHEAD);
	if (!w->fbuf)
		return -ENOMEM;
	while (off < len) {
		uint32_t plen;
		uint64_t poff;

		if (len - off < DW__FRAME_OVERHEAD)
			return DW_ECORRUPT;
		rc = dw__pread_all(fd, w->fbuf, DW__FRAME_HEAD, off);
		if (rc < 0)
			return rc;
		if (dw__frame_head(w->fbuf, &plen, &poff) < 0 || poff != w->written ||
		    len - off < DW__FRAME_OVERHEAD + (uint64_t)plen || plen > w->cap)
			return DW_ECORRUPT;
		rc = dw__pread_all(fd, w->fbuf + DW__FRAME_HEAD,
				   DW__FRAME_OVERHEAD - DW__FRAME_HEAD + plen,
				   off + DW__FRAME_HEAD);
		if (rc == 0)
			rc = dw__frame_open(w->crypt, w->id, w->fbuf, w->buf);
		if (rc < 0)
			return rc;
		if (EVP_DigestUpdate(w->sha, w->buf, plen) != 1)
			return DW_EBACKEND;
		w->written += plen;
		off += DW__FRAME_OVERHEAD + plen;
	}
	return 0;
}

int dw__mw_resume(struct dw__mwriter *w, int fd, uint64_t len, const uint8_t sha[DW__SHA_LEN],
		  const struct dw__crypt *crypt, const char *id)
{
	uint8_t got[DW__SHA_LEN];
	struct stat st;
	uint64_t off = 0;
	int rc;

	rc = dw__mw_open(w, fd);
	if (rc < 0)
		return rc;
	w->crypt = crypt;
	snprintf(w->id, sizeof(w->id), "%s", id);
	if (fstat(fd, &st) < 0)
		return w->err = -errno;
	if ((uint64_t)st.st_size < len)
		return w->err = DW_ECORRUPT;
	if (ftruncate(fd, (off_t)len) < 0)
		return w->err = -errno;
	if (crypt) {
		rc = mw_resume_frames(w, fd, len);
		if (rc < 0)
			return w->err = rc;
		off = len;
	}
	while (off < len) {
		size_t n = len - off < w->cap ? (size_t)(len - off) : w->cap;

		rc = dw__pread_all(fd, w->buf, n, off);
		if (rc < 0)
			return w->err = rc;
		if (EVP_DigestUpdate(w->sha, w->buf, n) != 1)
			return w->err = DW_EBACKEND;
		off += n;
	}
	if (!crypt)
		w->written = len;
	w->foff = len;
	rc = dw__mw_sync(w, &off, got);
	if (rc < 0)
		return w->err = rc;
	if (memcmp(got, sha, DW__SHA_LEN) != 0)
		return w->err = DW_ECORRUPT;
	if (lseek(fd, (off_t)len, SEEK_SET) < 0)
		return w->err = -errno;
	return 0;
}

void dw__mw_close(struct dw__mwriter *w)
{
	dw_free(w->buf);
	w->buf = NULL;
	dw_free(w->fbuf);
	w->fbuf = NULL;
	if (w->sha)
		EVP_MD_CTX_free(w->sha);
	w->sha = NULL;
}

/* ---- reader ------------------------------------------------------------------------------------
 */

void dw__mheader_free(struct dw__mheader *h)
{
	dw_free(h->chain);
	h->chain = NULL;
}

static int parse_header(const uint8_t *p, size_t len, struct dw__mheader *h)
{
	struct dec d = { .p = p, .len = len };
	char magic[4];
	uint32_t ver;

	memset(h, 0, sizeof(*h));
	get(&d, magic, 4);
	ver = get_u32(&d);
	if (d.bad || memcmp(magic, MF_MAGIC, 4) != 0)
		return DW_ECORRUPT;
	if (ver != DW__REPO_VERSION)
		return DW_EVERSION;
	h->type = get_u8(&d);
	h->block_size = get_u32(&d);
	h->created_ns = get_u64(&d);
	h->chain_len = get_u16(&d);
	if (d.bad || h->chain_len == 0 || h->chain_len > DW_BACKUP_CHAIN_MAX + 1)
		return DW_ECORRUPT;
	if (h->type != DW_BACKUP_FULL && h->type != DW_BACKUP_INCREMENTAL)
		return DW_ECORRUPT;
	if ((h->type == DW_BACKUP_FULL) != (h->chain_len == 1))
		return DW_ECORRUPT;
	if (h->block_size < DW_BACKUP_BLOCK_MIN || h->block_size > DW_BACKUP_BLOCK_MAX)
		return DW_ECORRUPT;
	h->chain = dw_calloc(h->chain_len, DW_BACKUP_ID_MAX);
	if (!h->chain)
		return -ENOMEM;
	for (uint16_t i = 0; i < h->chain_len; i++) {
		get_str(&d, 1, h->chain[i], DW_BACKUP_ID_MAX);
		if (d.bad || !dw__id_valid(h->chain[i]))
			goto bad;
	}
	get_str(&d, 2, h->source, sizeof(h->source));
	if (d.bad || d.pos != d.len)
		goto bad;
	return 0;
bad:
	dw__mheader_free(h);
	return DW_ECORRUPT;
}

/* Read exactly n bytes, or 0 at the end of the file (DW_ECORRUPT for a partial read). */
static int read_exact(int fd, uint8_t *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return got == 0 ? 0 : DW_ECORRUPT;
		got += (size_t)r;
	}
	return 1;
}

/* Up to cap bytes of the manifest's records: the file's bytes, or its frames opened. */
static ssize_t mr_src(struct dw__mreader *m, uint8_t *dst, size_t cap)
{
	size_t n;

	if (!m->crypt) {
		for (;;) {
			ssize_t r = read(m->fd, dst, cap);

			if (r < 0 && errno == EINTR)
				continue;
			return r < 0 ? -errno : r;
		}
	}
	if (m->fpos == m->flen) {
		uint32_t plen;
		uint64_t poff;
		int rc;

		if (!m->fbuf) {
			m->fbuf = dw_malloc(DW__FRAME_MAX + DW__FRAME_OVERHEAD);
			m->fplain = dw_malloc(DW__FRAME_MAX);
			if (!m->fbuf || !m->fplain)
				return -ENOMEM;
		}
		rc = read_exact(m->fd, m->fbuf, DW__FRAME_HEAD);
		if (rc <= 0)
			return rc;
		if (dw__frame_head(m->fbuf, &plen, &poff) < 0 || poff != m->pnext)
			return DW_ECORRUPT;
		rc = read_exact(m->fd, m->fbuf + DW__FRAME_HEAD,
				DW__FRAME_OVERHEAD - DW__FRAME_HEAD + (size_t)plen);
		if (rc == 0)
			return DW_ECORRUPT;
		if (rc < 0)
			return rc;
		rc = dw__frame_open(m->crypt, m->id, m->fbuf, m->fplain);
		if (rc < 0)
			return rc;
		m->fpos = 0;
		m->flen = plen;
		m->pnext += plen;
	}
	n = m->flen - m->fpos < cap ? m->flen - m->fpos : cap;
	memcpy(dst, m->fplain + m->fpos, n);
	m->fpos += n;
	return (ssize_t)n;
}

/* Make at least n bytes available at m->buf + m->pos; DW_ECORRUPT at a premature end. */
static int mr_fill(struct dw__mreader *m, size_t n)
{
	if (m->len - m->pos >= n)
		return 0;
	if (n > m->cap)
		return DW_ECORRUPT;
	memmove(m->buf, m->buf + m->pos, m->len - m->pos);
	m->len -= m->pos;
	m->pos = 0;
	while (m->len < n) {
		ssize_t r = mr_src(m, m->buf + m->len, m->cap - m->len);

		if (r < 0)
			return (int)r;
		if (r == 0)
			return DW_ECORRUPT;
		m->len += (size_t)r;
	}
	return 0;
}

/* Consume one record: type and payload pointer (valid until the next call). */
static int mr_record(struct dw__mreader *m, uint8_t *type, const uint8_t **payload, uint32_t *plen)
{
	int rc = mr_fill(m, 5);
	const uint8_t *p;
	uint32_t n;

	if (rc < 0)
		return rc;
	p = m->buf + m->pos;
	n = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 | (uint32_t)p[4] << 24;
	*type = p[0];
	if (n > MF_HEAD_MAX)
		return DW_ECORRUPT;
	if (*type == DW__REC_TRAILER) {
		/* hashed up to the stored hash; the hash and the magic are not */
		if (n != DW__TRAILER_SIZE - 5)
			return DW_ECORRUPT;
		rc = mr_fill(m, DW__TRAILER_SIZE);
		if (rc < 0)
			return rc;
		p = m->buf + m->pos;
		if (EVP_DigestUpdate(m->sha, p, DW__TRAILER_SIZE - DW__SHA_LEN - 8) != 1)
			return DW_EBACKEND;
	} else {
		rc = mr_fill(m, 5 + (size_t)n);
		if (rc < 0)
			return rc;
		p = m->buf + m->pos;
		if (EVP_DigestUpdate(m->sha, p, 5 + (size_t)n) != 1)
			return DW_EBACKEND;
	}
	*payload = p + 5;
	*plen = n;
	m->pos += 5 + (size_t)n;
	m->consumed += 5 + (uint64_t)n;
	return 0;
}

int dw__mr_open(struct dw__mreader *m, int fd)
{
	return dw__mr_open2(m, fd, NULL, "");
}

int dw__mr_open2(struct dw__mreader *m, int fd, const struct dw__crypt *crypt, const char *id)
{
	const uint8_t *p;
	uint32_t n;
	uint8_t type;
	struct stat st;
	int rc;

	memset(m, 0, sizeof(*m));
	m->fd = fd;
	m->crypt = crypt;
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->cap = MF_HEAD_MAX > MF_BUF ? MF_HEAD_MAX : MF_BUF;
	m->buf = dw_malloc(m->cap);
	m->sha = EVP_MD_CTX_new();
	if (!m->buf || !m->sha) {
		rc = -ENOMEM;
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	m->file_size = (uint64_t)st.st_size;
	if (EVP_DigestInit_ex(m->sha, EVP_sha256(), NULL) != 1) {
		rc = DW_EBACKEND;
		goto fail;
	}
	rc = mr_record(m, &type, &p, &n);
	if (rc < 0)
		goto fail;
	if (type != DW__REC_HEADER) {
		rc = DW_ECORRUPT;
		goto fail;
	}
	rc = parse_header(p, n, &m->h);
	if (rc < 0)
		goto fail;
	return 0;
fail:
	dw__mr_close(m);
	return rc;
}

static int parse_entry(char type, const uint8_t *p, uint32_t n, struct dw__entry *e)
{
	struct dec d = { .p = p, .len = n };

	e->kind = type;
	get_str(&d, 2, e->path, sizeof(e->path));
	e->mode = get_u32(&d);
	e->uid = get_u32(&d);
	e->gid = get_u32(&d);
	e->mtime_sec = (int64_t)get_u64(&d);
	e->mtime_nsec = get_u32(&d);
	e->ctime_sec = (int64_t)get_u64(&d);
	e->ctime_nsec = get_u32(&d);
	e->size = get_u64(&d);
	e->ino = get_u64(&d);
	e->rdev = get_u64(&d);
	get_str(&d, 2, e->target, sizeof(e->target));
	if (d.bad || d.pos != d.len || e->path[0] == '\0')
		return DW_ECORRUPT;
	if (e->mtime_nsec >= 1000000000u || e->ctime_nsec >= 1000000000u)
		return DW_ECORRUPT;
	return 0;
}

int dw__mr_next(struct dw__mreader *m, struct dw__entry *e, struct dw__bref *b,
		struct dw__file_end *fe)
{
	const uint8_t *p;
	uint32_t n;
	uint8_t type;
	struct dec d;
	int rc;

	if (m->eof)
		return 0;
	rc = mr_record(m, &type, &p, &n);
	if (rc < 0)
		return rc;
	d = (struct dec){ .p = p, .len = n };
	switch (type) {
	case DW__REC_DIR:
	case DW__REC_FILE:
	case DW__REC_SYMLINK:
	case DW__REC_HARDLINK:
	case DW__REC_SPECIAL:
		rc = parse_entry((char)type, p, n, e);
		return rc < 0 ? rc : type;
	case DW__REC_BLOCK:
		b->chain_idx = get_u16(&d);
		b->flags = get_u8(&d);
		b->pack = get_u32(&d);
		b->off = get_u64(&d);
		b->clen = get_u32(&d);
		b->ulen = get_u32(&d);
		get(&d, b->sha, DW__SHA_LEN);
		if (d.bad || d.pos != d.len || b->chain_idx >= m->h.chain_len ||
		    b->ulen > m->h.block_size || b->clen == 0 ||
		    b->clen > m->h.block_size + (m->h.block_size >> 7) + 1024)
			return DW_ECORRUPT;
		return type;
	case DW__REC_FILE_END:
		fe->size = get_u64(&d);
		get(&d, fe->sha, DW__SHA_LEN);
		fe->flags = get_u32(&d);
		if (d.bad || d.pos != d.len)
			return DW_ECORRUPT;
		return type;
	case DW__REC_TRAILER: {
		uint8_t want[DW__SHA_LEN];
		const uint8_t *stored = p + (DW__TRAILER_SIZE - 5 - DW__SHA_LEN - 8);
		unsigned int hl = 0;

		dec_trailer_fields(&d, &m->t);
		if (EVP_DigestFinal_ex(m->sha, want, &hl) != 1)
			return DW_EBACKEND;
		if (memcmp(want, stored, DW__SHA_LEN) != 0 ||
		    memcmp(stored + DW__SHA_LEN, MF_END, 8) != 0)
			return DW_ECORRUPT;
		if (m->crypt) {
			uint8_t x;

			if (m->pos != m->len || mr_src(m, &x, 1) != 0)
				return DW_ECORRUPT; /* records or frames after the trailer */
		} else if (m->consumed != m->file_size) {
			return DW_ECORRUPT; /* bytes after the trailer */
		}
		m->have_trailer = true;
		m->eof = true;
		return 0;
	}
	default:
		return DW_ECORRUPT;
	}
}

void dw__mr_close(struct dw__mreader *m)
{
	dw_free(m->buf);
	m->buf = NULL;
	dw_free(m->fbuf);
	dw_free(m->fplain);
	m->fbuf = m->fplain = NULL;
	if (m->sha)
		EVP_MD_CTX_free(m->sha);
	m->sha = NULL;
	dw__mheader_free(&m->h);
}

/* Open the frame of an encrypted manifest at file offset off into out (cap bytes). */
static int summary_frame(int fd, const struct dw__crypt *crypt, const char *id, uint64_t off,
			 uint64_t fsize, uint8_t *out, size_t cap, uint32_t *plen)
{
	uint8_t head[DW__FRAME_HEAD], *f;
	uint64_t poff;
	int rc;

	if (fsize < off + DW__FRAME_OVERHEAD)
		return DW_ECORRUPT;
	rc = dw__pread_all(fd, head, sizeof(head), off);
	if (rc < 0)
		return rc;
	if (dw__frame_head(head, plen, &poff) < 0 || *plen > cap ||
	    fsize < off + DW__FRAME_OVERHEAD + *plen || (off == 0 && poff != 0))
		return DW_ECORRUPT;
	f = dw_malloc(DW__FRAME_OVERHEAD + *plen);
	if (!f)
		return -ENOMEM;
	rc = dw__pread_all(fd, f, DW__FRAME_OVERHEAD + *plen, off);
	if (rc == 0)
		rc = dw__frame_open(crypt, id, f, out);
	dw_free(f);
	return rc;
}

/* dw__manifest_summary for an encrypted manifest: its first frame and its last. */
static int summary_sealed(int fd, const struct dw__crypt *crypt, const char *id,
			  struct dw__mheader *h, struct dw__mtrailer *t)
{
	uint8_t *p = dw_malloc(DW__FRAME_MAX);
	struct stat st;
	uint32_t plen, n;
	uint64_t last = DW__FRAME_OVERHEAD + DW__TRAILER_SIZE;
	struct dec d;
	int rc;

	memset(h, 0, sizeof(*h));
	if (!p)
		return -ENOMEM;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	rc = summary_frame(fd, crypt, id, 0, (uint64_t)st.st_size, p, DW__FRAME_MAX, &plen);
	if (rc < 0)
		goto out;
	n = plen >= 5 ? (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
				(uint32_t)p[4] << 24
		      : 0;
	if (plen < 5 || p[0] != DW__REC_HEADER || n > plen - 5) {
		rc = DW_ECORRUPT;
		goto out;
	}
	rc = parse_header(p + 5, n, h);
	if (rc < 0)
		goto out;
	if ((uint64_t)st.st_size < last) {
		rc = DW_ECORRUPT;
		goto out;
	}
	rc = summary_frame(fd, crypt, id, (uint64_t)st.st_size - last, (uint64_t)st.st_size, p,
			   DW__TRAILER_SIZE, &plen);
	if (rc == 0 && (plen != DW__TRAILER_SIZE || p[0] != DW__REC_TRAILER ||
			memcmp(p + DW__TRAILER_SIZE - 8, MF_END, 8) != 0))
		rc = DW_ECORRUPT;
	if (rc < 0)
		goto out;
	d = (struct dec){ .p = p + 5, .len = DW__TRAILER_SIZE - 5 };
	dec_trailer_fields(&d, t);
out:
	if (rc < 0)
		dw__mheader_free(h);
	dw_free(p);
	return rc;
}

int dw__manifest_summary2(int fd, const struct dw__crypt *crypt, const char *id,
			  struct dw__mheader *h, struct dw__mtrailer *t)
{
	if (crypt)
		return summary_sealed(fd, crypt, id, h, t);
	return dw__manifest_summary(fd, h, t);
}

int dw__manifest_summary(int fd, struct dw__mheader *h, struct dw__mtrailer *t)
{
	uint8_t tail[DW__TRAILER_SIZE];
	uint8_t hb[5];
	uint8_t *head = NULL;
	struct stat st;
	uint32_t n;
	struct dec d;
	int rc;

	memset(h, 0, sizeof(*h));
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < 5 + DW__TRAILER_SIZE)
		return DW_ECORRUPT;
	rc = dw__pread_all(fd, hb, 5, 0);
	if (rc < 0)
		return rc;
	n = (uint32_t)hb[1] | (uint32_t)hb[2] << 8 | (uint32_t)hb[3] << 16 | (uint32_t)hb[4] << 24;
	if (hb[0] != DW__REC_HEADER || n > MF_HEAD_MAX ||
	    5 + (uint64_t)n + DW__TRAILER_SIZE > (uint64_t)st.st_size)
		return DW_ECORRUPT;
	head = dw_malloc(n ? n : 1);
	if (!head)
		return -ENOMEM;
	rc = dw__pread_all(fd, head, n, 5);
	if (rc < 0)
		goto out;
	rc = parse_header(head, n, h);
	if (rc < 0)
		goto out;
	rc = dw__pread_all(fd, tail, sizeof(tail), (uint64_t)st.st_size - DW__TRAILER_SIZE);
	if (rc < 0)
		goto out;
	if (tail[0] != DW__REC_TRAILER || memcmp(tail + DW__TRAILER_SIZE - 8, MF_END, 8) != 0) {
		rc = DW_ECORRUPT;
		goto out;
	}
	d = (struct dec){ .p = tail + 5, .len = DW__TRAILER_SIZE - 5 };
	dec_trailer_fields(&d, t);
	rc = 0;
out:
	if (rc < 0)
		dw__mheader_free(h);
	dw_free(head);
	return rc;
}
