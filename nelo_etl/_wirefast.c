/* nelo_etl._wirefast: one compiled pass over a chunk of batch-file bytes.
 *
 * It reads each line's envelope, its Body and the body's `items` text (the contract:
 * ../shared/contract/sqs-messages.md, implemented in full by nelo_etl/wire.py) and writes the
 * accepted lines' rows straight into Arrow buffers (the columns of staging.PARSED_SCHEMA).
 *
 * It only ever accepts or declines a line, never rejects one: whatever it is not sure of (bad or
 * odd JSON, duplicate keys, extra body fields, a lone surrogate, non-ASCII where Python's
 * Unicode-aware strip() or regexes would matter, money written as text it does not know, an
 * exponent in a whole number, any value Python would reject) is handed back as a line to the
 * contract parser, which gives it its rows or its reason code. So reason codes have one source,
 * and tests hold this module's rows equal to wire.py's on every line it accepts.
 *
 * The parse runs without the GIL (plain C and OpenSSL's SHA256, looked up in the libcrypto that
 * Python's hashlib already loaded), so Python can parse two chunks on two cores.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef unsigned char *(*sha256_fn)(const unsigned char *, size_t, unsigned char *);
static sha256_fn SHA256_f = NULL;

/* ---------------------------------------------------------------------------------------- */
/* growable buffers */

typedef struct { char *p; size_t n, cap; } Buf;

static int buf_grow(Buf *b, size_t extra) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_reserve(Buf *b, size_t extra) {
    return b->n + extra <= b->cap ? 0 : buf_grow(b, extra);
}

static inline int buf_put(Buf *b, const void *s, size_t n) {
    if (buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static void buf_free(Buf *b) { free(b->p); b->p = NULL; b->n = b->cap = 0; }

/* Extra body fields as the contract parser stores them: json.dumps(extra, ensure_ascii=False). */
typedef struct { Buf json, seen, tmp; int count; } Extras;

/* ---------------------------------------------------------------------------------------- */
/* columns: each is a set of Bufs; a line that is declined rolls every Buf back to its mark */

enum Kind { K_I32, K_I64, K_I8, K_STR, K_DEC, K_LIST, K_ARMS, K_MAP };

#define MAXBUF 12
typedef struct {
    const char *name;
    int kind;
    Buf b[MAXBUF];   /* [0] validity bytes (one per row), then kind-specific */
} Col;

/* buffer slots by kind:
 *   I32/I64/I8/DEC: b[1] values
 *   STR:  b[1] int32 offsets (without the leading 0), b[2] data
 *   LIST: b[1] list offsets (end of each row, int32), b[2] child offsets, b[3] child data
 *   ARMS: b[1] list offsets, then (offsets, data) for code, experiment_id, variant: b[2..7]
 *   MAP:  b[1] list offsets, b[2] key offsets, b[3] key data, b[4] value validity,
 *         b[5] value offsets, b[6] value data
 */

enum {
    C_LINE, C_MSG, C_SENT, C_COUNT, C_EVID, C_TS, C_USER, C_NAME, C_PLAT, C_REPLAY, C_ITEMCOUNT,
    C_ITEMINDEX,
    C_T0, /* 19 text keys */
    C_M0 = C_T0 + 19, /* 6 money keys, sorted */
    C_QTY = C_M0 + 6, C_STOCK, C_CODES, C_CAMPAIGNS, C_ARMS, C_DISCOUNT, C_TOTAL, C_INST,
    C_INSTPRICE, C_EXTRA, C_EXTRAFIELDS, NCOLS
};

static const char *TEXT_NAMES[19] = {
    "item_id", "item_name", "item_brand", "item_variant", "item_category", "item_category2",
    "item_category3", "item_category4", "item_category5", "coupon", "affiliation", "location_id",
    "item_list_id", "item_list_name", "item_list_index", "promotion_id", "promotion_name",
    "creative_name", "creative_slot"};
static const char *MONEY_NAMES[6] = {"item_refund", "item_refund_in_usd", "item_revenue",
                                     "item_revenue_in_usd", "price", "price_in_usd"};

/* the item keys of the Java toString, and where each goes */
#define NKEYS 27
static const char *ITEM_KEYS[NKEYS] = {
    "item_id", "item_name", "item_brand", "item_variant", "item_category", "item_category2",
    "item_category3", "item_category4", "item_category5", "price_in_usd", "price", "quantity",
    "item_revenue_in_usd", "item_revenue", "item_refund_in_usd", "item_refund", "coupon",
    "affiliation", "location_id", "item_list_id", "item_list_name", "item_list_index",
    "promotion_id", "promotion_name", "creative_name", "creative_slot", "item_params"};
/* ITEM_KEYS index -> text column (0..18), money column (100+0..5), quantity 200, params 300 */
static int KEY_DEST[NKEYS];

typedef struct {
    Col cols[NCOLS];
    size_t rows;
    int oom;
    int full;        /* a string column would pass 2^31 bytes (Arrow's int32 offsets): decline the line */
    /* scratch */
    Buf msg, strs, key, identity;
    Extras extras;
    /* declined lines: (line number, start offset, end offset) as int64 triples */
    Buf declined;
    const char *pattern;
    size_t pattern_len;
} Parser;

static void col_init(Col *c, const char *name, int kind) {
    memset(c, 0, sizeof *c);
    c->name = name;
    c->kind = kind;
}

static void parser_init(Parser *P) {
    memset(P, 0, sizeof *P);
    col_init(&P->cols[C_LINE], "line_number", K_I32);
    col_init(&P->cols[C_MSG], "message_id", K_STR);
    col_init(&P->cols[C_SENT], "sent_timestamp_ms", K_I64);
    col_init(&P->cols[C_COUNT], "receive_count", K_I32);
    col_init(&P->cols[C_EVID], "event_id", K_STR);
    col_init(&P->cols[C_TS], "event_timestamp_us", K_I64);
    col_init(&P->cols[C_USER], "user_id", K_STR);
    col_init(&P->cols[C_NAME], "event_name", K_STR);
    col_init(&P->cols[C_PLAT], "platform", K_STR);
    col_init(&P->cols[C_REPLAY], "replay_timestamp", K_STR);
    col_init(&P->cols[C_ITEMCOUNT], "item_count", K_I32);
    col_init(&P->cols[C_ITEMINDEX], "item_index", K_I32);
    for (int i = 0; i < 19; i++) col_init(&P->cols[C_T0 + i], TEXT_NAMES[i], K_STR);
    for (int i = 0; i < 6; i++) col_init(&P->cols[C_M0 + i], MONEY_NAMES[i], K_DEC);
    col_init(&P->cols[C_QTY], "quantity", K_I64);
    col_init(&P->cols[C_STOCK], "is_in_stock", K_I8);
    col_init(&P->cols[C_CODES], "discount_codes", K_LIST);
    col_init(&P->cols[C_CAMPAIGNS], "campaign_codes", K_LIST);
    col_init(&P->cols[C_ARMS], "experiment_arms", K_ARMS);
    col_init(&P->cols[C_DISCOUNT], "discount_value", K_DEC);
    col_init(&P->cols[C_TOTAL], "total_price", K_DEC);
    col_init(&P->cols[C_INST], "installments", K_I64);
    col_init(&P->cols[C_INSTPRICE], "installment_price", K_DEC);
    col_init(&P->cols[C_EXTRA], "item_params_extra", K_MAP);
    col_init(&P->cols[C_EXTRAFIELDS], "extra_fields", K_STR);
}

static void parser_free(Parser *P) {
    for (int i = 0; i < NCOLS; i++)
        for (int j = 0; j < MAXBUF; j++) buf_free(&P->cols[i].b[j]);
    buf_free(&P->msg); buf_free(&P->strs); buf_free(&P->key);
    buf_free(&P->identity); buf_free(&P->declined);
    buf_free(&P->extras.json); buf_free(&P->extras.seen); buf_free(&P->extras.tmp);
}

typedef struct { size_t n[NCOLS][MAXBUF]; size_t rows; } Mark;

static void mark(Parser *P, Mark *m) {
    for (int i = 0; i < NCOLS; i++)
        for (int j = 0; j < MAXBUF; j++) m->n[i][j] = P->cols[i].b[j].n;
    m->rows = P->rows;
}

static void rollback(Parser *P, const Mark *m) {
    for (int i = 0; i < NCOLS; i++)
        for (int j = 0; j < MAXBUF; j++) P->cols[i].b[j].n = m->n[i][j];
    P->rows = m->rows;
}

/* cell writers; each returns nonzero on out-of-memory */
#define PUT(b, v) do { __typeof__(v) _v = (v); if (buf_put((b), &_v, sizeof _v)) P->oom = 1; } while (0)

static void put_valid(Parser *P, Col *c, int valid) { char v = (char)valid; if (buf_put(&c->b[0], &v, 1)) P->oom = 1; }

static void put_i32(Parser *P, int ci, int valid, int32_t v) {
    Col *c = &P->cols[ci]; put_valid(P, c, valid); PUT(&c->b[1], (int32_t)(valid ? v : 0));
}
static void put_i64(Parser *P, int ci, int valid, int64_t v) {
    Col *c = &P->cols[ci]; put_valid(P, c, valid); PUT(&c->b[1], valid ? v : (int64_t)0);
}
static void put_i8(Parser *P, int ci, int valid, int8_t v) {
    Col *c = &P->cols[ci]; put_valid(P, c, valid); PUT(&c->b[1], (int8_t)(valid ? v : 0));
}
static void put_dec(Parser *P, int ci, int valid, int64_t v) {
    Col *c = &P->cols[ci]; put_valid(P, c, valid);
    PUT(&c->b[1], valid ? v : (int64_t)0);     /* Arrow decimal64: the value in millionths */
}
static void str_append(Parser *P, Buf *offsets, Buf *data, const char *s, size_t n) {
    if (data->n + n > (size_t)INT32_MAX) { P->full = 1; return; }
    if (buf_put(data, s, n)) P->oom = 1;
    PUT(offsets, (int32_t)data->n);
}
static void put_str(Parser *P, int ci, const char *s, size_t n) {   /* s NULL: null */
    Col *c = &P->cols[ci]; put_valid(P, c, s != NULL); str_append(P, &c->b[1], &c->b[2], s, s ? n : 0);
}

/* ---------------------------------------------------------------------------------------- */
/* JSON, the subset of Python's json module this parser is sure of */

static inline const char *ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static inline int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Length of one valid UTF-8 sequence at p (no surrogates, no overlongs, at most U+10FFFF), or 0. */
static inline int utf8_len(const unsigned char *p, const unsigned char *e) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (e - p >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (e - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;
        if (c == 0xED && p[1] >= 0xA0) return 0;   /* surrogates */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (e - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;
        if (c == 0xF4 && p[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

static int put_utf8(Buf *out, unsigned cp) {
    char s[4]; int n;
    if (cp < 0x80) { s[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { s[0] = (char)(0xC0 | (cp >> 6)); s[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) { s[0] = (char)(0xE0 | (cp >> 12)); s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                             s[2] = (char)(0x80 | (cp & 0x3F)); n = 3; }
    else { s[0] = (char)(0xF0 | (cp >> 18)); s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
           s[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); s[3] = (char)(0x80 | (cp & 0x3F)); n = 4; }
    return buf_put(out, s, n);
}

/* A JSON string at p (which points at the opening quote), decoded and appended to out (when out
 * is not NULL). Returns the position after the closing quote, or NULL to decline (invalid
 * UTF-8, a control character, a bad escape, a lone surrogate, \u0000, or out of memory). */
static const char *json_string(const char *p, const char *e, Buf *out) {
    if (p >= e || *p != '"') return NULL;
    p++;
    for (;;) {
        const char *run = p;
#ifdef __SSE2__
        /* 16 bytes at a time: stop at a quote, a backslash, a control byte or a non-ASCII byte
         * (a signed compare below 0x20 catches both of the last two) */
        {
            const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'), low = _mm_set1_epi8(0x20);
            while (e - p >= 16) {
                __m128i x = _mm_loadu_si128((const __m128i *)p);
                __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, slash)),
                                           _mm_cmplt_epi8(x, low));
                int m = _mm_movemask_epi8(hit);
                if (m) { p += __builtin_ctz((unsigned)m); goto scanned; }
                p += 16;
            }
        }
#endif
        while (p < e && (unsigned char)*p >= 0x20 && *p != '"' && *p != '\\' && (unsigned char)*p < 0x80) p++;
#ifdef __SSE2__
    scanned:
#endif
        if (out && p > run && buf_put(out, run, (size_t)(p - run))) return NULL;
        if (p >= e) return NULL;
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) return NULL;
        if (c >= 0x80) {
            int n = utf8_len((const unsigned char *)p, (const unsigned char *)e);
            if (!n) return NULL;
            if (out && buf_put(out, p, (size_t)n)) return NULL;
            p += n;
            continue;
        }
        /* backslash */
        if (e - p < 2) return NULL;
        char x = p[1], ch;
        p += 2;
        switch (x) {
            case '"': ch = '"'; break;
            case '\\': ch = '\\'; break;
            case '/': ch = '/'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case 'u': {
                if (e - p < 4) return NULL;
                int h0 = hexval(p[0]), h1 = hexval(p[1]), h2 = hexval(p[2]), h3 = hexval(p[3]);
                if ((h0 | h1 | h2 | h3) < 0) return NULL;
                unsigned cp = (unsigned)((h0 << 12) | (h1 << 8) | (h2 << 4) | h3);
                p += 4;
                if (cp == 0) return NULL;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return NULL;           /* lone low surrogate */
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (e - p < 6 || p[0] != '\\' || p[1] != 'u') return NULL;
                    int g0 = hexval(p[2]), g1 = hexval(p[3]), g2 = hexval(p[4]), g3 = hexval(p[5]);
                    if ((g0 | g1 | g2 | g3) < 0) return NULL;
                    unsigned lo = (unsigned)((g0 << 12) | (g1 << 8) | (g2 << 4) | g3);
                    if (lo < 0xDC00 || lo > 0xDFFF) return NULL;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
                if (out && put_utf8(out, cp)) return NULL;
                continue;
            }
            default: return NULL;
        }
        if (out && buf_put(out, &ch, 1)) return NULL;
    }
}

/* A JSON number as Python reads it; *is_int says whether it has neither fraction nor exponent. */
static const char *json_number(const char *p, const char *e, int *is_int) {
    const char *s = p;
    if (p < e && *p == '-') p++;
    if (p >= e) return NULL;
    const char *digits = p;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') { while (p < e && *p >= '0' && *p <= '9') p++; }
    else return NULL;
    *is_int = 1;
    /* a JSON integer longer than this raises ValueError in Python's json (int_max_str_digits,
     * 4300 by default, never below 640): leave the line to Python */
    if (p - digits > 640 && !(p < e && (*p == '.' || *p == 'e' || *p == 'E'))) return NULL;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !(*p >= '0' && *p <= '9')) return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
        *is_int = 0;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !(*p >= '0' && *p <= '9')) return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
        *is_int = 0;
    }
    return p > s ? p : NULL;
}

/* Any JSON value (validated, not kept). */
static const char *json_skip(const char *p, const char *e, int depth) {
    if (depth > 64) return NULL;
    p = ws(p, e);
    if (p >= e) return NULL;
    switch (*p) {
        case '"': return json_string(p, e, NULL);
        case '{': case '[': {
            char close = *p == '{' ? '}' : ']';
            int obj = *p == '{';
            p = ws(p + 1, e);
            if (p < e && *p == close) return p + 1;
            for (;;) {
                if (obj) {
                    p = json_string(ws(p, e), e, NULL);
                    if (!p) return NULL;
                    p = ws(p, e);
                    if (p >= e || *p != ':') return NULL;
                    p++;
                }
                p = json_skip(p, e, depth + 1);
                if (!p) return NULL;
                p = ws(p, e);
                if (p >= e) return NULL;
                if (*p == ',') { p++; continue; }
                if (*p == close) return p + 1;
                return NULL;
            }
        }
        case 't': return (e - p >= 4 && !memcmp(p, "true", 4)) ? p + 4 : NULL;
        case 'f': return (e - p >= 5 && !memcmp(p, "false", 5)) ? p + 5 : NULL;
        case 'n': return (e - p >= 4 && !memcmp(p, "null", 4)) ? p + 4 : NULL;
        default: { int i; return json_number(p, e, &i); }
    }
}

/* A JSON value kept as a typed slot: strings decoded into `out` (offset and length). */
enum { V_ABSENT, V_NULL, V_STR, V_INT, V_OTHER, V_OBJECT };
typedef struct { int type; size_t off, len; const char *raw, *raw_end; } Val;

static const char *json_value(const char *p, const char *e, Buf *out, Val *v) {
    p = ws(p, e);
    if (p >= e) return NULL;
    v->raw = p;
    if (*p == '"') {
        v->type = V_STR;
        v->off = out->n;
        p = json_string(p, e, out);
        if (!p) return NULL;
        v->len = out->n - v->off;
    } else if (*p == 'n') {
        v->type = V_NULL;
        p = json_skip(p, e, 0);
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
        int is_int;
        p = json_number(p, e, &is_int);
        v->type = is_int ? V_INT : V_OTHER;
    } else {
        v->type = *p == '{' ? V_OBJECT : V_OTHER;
        p = json_skip(p, e, 0);
    }
    v->raw_end = p;
    return p;
}

/* Walks an object's members: calls on_key(key, keylen) to learn which slot (-1: skip it,
 * -2: decline the line, -3: an extra body field, rendered into the Extras given as ctx). */
typedef int (*slot_fn)(const char *k, size_t n, void *ctx);


static int dump_str(Buf *out, const char *s, size_t n) {   /* json.dumps of a str, ensure_ascii=False */
    if (buf_put(out, "\"", 1)) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        switch (c) {
            case '"': esc = "\\\""; break;
            case '\\': esc = "\\\\"; break;
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            default:
                if (c < 0x20) { snprintf(u, sizeof u, "\\u%04x", c); esc = u; }
        }
        if (esc ? buf_put(out, esc, strlen(esc)) : buf_put(out, &s[i], 1)) return -1;
    }
    return buf_put(out, "\"", 1);
}

/* One extra member: a string, a whole number or a literal (what Python writes back the same);
 * anything else (a float, an object, an array) or a repeated key declines the line. */
static const char *extra_member(Extras *x, const char *k, size_t kn, const char *p, const char *e) {
    for (size_t at = 0; at < x->seen.n;) {
        uint32_t len;
        memcpy(&len, x->seen.p + at, 4);
        if (len == kn && !memcmp(x->seen.p + at + 4, k, kn)) return NULL;
        at += 4 + len;
    }
    uint32_t kl = (uint32_t)kn;
    if (buf_put(&x->seen, &kl, 4) || buf_put(&x->seen, k, kn)) return NULL;
    int first = x->count++ == 0;
    if (buf_put(&x->json, first ? "{" : ", ", first ? 1 : 2) || dump_str(&x->json, k, kn) ||
        buf_put(&x->json, ": ", 2)) return NULL;
    p = ws(p, e);
    if (p >= e) return NULL;
    const char *q;
    if (*p == '"') {
        x->tmp.n = 0;
        q = json_string(p, e, &x->tmp);
        if (!q || dump_str(&x->json, x->tmp.p ? x->tmp.p : "", x->tmp.n)) return NULL;
        return q;
    }
    if (*p == 't' || *p == 'f' || *p == 'n') {
        q = json_skip(p, e, 0);
    } else {
        int is_int;
        q = json_number(p, e, &is_int);
        /* Python reads "-0" as 0, and more than 4300 digits not at all */
        if (!q || !is_int || q - p > 18 || (q - p == 2 && p[0] == '-' && p[1] == '0')) return NULL;
    }
    if (!q || buf_put(&x->json, p, (size_t)(q - p))) return NULL;
    return q;
}

static const char *json_object(const char *p, const char *e, Buf *keys, Buf *out, Val *slots,
                               slot_fn which, void *ctx) {
    p = ws(p, e);
    if (p >= e || *p != '{') return NULL;
    p = ws(p + 1, e);
    if (p < e && *p == '}') return p + 1;
    for (;;) {
        keys->n = 0;
        p = json_string(ws(p, e), e, keys);
        if (!p) return NULL;
        p = ws(p, e);
        if (p >= e || *p != ':') return NULL;
        p++;
        int slot = which(keys->p ? keys->p : "", keys->n, ctx);
        if (slot == -2) return NULL;                   /* a key this parser declines */
        if (slot == -3) {
            p = extra_member((Extras *)ctx, keys->p ? keys->p : "", keys->n, p, e);
        } else if (slot >= 0) {
            if (slots[slot].type != V_ABSENT) return NULL;   /* a repeated key: Python keeps the last */
            p = json_value(p, e, out, &slots[slot]);
        } else {
            p = json_skip(p, e, 1);
        }
        if (!p) return NULL;
        p = ws(p, e);
        if (p >= e) return NULL;
        if (*p == ',') { p++; continue; }
        if (*p == '}') return p + 1;
        return NULL;
    }
}

static int key_is(const char *k, size_t n, const char *lit) { return strlen(lit) == n && !memcmp(k, lit, n); }

enum { E_MSG, E_BODY, E_ATTR, E_N };
static int envelope_slot(const char *k, size_t n, void *ctx) {
    (void)ctx;
    if (key_is(k, n, "MessageId")) return E_MSG;
    if (key_is(k, n, "Body")) return E_BODY;
    if (key_is(k, n, "Attributes")) return E_ATTR;
    return -1;
}
enum { A_SENT, A_COUNT, A_N };
static int attr_slot(const char *k, size_t n, void *ctx) {
    (void)ctx;
    if (key_is(k, n, "SentTimestamp")) return A_SENT;
    if (key_is(k, n, "ApproximateReceiveCount")) return A_COUNT;
    return -1;
}
enum { B_TS, B_USER, B_NAME, B_PLAT, B_ITEMS, B_REPLAY, B_N };
static int body_slot(const char *k, size_t n, void *ctx) {
    (void)ctx;
    if (key_is(k, n, "event_timestamp")) return B_TS;
    if (key_is(k, n, "user_id")) return B_USER;
    if (key_is(k, n, "event_name")) return B_NAME;
    if (key_is(k, n, "platform")) return B_PLAT;
    if (key_is(k, n, "items")) return B_ITEMS;
    if (key_is(k, n, "replay_timestamp")) return B_REPLAY;
    return -3;   /* an extra field: kept in extra_fields */
}

/* ---------------------------------------------------------------------------------------- */
/* scalars of the items text */

#define MIN_EVENT_TS_US 946684800000000LL
#define MAX_EVENT_TS_US 4102444800000000LL
#define MAX_FUTURE_SKEW_US 86400000000LL
#define MIN_SENT_MS (MIN_EVENT_TS_US / 1000)
#define MAX_SENT_MS (MAX_EVENT_TS_US / 1000)
#define MAX_ITEMS 10000
#define POW10_18 1000000000000000000LL

typedef struct { const char *p; size_t n; int present; } Slice;

static inline int py_ascii_space(unsigned char c) {   /* what str.strip() removes, in ASCII */
    return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
}

/* ASCII-strip s; -1 when s holds a byte Python might treat differently (non-ASCII). */
static int strip_ascii(Slice *s) {
    for (size_t i = 0; i < s->n; i++) if ((unsigned char)s->p[i] >= 0x80) return -1;
    while (s->n && py_ascii_space((unsigned char)s->p[0])) { s->p++; s->n--; }
    while (s->n && py_ascii_space((unsigned char)s->p[s->n - 1])) s->n--;
    return 0;
}

static int is_nullish(const char *p, size_t n) {
    return n == 0 || (n == 4 && !memcmp(p, "null", 4)) || (n == 9 && !memcmp(p, "(not set)", 9));
}

static inline int isdig(char c) { return c >= '0' && c <= '9'; }

/* Digits of a number for exact scaling: the significant digits and the power of ten. */
typedef struct { char d[64]; int nd; int exp10; int neg; } Num;

static int num_push(Num *x, char c) {
    if (x->nd == 0 && c == '0') return 0;          /* leading zeros carry nothing */
    if (x->nd >= 60) return -1;
    x->d[x->nd++] = c;
    return 0;
}

/* Java's toString of a number: -?\d+(\.\d+)?([eE][-+]?\d+)?, fully. 1: matched, 0: not. */
static int java_number(const char *p, size_t n, Num *x, int *has_exp) {
    const char *e = p + n;
    memset(x, 0, sizeof *x);
    *has_exp = 0;
    if (p < e && *p == '-') { x->neg = 1; p++; }
    if (p >= e || !isdig(*p)) return 0;
    while (p < e && isdig(*p)) { if (num_push(x, *p++)) return -1; }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !isdig(*p)) return 0;
        while (p < e && isdig(*p)) {
            if (x->nd == 0 && *p == '0') { x->exp10--; p++; continue; }
            if (num_push(x, *p++)) return -1;
            x->exp10--;
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        int sign = 1;
        if (p < e && (*p == '+' || *p == '-')) { sign = *p == '-' ? -1 : 1; p++; }
        if (p >= e || !isdig(*p)) return 0;
        int ex = 0, digits = 0;
        while (p < e && isdig(*p)) { ex = ex * 10 + (*p++ - '0'); if (++digits > 4) return -1; }
        x->exp10 += sign * ex;
        *has_exp = 1;
    }
    if (p != e) return 0;
    while (x->nd && x->d[x->nd - 1] == '0') { x->nd--; x->exp10++; }   /* 4.0 is 4 */
    return 1;
}

static int upper3(const char *p, const char *e) {
    return e - p >= 3 && p[0] >= 'A' && p[0] <= 'Z' && p[1] >= 'A' && p[1] <= 'Z' && p[2] >= 'A' && p[2] <= 'Z';
}

/* The strict money text of wire._MONEY_TEXT_RE: [CODE[ ]][-][$]NUMBER[[ ]CODE], NUMBER either
 * 1-3 digits then ",ddd" groups, or plain digits, each with an optional .digits. 1: matched with
 * the field's currency (or none); 0 or -1: decline. */
static int money_text(const char *p, size_t n, int usd, Num *x) {
    const char *e = p + n;
    const char *code = NULL;
    memset(x, 0, sizeof *x);
    if (upper3(p, e)) { code = p; p += 3; if (p < e && *p == ' ') p++; }
    if (p < e && *p == '-') { x->neg = 1; p++; }
    if (p < e && *p == '$') p++;
    const char *s = p;
    while (p < e && isdig(*p)) p++;
    size_t lead = (size_t)(p - s);
    if (!lead) return 0;
    int grouped = p < e && *p == ',';
    if (grouped) {
        if (lead > 3) return 0;
        for (const char *q = s; q < p; q++) if (num_push(x, *q)) return -1;
        while (p < e && *p == ',') {
            if (e - p < 4 || !isdig(p[1]) || !isdig(p[2]) || !isdig(p[3])) return 0;
            for (int i = 1; i <= 3; i++) if (num_push(x, p[i])) return -1;
            p += 4;
        }
    } else {
        for (const char *q = s; q < p; q++) if (num_push(x, *q)) return -1;
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !isdig(*p)) return 0;
        while (p < e && isdig(*p)) {
            if (x->nd == 0 && *p == '0') { x->exp10--; p++; continue; }
            if (num_push(x, *p++)) return -1;
            x->exp10--;
        }
    }
    if (p < e) {
        if (code) return 0;                      /* a code before and after: rejected by Python */
        if (*p == ' ') p++;
        if (!upper3(p, e) || p + 3 != e) return 0;
        code = p;
        p += 3;
    }
    if (code && memcmp(code, usd ? "USD" : "MXN", 3)) return 0;   /* Python rejects it */
    return 1;
}

/* value * 10^6, rounded half away from zero, when |result| < 10^18; else -1 (decline). */
static int scaled6(const Num *x, int64_t *out) {
    int s = x->exp10 + 6;
    int64_t r = 0;
    if (x->nd == 0) { *out = 0; return 0; }
    if (s >= 0) {
        if (x->nd + s > 18) return -1;
        for (int i = 0; i < x->nd; i++) r = r * 10 + (x->d[i] - '0');
        for (int i = 0; i < s; i++) r *= 10;
    } else {
        int keep = x->nd + s;
        if (keep < 0) r = 0;
        else {
            if (keep > 18) return -1;
            for (int i = 0; i < keep; i++) r = r * 10 + (x->d[i] - '0');
            if (x->d[keep] >= '5') r += 1;
        }
    }
    if (r >= POW10_18) return -1;
    *out = x->neg ? -r : r;
    return 0;
}

/* wire.parse_money. 0: valid and v set; -1: decline. */
static int money(Slice raw, int usd, int *valid, int64_t *v) {
    *valid = 0;
    if (!raw.present) return 0;
    if (strip_ascii(&raw)) return -1;
    if (is_nullish(raw.p, raw.n)) return 0;
    Num x; int has_exp;
    int m = java_number(raw.p, raw.n, &x, &has_exp);
    if (m < 0) return -1;
    if (m == 0) { if (money_text(raw.p, raw.n, usd, &x) != 1) return -1; }
    if (scaled6(&x, v)) return -1;
    *valid = 1;
    return 0;
}

/* wire.parse_integer, for plain digits or a Java number with a zero fraction. */
static int integer(Slice raw, int64_t limit, int *valid, int64_t *v) {
    *valid = 0;
    if (!raw.present) return 0;
    if (strip_ascii(&raw)) return -1;
    if (is_nullish(raw.p, raw.n)) return 0;
    if (raw.n > 640) return -1;                   /* wire's int(text) is limited to int_max_str_digits */
    Num x; int has_exp;
    if (java_number(raw.p, raw.n, &x, &has_exp) != 1 || has_exp) return -1;
    if (x.exp10 < 0) return -1;                   /* a nonzero fraction digit */
    if (x.nd + x.exp10 > 9) return -1;
    int64_t r = 0;
    for (int i = 0; i < x.nd; i++) r = r * 10 + (x.d[i] - '0');
    for (int i = 0; i < x.exp10; i++) r *= 10;
    if (r > limit) return -1;
    *v = x.neg ? -r : r;
    *valid = 1;
    return 0;
}

/* wire: the in_stock flag (true/false, else a number, nonzero is true). */
static int in_stock(Slice raw, int *valid, int8_t *v) {
    *valid = 0;
    if (!raw.present) return 0;
    if (strip_ascii(&raw)) return -1;
    if (raw.n == 4 && !strncasecmp(raw.p, "true", 4)) { *valid = 1; *v = 1; return 0; }
    if (raw.n == 5 && !strncasecmp(raw.p, "false", 5)) { *valid = 1; *v = 0; return 0; }
    if (is_nullish(raw.p, raw.n)) return 0;
    Num x; int has_exp;
    int m = java_number(raw.p, raw.n, &x, &has_exp);
    if (m != 1) return -1;
    if (has_exp && x.nd) return -1;             /* 1.0E400 is inf in Python: leave it to Python */
    if (x.nd && x.nd + x.exp10 < -300) return -1;   /* 0.000..01 underflows to 0.0 in float(): Python's */
    *valid = 1;
    *v = x.nd > 0;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* the items text */

/* The item key at p (followed by '='), or -1. Keys are 5 to 19 characters: the '=' is looked
 * for first, and only the keys of that length compared (called at every ", " of an item). */
#define MAX_KEY_LEN 19
static int8_t KEYS_BY_LEN[MAX_KEY_LEN + 1][8];

static int match_item_key(const char *p, const char *e) {
    size_t room = (size_t)(e - p);
    const char *eq = memchr(p, '=', room < MAX_KEY_LEN + 1 ? room : MAX_KEY_LEN + 1);
    if (!eq) return -1;
    size_t n = (size_t)(eq - p);
    for (int i = 0; i < 8 && KEYS_BY_LEN[n][i] >= 0; i++) {
        int k = KEYS_BY_LEN[n][i];
        if (!memcmp(p, ITEM_KEYS[k], n)) return k;
    }
    return -1;
}

static const char *PV_KEYS[4] = {"string_value", "int_value", "float_value", "double_value"};
static int match_pv_key(const char *p, const char *e) {
    for (int k = 0; k < 4; k++) {
        size_t n = strlen(PV_KEYS[k]);
        if ((size_t)(e - p) > n && p[n] == '=' && !memcmp(p, PV_KEYS[k], n)) return k;
    }
    return -1;
}

/* wire._split_fields: fields split only on ", " + known key + "=". -1: decline. */
static int split_fields(const char *p, const char *e, int (*match)(const char *, const char *),
                        const char **keys, Slice *vals, int nkeys) {
    for (int i = 0; i < nkeys; i++) vals[i].present = 0;
    int k = match(p, e);
    if (k < 0) return -1;
    for (;;) {
        if (vals[k].present) return -1;
        const char *v = p + strlen(keys[k]) + 1;
        const char *q = v;
        int next = -1;
        while (q + 1 < e) {
            const char *c = memchr(q, ',', (size_t)(e - q - 1));
            if (!c) break;
            if (c[1] == ' ' && (next = match(c + 2, e)) >= 0) { q = c; break; }
            q = c + 1;
        }
        if (next < 0) q = e;
        vals[k].p = v; vals[k].n = (size_t)(q - v); vals[k].present = 1;
        if (next < 0) return 0;
        p = q + 2;
        k = next;
    }
}

typedef struct {
    Slice key, value;
} Param;

#define MAX_PARAMS 64

/* wire.parse_item_params: [{key=K, value={...}}, ...]; the value is the first set of the four. */
static int parse_params(Slice text, Param *out, int *count) {
    *count = 0;
    if (text.n < 2 || text.p[0] != '[' || text.p[text.n - 1] != ']') return -1;
    const char *p = text.p + 1, *e = text.p + text.n - 1;
    if (e - p >= 2 && e[-2] == ',' && e[-1] == ' ') return -1;
    while (p < e) {
        if (e - p < 5 || memcmp(p, "{key=", 5)) return -1;
        const char *k = p + 5, *q = k;
        /* the key: up to the first ", value={" (it holds no bracket) */
        for (;;) {
            if (q >= e) return -1;
            if (*q == '{' || *q == '}' || *q == '[' || *q == ']') {
                if (*q == '{' && q - k >= 8 && !memcmp(q - 8, ", value=", 8)) break;
                return -1;
            }
            q++;
        }
        const char *kend = q - 8;
        const char *v = q + 1, *w = v;
        while (w < e && *w != '{' && *w != '}' && *w != '[' && *w != ']') w++;
        if (w + 1 >= e + 1 || w >= e || *w != '}' || w + 1 >= e || w[1] != '}') return -1;
        if (*count >= MAX_PARAMS) return -1;
        Param *pm = &out[(*count)++];
        pm->key.p = k; pm->key.n = (size_t)(kend - k); pm->key.present = 1;
        for (int i = 0; i < *count - 1; i++)
            if (out[i].key.n == pm->key.n && !memcmp(out[i].key.p, pm->key.p, pm->key.n)) return -1;
        Slice pv[4];
        if (split_fields(v, w, match_pv_key, PV_KEYS, pv, 4)) return -1;
        pm->value.present = 0;
        for (int i = 0; i < 4; i++)
            if (pv[i].present && !(pv[i].n == 4 && !memcmp(pv[i].p, "null", 4))) { pm->value = pv[i]; break; }
        p = w + 2;
        if (e - p >= 2 && p[0] == ',' && p[1] == ' ') p += 2;
    }
    return 0;
}

/* discounts -> codes, campaign codes, experiment arms (wire.split_codes); appended to the three
 * list columns of the current row. -1: decline. */
static int put_codes(Parser *P, Slice raw) {
    Col *codes = &P->cols[C_CODES], *camps = &P->cols[C_CAMPAIGNS], *arms = &P->cols[C_ARMS];
    if (raw.present && is_nullish(raw.p, raw.n)) raw.present = 0;
    if (raw.present) {
        for (size_t i = 0; i < raw.n; i++) if ((unsigned char)raw.p[i] >= 0x80) return -1;
        /* split, trim, drop empty, keep repeats once */
        Slice list[256]; int n = 0;
        const char *p = raw.p, *e = raw.p + raw.n;
        for (;;) {
            const char *bar = memchr(p, '|', (size_t)(e - p));
            Slice c = {p, (size_t)((bar ? bar : e) - p), 1};
            strip_ascii(&c);
            if (c.n) {
                int seen = 0;
                for (int i = 0; i < n; i++) if (list[i].n == c.n && !memcmp(list[i].p, c.p, c.n)) { seen = 1; break; }
                if (!seen) { if (n >= 256) return -1; list[n++] = c; }
            }
            if (!bar) break;
            p = bar + 1;
        }
        for (int i = 0; i < n; i++) {
            Slice c = list[i];
            str_append(P, &codes->b[2], &codes->b[3], c.p, c.n);
            const char *at = NULL;
            if (P->pattern_len && c.n >= P->pattern_len)
                at = memmem(c.p, c.n, P->pattern, P->pattern_len);
            if (!at) { str_append(P, &camps->b[2], &camps->b[3], c.p, c.n); continue; }
            const char *rest = at + P->pattern_len, *end = c.p + c.n;
            const char *us = NULL;
            for (const char *q = end; q > rest; q--) if (q[-1] == '_') { us = q - 1; break; }
            str_append(P, &arms->b[2], &arms->b[3], c.p, c.n);
            if (!us || us == rest || us + 1 == end) {
                if (rest < end) str_append(P, &arms->b[4], &arms->b[5], rest, (size_t)(end - rest));
                else str_append(P, &arms->b[4], &arms->b[5], c.p, c.n);
                str_append(P, &arms->b[6], &arms->b[7], "(not set)", 9);
            } else {
                str_append(P, &arms->b[4], &arms->b[5], rest, (size_t)(us - rest));
                str_append(P, &arms->b[6], &arms->b[7], us + 1, (size_t)(end - us - 1));
            }
        }
    }
    put_valid(P, codes, 1); put_valid(P, camps, 1); put_valid(P, arms, 1);
    PUT(&codes->b[1], (int32_t)(codes->b[2].n / 4));
    PUT(&camps->b[1], (int32_t)(camps->b[2].n / 4));
    PUT(&arms->b[1], (int32_t)(arms->b[2].n / 4));
    return 0;
}

/* The event-level values of one line, the same on each of its item rows. */
typedef struct {
    int32_t line;
    Slice msg, user, name, plat, replay, extra;
    int sent_valid, count_valid;
    int64_t sent, ts;
    int32_t count;
    char event_id[32];
    int32_t item_count;
} Event;

static void put_event(Parser *P, const Event *ev, int32_t item_index) {
    put_i32(P, C_LINE, 1, ev->line);
    put_str(P, C_MSG, ev->msg.p, ev->msg.n);
    put_i64(P, C_SENT, ev->sent_valid, ev->sent);
    put_i32(P, C_COUNT, ev->count_valid, ev->count);
    put_str(P, C_EVID, ev->event_id, 32);
    put_i64(P, C_TS, 1, ev->ts);
    put_str(P, C_USER, ev->user.p, ev->user.n);
    put_str(P, C_NAME, ev->name.p, ev->name.n);
    put_str(P, C_PLAT, ev->plat.p, ev->plat.n);
    put_str(P, C_REPLAY, ev->replay.present ? ev->replay.p : NULL, ev->replay.n);
    put_i32(P, C_ITEMCOUNT, 1, ev->item_count);
    put_i32(P, C_ITEMINDEX, item_index >= 0, item_index);
    put_str(P, C_EXTRAFIELDS, ev->extra.present ? ev->extra.p : NULL, ev->extra.n);
    P->rows++;
}

static void put_null_item(Parser *P) {
    for (int i = 0; i < 19; i++) put_str(P, C_T0 + i, NULL, 0);
    for (int i = 0; i < 6; i++) put_dec(P, C_M0 + i, 0, 0);
    put_i64(P, C_QTY, 0, 0);
    put_i8(P, C_STOCK, 0, 0);
    int lists[3] = {C_CODES, C_CAMPAIGNS, C_ARMS};
    for (int i = 0; i < 3; i++) {
        Col *c = &P->cols[lists[i]];
        put_valid(P, c, 0);
        PUT(&c->b[1], (int32_t)(c->b[2].n / 4));
    }
    put_dec(P, C_DISCOUNT, 0, 0); put_dec(P, C_TOTAL, 0, 0);
    put_i64(P, C_INST, 0, 0); put_dec(P, C_INSTPRICE, 0, 0);
    Col *m = &P->cols[C_EXTRA];
    put_valid(P, m, 0);
    PUT(&m->b[1], (int32_t)(m->b[2].n / 4));
}

/* One item body (between its braces) into the current row's item columns. */
static int put_item(Parser *P, const char *p, const char *e) {
    Slice f[NKEYS];
    if (split_fields(p, e, match_item_key, ITEM_KEYS, f, NKEYS)) return -1;
    for (int k = 0; k < NKEYS; k++) {
        int d = KEY_DEST[k];
        if (d < 100) {
            Slice s = f[k];
            int null = !s.present || is_nullish(s.p, s.n);
            if (null && k == 19 && s.present && s.n == 9) null = 0;     /* item_list_id "(not set)" */
            put_str(P, C_T0 + d, null ? NULL : s.p, s.n);
        }
    }
    for (int k = 0; k < NKEYS; k++) {
        int d = KEY_DEST[k];
        if (d >= 100 && d < 200) {
            int valid; int64_t v = 0;
            int usd = strstr(ITEM_KEYS[k], "_in_usd") != NULL;
            if (money(f[k], usd, &valid, &v)) return -1;
            put_dec(P, C_M0 + d - 100, valid, v);
        }
    }
    {
        int valid; int64_t v = 0;
        if (integer(f[11], 100000, &valid, &v)) return -1;
        put_i64(P, C_QTY, valid, v);
    }
    Param params[MAX_PARAMS]; int np = 0;
    if (f[26].present && parse_params(f[26], params, &np)) return -1;
    Slice stock = {0}, disc = {0}, discountt = {0}, total = {0}, inst = {0}, instp = {0};
    int extra = 0;
    for (int i = 0; i < np; i++) {
        Slice k = params[i].key, v = params[i].value;
        if (key_is(k.p, k.n, "in_stock")) stock = v;
        else if (key_is(k.p, k.n, "discounts")) disc = v;
        else if (key_is(k.p, k.n, "discountt")) discountt = v;
        else if (key_is(k.p, k.n, "totalPrice")) total = v;
        else if (key_is(k.p, k.n, "number_of_installments")) inst = v;
        else if (key_is(k.p, k.n, "installment_price")) instp = v;
        else extra++;
    }
    {
        int valid; int8_t v = 0;
        if (in_stock(stock, &valid, &v)) return -1;
        put_i8(P, C_STOCK, valid, v);
    }
    if (put_codes(P, disc)) return -1;
    int valid; int64_t v = 0;
    if (money(discountt, 0, &valid, &v)) return -1;
    put_dec(P, C_DISCOUNT, valid, v);
    if (money(total, 0, &valid, &v)) return -1;
    put_dec(P, C_TOTAL, valid, v);
    if (integer(inst, 1000, &valid, &v)) return -1;
    put_i64(P, C_INST, valid, v);
    if (money(instp, 0, &valid, &v)) return -1;
    put_dec(P, C_INSTPRICE, valid, v);
    Col *m = &P->cols[C_EXTRA];
    put_valid(P, m, extra > 0);
    for (int i = 0; i < np && extra; i++) {
        Slice k = params[i].key, v2 = params[i].value;
        if (key_is(k.p, k.n, "in_stock") || key_is(k.p, k.n, "discounts") || key_is(k.p, k.n, "discountt") ||
            key_is(k.p, k.n, "totalPrice") || key_is(k.p, k.n, "number_of_installments") ||
            key_is(k.p, k.n, "installment_price"))
            continue;
        str_append(P, &m->b[2], &m->b[3], k.p, k.n);
        char ok = v2.present;
        if (buf_put(&m->b[4], &ok, 1)) P->oom = 1;
        str_append(P, &m->b[5], &m->b[6], v2.present ? v2.p : "", v2.present ? v2.n : 0);
    }
    PUT(&m->b[1], (int32_t)(m->b[2].n / 4));
    return 0;
}

/* Top-level items of the inner text (wire._split_top_level): starts and ends of each body. */
static int split_items(const char *p, const char *e, Buf *spans, int *count) {
    int depth = 0;
    const char *start = NULL, *expect = p;
    *count = 0;
    spans->n = 0;
    for (const char *q = p; q < e; q++) {
#ifdef __SSE2__
        /* skip 16 bytes at a time to the next bracket */
        while (e - q >= 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)q);
            __m128i hit = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('{')), _mm_cmpeq_epi8(x, _mm_set1_epi8('}'))),
                _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('[')), _mm_cmpeq_epi8(x, _mm_set1_epi8(']'))));
            int m = _mm_movemask_epi8(hit);
            if (m) { q += __builtin_ctz((unsigned)m); break; }
            q += 16;
        }
        if (q >= e) break;
#endif
        char c = *q;
        if (c != '{' && c != '}' && c != '[' && c != ']') continue;
        if (c == '{' || c == '[') {
            if (depth == 0) {
                if (c != '{' || q != expect) return -1;
                start = q;
            }
            depth++;
        } else {
            depth--;
            if (depth < 0) return -1;
            if (depth == 0) {
                if (c != '}') return -1;
                const char *span[2] = {start + 1, q};
                if (buf_put(spans, span, sizeof span)) return -1;
                if (++*count > MAX_ITEMS) return -1;
                if (e - q >= 3 && q[1] == ',' && q[2] == ' ') expect = q + 3;
                else if (q + 1 == e) expect = NULL;
                else return -1;
            }
        }
    }
    if (depth != 0 || expect != NULL) return -1;
    return 0;
}

/* Python's strip() would leave a non-empty text: one ASCII character that is not whitespace. */
static int surely_not_blank(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x80 && !py_ascii_space(c)) return 1;
    }
    return 0;
}

static int parse_int64(const char *p, size_t n, int64_t *v) {
    if (n == 0 || n > 18) return -1;
    int64_t r = 0;
    for (size_t i = 0; i < n; i++) { if (!isdig(p[i])) return -1; r = r * 10 + (p[i] - '0'); }
    *v = r;
    return 0;
}

/* Attributes values: a string of digits (or absent/null) only. */
static int attr_int(Val *v, Buf *out, int64_t *r, int *valid) {
    *valid = 0;
    if (v->type == V_ABSENT || v->type == V_NULL) return 0;
    if (v->type != V_STR) return -1;
    if (parse_int64(out->p + v->off, v->len, r)) return -1;
    *valid = 1;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

/* One line. 0: accepted (rows written); -1: declined. */
static int parse_line(Parser *P, int32_t number, const char *p, const char *e) {
    Event ev; memset(&ev, 0, sizeof ev);
    ev.line = number;
    /* the envelope */
    Val env[E_N] = {{0}};
    P->msg.n = 0; P->strs.n = 0;
    const char *q = json_object(p, e, &P->key, &P->msg, env, envelope_slot, NULL);
    if (!q || ws(q, e) != e) return -1;
    if (env[E_MSG].type != V_STR || env[E_MSG].len == 0) return -1;
    if (env[E_BODY].type != V_STR) return -1;
    Val attrs[A_N] = {{0}};
    if (env[E_ATTR].type == V_OBJECT) {
        Buf tmp = {0};
        const char *r = json_object(env[E_ATTR].raw, env[E_ATTR].raw_end, &P->key, &tmp, attrs, attr_slot, NULL);
        int bad = !r || attr_int(&attrs[A_SENT], &tmp, &ev.sent, &ev.sent_valid);
        int64_t count = 0;
        bad = bad || attr_int(&attrs[A_COUNT], &tmp, &count, &ev.count_valid);
        buf_free(&tmp);
        if (bad) return -1;
        if (ev.sent_valid && !(ev.sent >= MIN_SENT_MS && ev.sent < MAX_SENT_MS)) ev.sent_valid = 0;
        if (ev.count_valid && count >= 2147483648LL) ev.count_valid = 0;
        ev.count = (int32_t)count;
    }
    /* the Body, as the envelope's parse decoded it into P->msg; its strings decode into P->strs */
    const char *body = P->msg.p + env[E_BODY].off;
    size_t body_len = env[E_BODY].len;
    Val b[B_N] = {{0}};
    P->extras.json.n = P->extras.seen.n = 0;
    P->extras.count = 0;
    q = json_object(body, body + body_len, &P->key, &P->strs, b, body_slot, &P->extras);
    if (!q || ws(q, body + body_len) != body + body_len) return -1;
    for (int i = 0; i < B_REPLAY; i++) if (b[i].type == V_ABSENT || b[i].type == V_NULL) return -1;
    if (b[B_TS].type != V_INT) return -1;
    for (int i = B_USER; i <= B_ITEMS; i++) if (b[i].type != V_STR) return -1;
    if (b[B_REPLAY].type != V_ABSENT && b[B_REPLAY].type != V_NULL && b[B_REPLAY].type != V_STR) return -1;
    {
        const char *t = b[B_TS].raw;
        size_t n = (size_t)(b[B_TS].raw_end - t);
        if (parse_int64(t, n, &ev.ts)) return -1;
        if (!(ev.ts >= MIN_EVENT_TS_US && ev.ts < MAX_EVENT_TS_US)) return -1;
        if (ev.sent_valid && ev.ts > ev.sent * 1000 + MAX_FUTURE_SKEW_US) return -1;
    }
    if (P->extras.count) {
        if (buf_put(&P->extras.json, "}", 1)) { P->oom = 1; return -1; }
        ev.extra = (Slice){P->extras.json.p, P->extras.json.n, 1};
    }
    const char *S = P->strs.p;
    ev.msg = (Slice){P->msg.p + env[E_MSG].off, env[E_MSG].len, 1};
    ev.user = (Slice){S + b[B_USER].off, b[B_USER].len, 1};
    ev.name = (Slice){S + b[B_NAME].off, b[B_NAME].len, 1};
    ev.plat = (Slice){S + b[B_PLAT].off, b[B_PLAT].len, 1};
    Slice items = {S + b[B_ITEMS].off, b[B_ITEMS].len, 1};
    if (b[B_REPLAY].type == V_STR) ev.replay = (Slice){S + b[B_REPLAY].off, b[B_REPLAY].len, 1};
    if (!surely_not_blank(ev.user.p, ev.user.n) || !surely_not_blank(ev.name.p, ev.name.n)) return -1;
    /* wire.MAX_TEXT characters at most (bytes here: longer in bytes is left to Python to count) */
    if (ev.user.n > 1024 || ev.name.n > 1024 || ev.plat.n > 1024 || (ev.replay.present && ev.replay.n > 1024)) return -1;
    /* platform, upper-cased (ASCII only: str.upper() of other letters is Python's business) */
    char plat[256];
    if (ev.plat.n > sizeof plat || !surely_not_blank(ev.plat.p, ev.plat.n)) return -1;
    for (size_t i = 0; i < ev.plat.n; i++) {
        unsigned char c = (unsigned char)ev.plat.p[i];
        if (c >= 0x80) return -1;
        plat[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    ev.plat.p = plat;
    /* event_id: SHA-256 of the five identity values joined by U+001F */
    Buf *k = &P->identity;
    k->n = 0;
    char ts[24];
    int tn = snprintf(ts, sizeof ts, "%lld\x1f", (long long)ev.ts);
    if (buf_put(k, ts, (size_t)tn) || buf_put(k, ev.user.p, ev.user.n) || buf_put(k, "\x1f", 1) ||
        buf_put(k, ev.name.p, ev.name.n) || buf_put(k, "\x1f", 1) || buf_put(k, plat, ev.plat.n) ||
        buf_put(k, "\x1f", 1) || buf_put(k, items.p, items.n)) { P->oom = 1; return -1; }
    unsigned char digest[32];
    SHA256_f((const unsigned char *)k->p, k->n, digest);
    for (int i = 0; i < 16; i++) { ev.event_id[2 * i] = HEX[digest[i] >> 4]; ev.event_id[2 * i + 1] = HEX[digest[i] & 15]; }
    /* the items text */
    Slice t = items;
    if (strip_ascii(&t)) {
        /* non-ASCII somewhere: fine, unless it stands at either end (Unicode whitespace?) */
        t = items;
        while (t.n && py_ascii_space((unsigned char)t.p[0])) { t.p++; t.n--; }
        while (t.n && py_ascii_space((unsigned char)t.p[t.n - 1])) t.n--;
        if (t.n && ((unsigned char)t.p[0] >= 0x80 || (unsigned char)t.p[t.n - 1] >= 0x80)) return -1;
    }
    if (t.n < 2 || t.p[0] != '[' || t.p[t.n - 1] != ']') return -1;
    const char *ip = t.p + 1, *ie = t.p + t.n - 1;
    int blank = 1;
    for (const char *r = ip; r < ie; r++) {
        if ((unsigned char)*r >= 0x80) { blank = -1; break; }
        if (!py_ascii_space((unsigned char)*r)) { blank = 0; break; }
    }
    if (blank == -1) return -1;
    int count = 0;
    if (!blank) {
        if (split_items(ip, ie, &P->key, &count)) return -1;
    }
    ev.item_count = count;
    if (count == 0) {
        put_event(P, &ev, -1);
        put_null_item(P);
        return P->oom ? -1 : 0;
    }
    /* the spans live in P->key, which the item parse does not touch */
    for (int i = 0; i < count; i++) {
        const char **span = (const char **)(P->key.p + i * 2 * sizeof(char *));
        put_event(P, &ev, i);
        if (put_item(P, span[0], span[1])) return -1;
    }
    return P->oom ? -1 : 0;
}

static void decline(Parser *P, int64_t number, size_t start, size_t end) {
    int64_t t[3] = {number, (int64_t)start, (int64_t)end};
    if (buf_put(&P->declined, t, sizeof t)) P->oom = 1;
}

/* Every line of data; line numbers start at first_line. */
static void parse_all(Parser *P, const char *data, size_t size, int32_t first_line) {
    const char *p = data, *end = data + size;
    int64_t number = first_line;
    while (p < end && !P->oom) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        /* blank lines are skipped, as wire.iter_batch_lines does; a line that may be blank only
         * to Python's Unicode-aware strip() goes back to Python */
        int blank = 1;
        for (const char *r = p; r < e; r++) {
            unsigned char c = (unsigned char)*r;
            if (c >= 0x80) { blank = -1; break; }
            if (!py_ascii_space(c)) { blank = 0; break; }
        }
        if (blank != 1) {
            Mark m;
            mark(P, &m);
            P->full = 0;
            if (blank == -1 || number > INT32_MAX || parse_line(P, (int32_t)number, p, e) || P->full) {
                rollback(P, &m);
                decline(P, number, (size_t)(p - data), (size_t)(e - data));
            }
        }
        number++;
        p = nl ? nl + 1 : end;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Python side */

static PyObject *bytes_of(Buf *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->n); }

/* validity bytes -> Arrow bitmap, or None when every row is valid */
static PyObject *bitmap_of(Buf *v) {
    size_t n = v->n, all = 1;
    for (size_t i = 0; i < n; i++) if (!v->p[i]) { all = 0; break; }
    if (all) Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((n + 7) / 8));
    if (!out) return NULL;
    unsigned char *bits = (unsigned char *)PyBytes_AS_STRING(out);
    memset(bits, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++) if (v->p[i]) bits[i >> 3] |= (unsigned char)(1u << (i & 7));
    return out;
}

/* offsets with the leading zero */
static PyObject *offsets_of(Buf *b) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(b->n + 4));
    if (!out) return NULL;
    char *s = PyBytes_AS_STRING(out);
    memset(s, 0, 4);
    if (b->n) memcpy(s + 4, b->p, b->n);
    return out;
}

static PyObject *col_tuple(Col *c) {
    switch (c->kind) {
        case K_I32: case K_I64: case K_I8: case K_DEC:
            return Py_BuildValue("(NN)", bitmap_of(&c->b[0]), bytes_of(&c->b[1]));
        case K_STR:
            return Py_BuildValue("(NNN)", bitmap_of(&c->b[0]), offsets_of(&c->b[1]), bytes_of(&c->b[2]));
        case K_LIST:
            return Py_BuildValue("(NNNN)", bitmap_of(&c->b[0]), offsets_of(&c->b[1]), offsets_of(&c->b[2]),
                                 bytes_of(&c->b[3]));
        case K_ARMS:
            return Py_BuildValue("(NNNNNNNN)", bitmap_of(&c->b[0]), offsets_of(&c->b[1]),
                                 offsets_of(&c->b[2]), bytes_of(&c->b[3]), offsets_of(&c->b[4]),
                                 bytes_of(&c->b[5]), offsets_of(&c->b[6]), bytes_of(&c->b[7]));
        case K_MAP:
            return Py_BuildValue("(NNNNNNN)", bitmap_of(&c->b[0]), offsets_of(&c->b[1]), offsets_of(&c->b[2]),
                                 bytes_of(&c->b[3]), bitmap_of(&c->b[4]), offsets_of(&c->b[5]),
                                 bytes_of(&c->b[6]));
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(parse_doc,
"parse(data, first_line, experiment_pattern) -> (rows, columns, declined)\n\n"
"Parse the batch-file lines in ``data`` (bytes; line numbers from ``first_line``). ``columns``\n"
"maps each column of staging.PARSED_SCHEMA to its Arrow buffers; ``declined`` lists\n"
"(line number, start, end) of the lines left to the contract parser.");

static PyObject *py_parse(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    int first_line;
    const char *pattern;
    Py_ssize_t pattern_len;
    if (!PyArg_ParseTuple(args, "y*is#", &data, &first_line, &pattern, &pattern_len)) return NULL;
    if (data.len > 1800000000) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "chunk too large for 32-bit Arrow offsets; parse it in parts");
        return NULL;
    }
    Parser *P = malloc(sizeof *P);
    if (!P) { PyBuffer_Release(&data); return PyErr_NoMemory(); }
    parser_init(P);
    P->pattern = pattern;
    P->pattern_len = (size_t)pattern_len;
    Py_BEGIN_ALLOW_THREADS
    parse_all(P, (const char *)data.buf, (size_t)data.len, (int32_t)first_line);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyObject *result = NULL, *cols = NULL, *declined = NULL;
    if (P->oom) { PyErr_NoMemory(); goto done; }
    cols = PyDict_New();
    if (!cols) goto done;
    for (int i = 0; i < NCOLS; i++) {
        PyObject *t = col_tuple(&P->cols[i]);
        if (!t || PyDict_SetItemString(cols, P->cols[i].name, t)) { Py_XDECREF(t); goto done; }
        Py_DECREF(t);
    }
    size_t nd = P->declined.n / (3 * sizeof(int64_t));
    declined = PyList_New((Py_ssize_t)nd);
    if (!declined) goto done;
    for (size_t i = 0; i < nd; i++) {
        int64_t *t = (int64_t *)P->declined.p + 3 * i;
        PyObject *item = Py_BuildValue("(LLL)", (long long)t[0], (long long)t[1], (long long)t[2]);
        if (!item) goto done;
        PyList_SET_ITEM(declined, (Py_ssize_t)i, item);
    }
    result = Py_BuildValue("(nOO)", (Py_ssize_t)P->rows, cols, declined);
done:
    Py_XDECREF(cols);
    Py_XDECREF(declined);
    parser_free(P);
    free(P);
    return result;
}

static PyMethodDef methods[] = {
    {"parse", py_parse, METH_VARARGS, parse_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wirefast",
    "One compiled pass over batch-file bytes (see _wirefast.c).", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__wirefast(void) {
    /* OpenSSL's SHA256, from the libcrypto that Python's hashlib links (imported first) */
    PyObject *h = PyImport_ImportModule("_hashlib");
    if (!h) return NULL;
    Py_DECREF(h);
    const char *names[] = {"libcrypto.so.3", "libcrypto.so", "libcrypto.so.1.1", NULL};
    for (int i = 0; names[i] && !SHA256_f; i++) {
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
        if (!lib) lib = dlopen(names[i], RTLD_NOW);
        if (lib) SHA256_f = (sha256_fn)dlsym(lib, "SHA256");
    }
    if (!SHA256_f) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL's libcrypto (SHA256) not found");
        return NULL;
    }
    memset(KEYS_BY_LEN, -1, sizeof KEYS_BY_LEN);
    for (int k = 0; k < NKEYS; k++) {
        size_t n = strlen(ITEM_KEYS[k]);
        int i = 0;
        while (n <= MAX_KEY_LEN && i < 8 && KEYS_BY_LEN[n][i] >= 0) i++;   /* at most 8 keys share a length */
        if (n > MAX_KEY_LEN || i >= 8) {
            PyErr_SetString(PyExc_ImportError, "item keys table");
            return NULL;
        }
        KEYS_BY_LEN[n][i] = (int8_t)k;
        KEY_DEST[k] = -1;
        for (int i = 0; i < 19; i++) if (!strcmp(ITEM_KEYS[k], TEXT_NAMES[i])) KEY_DEST[k] = i;
        for (int i = 0; i < 6; i++) if (!strcmp(ITEM_KEYS[k], MONEY_NAMES[i])) KEY_DEST[k] = 100 + i;
        if (!strcmp(ITEM_KEYS[k], "quantity")) KEY_DEST[k] = 200;
        if (!strcmp(ITEM_KEYS[k], "item_params")) KEY_DEST[k] = 300;
    }
    PyObject *m = PyModule_Create(&module);
#ifndef SOURCE_SHA
#define SOURCE_SHA ""
#endif
    if (m && PyModule_AddStringConstant(m, "SOURCE_SHA", SOURCE_SHA)) { Py_DECREF(m); return NULL; }
    return m;
}
