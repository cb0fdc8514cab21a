/* responder._accel._speedups: compiled primitives, optional, each with a pure-Python twin.
 *
 * parse(data) reads the common, well-formed request -- CRLF line ends, printable ASCII
 * header block, no folding, "METHOD SP sip:URI SP SIP/2.0", one each of From, To, Call-ID,
 * CSeq, a plain top Via -- into exactly the Request that responder.sip.parser's pure-Python
 * parser makes of it, and returns None for everything else: the caller then runs the
 * Python parser, which owns every problem (400s) and every discard. So this file never
 * decides that input is bad; it only recognises input that is plainly good.
 *
 * respond(...) writes a response head (status line to Record-Route) as
 * responder.sip.builder.head does, RFC 3581 received/rport included, or returns None.
 *
 * tag_state/to_tag compute Seeded.to_tag's keyed BLAKE2b without the Python calls around
 * hashlib (scripts/bench_tag.py measures why it is kept).
 *
 * recv_many/send_many move datagrams in batches (recvmmsg/sendmmsg): one system call for
 * many datagrams instead of one each, and no exception per empty socket.
 *
 * EchoTable is the RTP echo's hot loop: a copy of responder.core.media.Media's source index
 * and per-call counts, kept in step by Media; it reads, counts and echoes the packets that
 * need no decision and hands every other one to Media.packet (tests/test_media_accel.py).
 *
 * What this file assumes about the Python side -- the Request slots, the TopVia positions,
 * the header slot numbers, the (key, name, slot) entries of the name cache, the character
 * classes of the grammar, the To tag's parameters -- it says in the module's ASSUMES dict
 * (built from the same constants and functions the code uses; see make_assumes below).
 * responder.sip.parser and responder.sip.seeded compare it with what they have before they
 * use anything here, and on any difference use their pure-Python path and warn
 * (responder._accel.mismatch). The differential tests then hold each part to its twin:
 * tests/test_speedups.py (the parsers, the batches), tests/test_accel.py (the checks,
 * response heads, To tags).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "_framing.h"  /* frame(): Framer.feed's hot case (issue 14) */

/* Request fields, in the dataclass's order (responder/sip/message.py): parse() sets every
 * one of them, by its slot's offset (configure() looks the offsets up by name). */
enum {
    F_METHOD, F_URI, F_VERSION, F_HEADER_LINES, F_VIAS, F_TOP_VIA, F_VIA_REST, F_FROM,
    F_TO, F_CALL_ID, F_CSEQ, F_CSEQ_NUM, F_FROM_TAG, F_TO_TAG, F_TARGET_USER, F_FROM_URI,
    F_TO_URI, F_REQUIRE, F_TIMESTAMP, F_URI_HOST, F_BODY, F_PROBLEM, N_FIELDS
};
static const char *FIELD_NAMES[N_FIELDS] = {
    "method", "uri", "version", "header_lines", "vias", "top_via", "via_rest", "from_",
    "to", "call_id", "cseq", "cseq_num", "from_tag", "to_tag", "target_user", "from_uri",
    "to_uri", "require", "timestamp", "uri_host", "body", "problem",
};

/* TopVia positions (responder/sip/message.py): parse() makes one, respond() reads one. */
enum { TV_VALUE, TV_HOST, TV_PORT, TV_BRANCH, TV_RPORT, TV_RPORT_EMPTY, TV_RECEIVED, N_TOPVIA };
static const char *TOPVIA_NAMES[N_TOPVIA] = {
    "value", "host", "port", "branch", "rport", "rport_empty", "received",
};

/* A header line of Request.header_lines, as message.Header names its positions; the
 * entries of responder.sip.parser._KEYS, (key, name, slot), share the first two. */
enum { H_KEY, H_NAME, H_VALUE, N_HEADER };
static const char *HEADER_NAMES[N_HEADER] = {"key", "name", "value"};
#define K_SLOT 2

/* Header slots, as responder.sip.parser._SLOTS numbers them (0: a header only kept). */
enum { S_OTHER, S_VIA, S_FROM, S_TO, S_CALL_ID, S_CSEQ, S_LENGTH, S_REQUIRE, S_TIMESTAMP,
       N_SLOTS };
static const char *SLOT_NAMES[N_SLOTS] = {
    NULL, "via", "from", "to", "call-id", "cseq", "content-length", "require", "timestamp",
};

/* A CSeq number of up to this many digits is read here; responder.sip.parser.MAX_CSEQ must
 * allow every such number (else the Python parser answers 400 where this one does not). */
#define CSEQ_DIGITS 9

/* Per-message caps (responder.sip.parser, SPEC §10): a request with more header lines than
 * this, or more Via values (Via lines plus their commas), is left to the Python parser,
 * which owns the 513/400 past a cap. MAX_LINES_READ is the smaller of the header-line and
 * distinct-name caps, so a request read here never needs either checked (ASSUMES). */
#define MAX_LINES_READ 128
#define MAX_VIA_VALUES 128

static PyTypeObject *request_type;   /* responder.sip.message.Request */
static PyTypeObject *topvia_type;    /* responder.sip.message.TopVia */
static PyObject *keys_cache;         /* responder.sip.parser._KEYS: name -> (key, name, slot) */
static PyObject *header_key;         /* responder.sip.parser._header_key */
static PyObject *sip_version;        /* "SIP/2.0" */
static PyObject *empty_tuple;

/* A small cache in front of keys_cache, keyed by the name's bytes: most requests carry
 * the same dozen header names, and this saves making a str of each to look it up. */
#define NAME_CACHE 256
#define NAME_MAX_LEN 40
typedef struct {
    Py_ssize_t len;
    char name[NAME_MAX_LEN];
    PyObject *known;  /* strong: (key, name, slot) */
    int slot;
} name_entry;
static name_entry name_cache[NAME_CACHE];

/* Method strings, made once: every request carries one, and a str made once keeps its
 * hash (the engine and the rules look methods up in dicts and sets). */
#define METHOD_CACHE 32
#define METHOD_MAX_LEN 16
static struct { Py_ssize_t len; char name[METHOD_MAX_LEN]; PyObject *str; } method_cache[METHOD_CACHE];

static PyObject *str_of(const char *p, Py_ssize_t n);
static unsigned hash_bytes(const char *p, Py_ssize_t n);

static PyObject *method_str(const char *p, Py_ssize_t n) {
    if (n > METHOD_MAX_LEN) return str_of(p, n);
    unsigned i = hash_bytes(p, n) & (METHOD_CACHE - 1);
    if (method_cache[i].str != NULL && method_cache[i].len == n &&
        memcmp(method_cache[i].name, p, n) == 0)
        return Py_NewRef(method_cache[i].str);
    PyObject *str = str_of(p, n);
    if (str == NULL) return NULL;
    PyUnicode_InternInPlace(&str);
    Py_XSETREF(method_cache[i].str, Py_NewRef(str));
    method_cache[i].len = n;
    memcpy(method_cache[i].name, p, n);
    return str;
}

static int is_token_char(unsigned char c) {
    /* TOKEN_CHARS in responder/sip/uri.py: A-Za-z0-9 - . ! % * _ + ` ' ~ (ASSUMES) */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '!' || c == '%' || c == '*' || c == '_' ||
           c == '+' || c == '`' || c == '\'' || c == '~';
}

static int is_ws(char c) { return c == ' ' || c == '\t'; }

static PyObject *str_of(const char *p, Py_ssize_t n) {
    /* The header block was checked to be printable ASCII: copied, not decoded. */
    PyObject *s = PyUnicode_New(n, 127);
    if (s != NULL) memcpy(PyUnicode_DATA(s), p, (size_t)n);
    return s;
}

static unsigned hash_bytes(const char *p, Py_ssize_t n) {
    unsigned h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

/* (key, name, slot) of a header name as written, a new reference; NULL and no error: not
 * a name the Python parser reads as one (it owns that case); NULL and an error: an error. */
static PyObject *known_name(const char *p, Py_ssize_t n, int *slot) {
    name_entry *e = NULL;
    if (n <= NAME_MAX_LEN) {
        e = &name_cache[hash_bytes(p, n) & (NAME_CACHE - 1)];
        if (e->known != NULL && e->len == n && memcmp(e->name, p, n) == 0) {
            *slot = e->slot;
            return Py_NewRef(e->known);
        }
    }
    PyObject *name = str_of(p, n);
    if (name == NULL) return NULL;
    PyObject *known = PyDict_GetItemWithError(keys_cache, name);
    if (known != NULL) {
        Py_INCREF(known);
    } else if (PyErr_Occurred()) {
        Py_DECREF(name);
        return NULL;
    } else {
        known = PyObject_CallOneArg(header_key, name);
    }
    Py_DECREF(name);
    if (known == NULL) return NULL;
    if (!PyTuple_Check(known) || PyTuple_GET_SIZE(known) != K_SLOT + 1) {
        Py_DECREF(known);  /* None: not a header name */
        return NULL;
    }
    long s = PyLong_AsLong(PyTuple_GET_ITEM(known, K_SLOT));
    if (s == -1 && PyErr_Occurred()) {
        Py_DECREF(known);
        return NULL;
    }
    *slot = (int)s;
    if (e != NULL) {
        Py_XSETREF(e->known, Py_NewRef(known));
        e->len = n;
        memcpy(e->name, p, n);
        e->slot = (int)s;
    }
    return known;
}

typedef struct { const char *p; Py_ssize_t n; } span;

/* The parts of a sip: URI the parser keeps: user (n < 0: none) and host. */
typedef struct { span user; span host; } sip_uri;

/* "sip:" [user[":"password] "@"] host [":" port] [";" params] -- and no "?headers",
 * no "%" escapes, nothing responder.sip.uri.uri_parts would read differently. 0: not that. */
static int read_sip_uri(const char *p, Py_ssize_t n, sip_uri *out) {
    if (n < 5 || memcmp(p, "sip:", 4) != 0) return 0;
    const char *s = p + 4, *end = p + n;
    for (const char *q = s; q < end; q++)
        if (*q == ' ' || *q == '\t' || *q == '?') return 0;
    const char *at = memchr(s, '@', end - s);
    out->user.p = NULL;
    out->user.n = -1;
    if (at != NULL) {
        const char *colon = memchr(s, ':', at - s);
        out->user.p = s;
        out->user.n = (colon ? colon : at) - s;
        if (memchr(s, '%', at - s) != NULL) return 0;
        s = at + 1;
    }
    const char *h = s;
    if (s < end && *s == '[') {
        while (s < end && *s != ']') s++;
        if (s == end) return 0;
        s++;
    } else {
        while (s < end && !strchr(":;?[]<>@", *s)) s++;
        if (s == h) return 0;
    }
    out->host.p = h;
    out->host.n = s - h;
    if (s < end && *s == ':') {
        const char *d = ++s;
        long port = 0;
        while (s < end && *s >= '0' && *s <= '9' && s - d < 6) port = port * 10 + (*s++ - '0');
        if (s == d || s - d > 5 || port > 65535) return 0;
    }
    return s == end || *s == ';';
}

static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* The scheme check of responder.sip.uri._HAS_SCHEME: [A-Za-z][A-Za-z0-9+.-]*":" at the
 * start (ASSUMES, probed over every byte). */
static int has_scheme(const char *p, Py_ssize_t n) {
    if (n < 2 || !is_alpha(p[0])) return 0;
    for (Py_ssize_t i = 1; i < n; i++) {
        char c = p[i];
        if (c == ':') return 1;
        if (!(is_alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '.' || c == '-'))
            return 0;
    }
    return 0;
}

/* A From/To value in the forms responder.sip.uri.address_and_tag reads without surprises:
 * [display] <uri>[;params], "display" <uri>[;params] (no backslash) or uri[;params].
 * tag.n < 0: no tag. 0: leave it to the Python parser. */
static int read_address(const char *p, Py_ssize_t n, span *uri, span *tag) {
    const char *end = p + n, *params, *pend = end;
    if (memchr(p, '\\', n) != NULL) return 0;
    const char *lt = memchr(p, '<', n);
    if (lt != NULL) {
        const char *gt = memchr(lt, '>', end - lt);
        if (gt == NULL || memchr(gt + 1, '>', end - gt - 1) != NULL) return 0;
        if (memchr(p, '>', lt - p) != NULL) return 0;
        const char *d = p, *dend = lt;
        while (d < dend && is_ws(*d)) d++;
        while (dend > d && is_ws(dend[-1])) dend--;
        if (d < dend && *d == '"') {
            /* "quoted display": the closing quote, then only whitespace up to '<' */
            const char *q = memchr(d + 1, '"', dend - d - 1);
            if (q == NULL || q + 1 != dend) return 0;
        } else {
            /* unquoted: tokens separated by whitespace, no quote anywhere before '<' */
            for (const char *q = d; q < dend; q++)
                if (!is_token_char((unsigned char)*q) && !is_ws(*q)) return 0;
        }
        if (memchr(p, '"', d - p) != NULL) return 0;
        uri->p = lt + 1;
        uri->n = gt - lt - 1;
        if (uri->n == 0) return 0;
        for (const char *q = uri->p; q < gt; q++)
            if (is_ws(*q)) return 0;
        if (!has_scheme(uri->p, uri->n)) return 0;
        params = gt + 1;
        while (params < pend && is_ws(*params)) params++;
        while (pend > params && is_ws(pend[-1])) pend--;
        if (params < pend && *params != ';') return 0;
    } else {
        if (memchr(p, '"', n) != NULL || memchr(p, '>', n) != NULL) return 0;
        const char *semi = memchr(p, ';', n);
        const char *u = p, *uend = semi ? semi : end;
        for (const char *q = u; q < uend; q++)
            if (is_ws(*q) || *q == ',' || *q == '?') return 0;
        if (uend == u || !has_scheme(u, uend - u)) return 0;
        uri->p = u;
        uri->n = uend - u;
        params = uend;
    }
    tag->p = NULL;
    tag->n = -1;
    if (params >= pend) return 1;
    /* As address_and_tag: ";tag=" there and "tag" once (case as written): the value up to
     * the next ';'. No "tag" in any case: no tag. Anything else: Python reads it. */
    int exact = 0, any_case = 0;
    for (const char *q = params; q + 3 <= pend; q++) {
        if ((q[0] | 0x20) == 't' && (q[1] | 0x20) == 'a' && (q[2] | 0x20) == 'g') any_case++;
        if (q[0] == 't' && q[1] == 'a' && q[2] == 'g') exact++;
    }
    if (any_case == 0) return 1;
    if (exact != 1) return 0;
    const char *k = NULL;
    for (const char *q = params; q + 5 <= pend; q++)
        if (memcmp(q, ";tag=", 5) == 0) { k = q; break; }
    if (k == NULL) return 0;
    const char *t = k + 5, *tend = memchr(t, ';', pend - t);
    if (tend == NULL) tend = pend;
    if (memchr(t, ' ', tend - t) || memchr(t, '\t', tend - t) || tend == t) return 0;
    tag->p = t;
    tag->n = tend - t;
    return 1;
}

typedef struct {
    span host;
    long port;  /* -1: none */
    span branch;  /* n < 0: none (an empty branch is none too) */
    int rport, rport_empty, received;
} top_via;

static int name_is(const char *p, Py_ssize_t n, const char *lower) {
    Py_ssize_t m = (Py_ssize_t)strlen(lower);
    if (n != m) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if ((p[i] | 0x20) != lower[i]) return 0;
    return 1;
}

/* SIP/2.0/UDP host[:port][;params] without whitespace but the one run after the
 * transport, no comma (one value per line), no empty parameter. 0: not that. */
static int read_via(const char *p, Py_ssize_t n, top_via *v) {
    const char *s = p, *end = p + n;
    if (memchr(p, ',', n) != NULL) return 0;
    for (int part = 0; part < 3; part++) {
        const char *b = s;
        while (s < end && !is_ws(*s) && *s != '/' && *s != ';') s++;
        if (s == b) return 0;
        if (part < 2) {
            if (s == end || *s != '/') return 0;
            s++;
        }
    }
    if (s == end || !is_ws(*s)) return 0;
    while (s < end && is_ws(*s)) s++;
    const char *h = s;
    if (s < end && *s == '[') {
        while (s < end && *s != ']' && !is_ws(*s)) s++;
        if (s == end || *s != ']') return 0;
        s++;
    } else {
        while (s < end && !is_ws(*s) && *s != ':' && *s != ';' && *s != '[' && *s != ']') s++;
        if (s == h) return 0;
    }
    v->host.p = h;
    v->host.n = s - h;
    v->port = -1;
    if (s < end && *s == ':') {
        const char *d = ++s;
        long port = 0;
        while (s < end && *s >= '0' && *s <= '9' && s - d < 6) port = port * 10 + (*s++ - '0');
        if (s == d || s - d > 5 || port > 65535) return 0;
        v->port = port;
    }
    v->branch.p = NULL;
    v->branch.n = -1;
    v->rport = v->rport_empty = v->received = 0;
    if (s == end) return 1;
    if (*s != ';') return 0;
    for (const char *q = s; q < end; q++)
        if (is_ws(*q)) return 0;
    while (s < end) {  /* at a ';' */
        const char *b = ++s;
        while (s < end && *s != ';') s++;
        const char *eq = memchr(b, '=', s - b);
        const char *nend = eq ? eq : s;
        const char *val = eq ? eq + 1 : s;
        if (nend == b) return 0;  /* an empty parameter: the Python parser's 400 */
        if (name_is(b, nend - b, "branch")) {
            if (v->branch.n == -1) {
                v->branch.p = val;
                v->branch.n = s - val;
                if (v->branch.n == 0) v->branch.n = -2;  /* given, empty: none */
            }
        } else if (name_is(b, nend - b, "rport")) {
            if (!v->rport) {
                v->rport = 1;
                v->rport_empty = (s == val);
            }
        } else if (name_is(b, nend - b, "received")) {
            v->received = 1;
        }
    }
    return 1;
}

static Py_ssize_t field_offset[N_FIELDS];  /* each slot's place in a Request */

static int set_field(PyObject *req, int field, PyObject *value) {
    /* value: a new reference, consumed; the slot is empty (a new object) */
    if (value == NULL) return -1;
    PyObject **slot = (PyObject **)((char *)req + field_offset[field]);
    Py_XSETREF(*slot, value);
    return 0;
}

static PyObject *opt_str(span s) {
    if (s.n < 0) Py_RETURN_NONE;
    return str_of(s.p, s.n);
}

static PyObject *speedups_parse(PyObject *self, PyObject *arg) {
    (void)self;
    if (request_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "responder._accel._speedups: configure() first");
        return NULL;
    }
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "parse() takes bytes");
        return NULL;
    }
    const char *d = PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    if (n < 16 || d[0] == '\r' || d[0] == '\n') Py_RETURN_NONE;
    const char *head_end = NULL;  /* the first CRLF CRLF */
    for (const char *q = d; (q = memchr(q, '\r', (size_t)(d + n - q))) != NULL; q++) {
        if (d + n - q < 4) break;
        if (q[1] == '\n' && q[2] == '\r' && q[3] == '\n') {
            head_end = q;
            break;
        }
    }
    if (head_end == NULL) Py_RETURN_NONE;
    Py_ssize_t hlen = head_end - d;
    /* Printable ASCII and tabs, every CR followed by LF, every LF after a CR, no folding;
     * at most MAX_LINES_READ header lines (a CR in the head ends the request line or one). */
    int crs = 0;
    for (Py_ssize_t i = 0; i < hlen; i++) {
        /* eight printable bytes at a time: none below 0x20, none at or above 0x7f */
        while (i + 8 <= hlen) {
            uint64_t x;
            memcpy(&x, d + i, 8);
            const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
            if (((x - ones * 0x20) | (x + ones)) & highs) break;
            i += 8;
        }
        if (i >= hlen) break;
        unsigned char c = (unsigned char)d[i];
        if (c >= 0x20 && c < 0x7f) continue;
        if (c == '\t') continue;
        if (c == '\r' && d[i + 1] == '\n' && i + 2 < hlen && !is_ws(d[i + 2])) {
            if (++crs > MAX_LINES_READ) Py_RETURN_NONE;
            i++;
            continue;
        }
        Py_RETURN_NONE;
    }

    /* --- request line: METHOD SP URI SP SIP/2.0 ------------------------------------- */
    /* Every CR in the head is followed by LF (checked above): a line ends at the next CR. */
    const char *line_end = memchr(d, '\r', (size_t)hlen);
    if (line_end == NULL) Py_RETURN_NONE;  /* no header lines at all: no Via */
    const char *sp1 = memchr(d, ' ', line_end - d);
    if (sp1 == NULL || sp1 == d) Py_RETURN_NONE;
    const char *sp2 = memchr(sp1 + 1, ' ', line_end - sp1 - 1);
    if (sp2 == NULL || sp2 == sp1 + 1) Py_RETURN_NONE;
    if (line_end - sp2 - 1 != 7 || memcmp(sp2 + 1, "SIP/2.0", 7) != 0) Py_RETURN_NONE;
    for (const char *q = d; q < sp1; q++)
        if (!is_token_char((unsigned char)*q)) Py_RETURN_NONE;
    span method = {d, sp1 - d}, ruri = {sp1 + 1, sp2 - sp1 - 1};
    sip_uri ru;
    if (!read_sip_uri(ruri.p, ruri.n, &ru)) Py_RETURN_NONE;

    /* --- header lines ------------------------------------------------------------------ */
    PyObject *lines = PyList_New(0), *vias = PyList_New(0);
    PyObject *req = NULL, *result = NULL;
    span one[N_SLOTS];
    PyObject *one_obj[N_SLOTS];
    int count[N_SLOTS], via_values = 0;
    memset(count, 0, sizeof count);
    memset(one_obj, 0, sizeof one_obj);
    if (lines == NULL || vias == NULL) goto done;
    const char *s = line_end + 2, *hend = d + hlen;
    while (s < hend) {
        const char *e = memchr(s, '\r', (size_t)(hend - s));
        if (e == NULL) e = hend;
        const char *colon = memchr(s, ':', e - s);
        if (colon == NULL) goto fallback;
        int slot = 0;
        PyObject *known = known_name(s, colon - s, &slot);
        if (known == NULL) {
            if (PyErr_Occurred()) goto done;
            goto fallback;
        }
        /* Require and Timestamp: rarely sent, left to Python; an unknown slot too */
        if (slot == S_REQUIRE || slot == S_TIMESTAMP || slot < 0 || slot >= N_SLOTS) {
            Py_DECREF(known);
            goto fallback;
        }
        const char *v = colon + 1, *vend = e;
        while (v < vend && is_ws(*v)) v++;
        while (vend > v && is_ws(vend[-1])) vend--;
        PyObject *value = str_of(v, vend - v);
        if (value == NULL) {
            Py_DECREF(known);
            goto done;
        }
        PyObject *line = PyTuple_New(N_HEADER);
        if (line != NULL) {
            PyTuple_SET_ITEM(line, H_KEY, Py_NewRef(PyTuple_GET_ITEM(known, H_KEY)));
            PyTuple_SET_ITEM(line, H_NAME, Py_NewRef(PyTuple_GET_ITEM(known, H_NAME)));
            PyTuple_SET_ITEM(line, H_VALUE, Py_NewRef(value));
        }
        Py_DECREF(known);
        if (line == NULL || PyList_Append(lines, line) < 0) {
            Py_XDECREF(line);
            Py_DECREF(value);
            goto done;
        }
        Py_DECREF(line);
        if (slot == S_VIA) {
            if (PyList_Append(vias, value) < 0) {
                Py_DECREF(value);
                goto done;
            }
            via_values++;
            for (const char *q = v; (q = memchr(q, ',', (size_t)(vend - q))) != NULL; q++)
                via_values++;
        }
        if (slot != S_OTHER && count[slot]++ == 0) {
            one[slot].p = v;
            one[slot].n = vend - v;
            one_obj[slot] = value;  /* borrowed: ``lines`` holds it */
        }
        Py_DECREF(value);
        s = e + 2;
    }
    if (count[S_VIA] == 0 || via_values > MAX_VIA_VALUES || count[S_FROM] != 1 || count[S_TO] != 1 ||
        count[S_CALL_ID] != 1 || count[S_CSEQ] != 1 || count[S_LENGTH] > 1 ||
        one[S_CALL_ID].n == 0)
        goto fallback;

    top_via via;
    if (!read_via(one[S_VIA].p, one[S_VIA].n, &via)) goto fallback;

    /* CSeq: 1 to CSEQ_DIGITS digits, whitespace, the request's method */
    const char *c = one[S_CSEQ].p, *cend = c + one[S_CSEQ].n;
    long cseq_num = 0;
    const char *digits = c;
    while (c < cend && *c >= '0' && *c <= '9' && c - digits <= CSEQ_DIGITS)
        cseq_num = cseq_num * 10 + (*c++ - '0');
    if (c == digits || c - digits > CSEQ_DIGITS || c == cend || !is_ws(*c)) goto fallback;
    while (c < cend && is_ws(*c)) c++;
    if (cend - c != method.n || memcmp(c, method.p, method.n) != 0) goto fallback;

    span from_uri, from_tag, to_uri, to_tag;
    if (!read_address(one[S_FROM].p, one[S_FROM].n, &from_uri, &from_tag)) goto fallback;
    if (!read_address(one[S_TO].p, one[S_TO].n, &to_uri, &to_tag)) goto fallback;
    if (method.n == 8 && memcmp(method.p, "REGISTER", 8) == 0) {
        /* RFC 3261 §10.2: the To of a REGISTER is a sip/sips AOR (SIP_SCHEMES, ASSUMES) */
        if (!(to_uri.n > 4 && memcmp(to_uri.p, "sip:", 4) == 0) &&
            !(to_uri.n > 5 && memcmp(to_uri.p, "sips:", 5) == 0))
            goto fallback;
    }
    span target = ru.user;
    if (target.n < 0) {  /* no user in the Request-URI: the To URI's (SPEC §3.3) */
        sip_uri tu;
        if (!read_sip_uri(to_uri.p, to_uri.n, &tu)) goto fallback;
        target = tu.user;
    }

    /* Content-Length: one value, digits, no more than the body has */
    const char *body = head_end + 4;
    Py_ssize_t body_len = d + n - body;
    if (count[S_LENGTH] == 1) {
        const char *l = one[S_LENGTH].p;
        Py_ssize_t ln = one[S_LENGTH].n, length = 0;
        if (ln == 0 || ln >= 10) goto fallback;
        for (Py_ssize_t i = 0; i < ln; i++) {
            if (l[i] < '0' || l[i] > '9') goto fallback;
            length = length * 10 + (l[i] - '0');
        }
        if (length > body_len) goto fallback;
        body_len = length;
    }

    /* --- the Request, field by field (its __init__ is Python: this is cheaper) ---------- */
    PyObject *port = via.port >= 0 ? PyLong_FromLong(via.port) : Py_NewRef(Py_None);
    PyObject *branch = via.branch.n >= 0 ? str_of(via.branch.p, via.branch.n)
                                         : Py_NewRef(Py_None);
    PyObject *via_host = str_of(via.host.p, via.host.n);
    /* A TopVia made as tuple.__new__(TopVia, ...) makes it: the subtype's own allocation. */
    PyObject *tv = NULL;
    if (port != NULL && branch != NULL && via_host != NULL &&
        (tv = topvia_type->tp_alloc(topvia_type, N_TOPVIA)) != NULL) {
        PyObject *items[N_TOPVIA];
        items[TV_VALUE] = one_obj[S_VIA];
        items[TV_HOST] = via_host;
        items[TV_PORT] = port;
        items[TV_BRANCH] = branch;
        items[TV_RPORT] = via.rport ? Py_True : Py_False;
        items[TV_RPORT_EMPTY] = via.rport_empty ? Py_True : Py_False;
        items[TV_RECEIVED] = via.received ? Py_True : Py_False;
        for (int i = 0; i < N_TOPVIA; i++) PyTuple_SET_ITEM(tv, i, Py_NewRef(items[i]));
    }
    Py_XDECREF(port);
    Py_XDECREF(branch);
    Py_XDECREF(via_host);
    if (tv == NULL) goto done;

    req = request_type->tp_alloc(request_type, 0);
    if (req == NULL) {
        Py_DECREF(tv);
        goto done;
    }
    if (set_field(req, F_TOP_VIA, tv) < 0 ||
        set_field(req, F_METHOD, method_str(method.p, method.n)) < 0 ||
        set_field(req, F_URI, str_of(ruri.p, ruri.n)) < 0 ||
        set_field(req, F_VERSION, Py_NewRef(sip_version)) < 0 ||
        set_field(req, F_HEADER_LINES, Py_NewRef(lines)) < 0 ||
        set_field(req, F_VIAS, Py_NewRef(vias)) < 0 ||
        set_field(req, F_VIA_REST, Py_NewRef(Py_None)) < 0 ||
        set_field(req, F_FROM, Py_NewRef(one_obj[S_FROM])) < 0 ||
        set_field(req, F_TO, Py_NewRef(one_obj[S_TO])) < 0 ||
        set_field(req, F_CALL_ID, Py_NewRef(one_obj[S_CALL_ID])) < 0 ||
        set_field(req, F_CSEQ, Py_NewRef(one_obj[S_CSEQ])) < 0 ||
        set_field(req, F_CSEQ_NUM, PyLong_FromLong(cseq_num)) < 0 ||
        set_field(req, F_FROM_TAG, opt_str(from_tag)) < 0 ||
        set_field(req, F_TO_TAG, opt_str(to_tag)) < 0 ||
        set_field(req, F_TARGET_USER, opt_str(target)) < 0 ||
        set_field(req, F_FROM_URI, str_of(from_uri.p, from_uri.n)) < 0 ||
        set_field(req, F_TO_URI, str_of(to_uri.p, to_uri.n)) < 0 ||
        set_field(req, F_REQUIRE, Py_NewRef(empty_tuple)) < 0 ||
        set_field(req, F_TIMESTAMP, Py_NewRef(Py_None)) < 0 ||
        set_field(req, F_URI_HOST, str_of(ru.host.p, ru.host.n)) < 0 ||
        set_field(req, F_BODY, PyBytes_FromStringAndSize(body, body_len)) < 0 ||
        set_field(req, F_PROBLEM, Py_NewRef(Py_None)) < 0)
        goto done;
    result = req;
    req = NULL;
    goto done;

fallback:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(req);
    Py_XDECREF(lines);
    Py_XDECREF(vias);
    return result;
}

static PyObject *speedups_configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rt, *tt, *keys, *hk;
    if (!PyArg_ParseTuple(args, "O!O!O!O:configure", &PyType_Type, &rt, &PyType_Type, &tt,
                          &PyDict_Type, &keys, &hk))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)tt, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "configure(): TopVia must be a tuple type");
        return NULL;
    }
    Py_ssize_t offsets[N_FIELDS];
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *descr = PyObject_GetAttrString(rt, FIELD_NAMES[i]);
        if (descr == NULL) return NULL;
        /* __slots__ members holding any object: read and written at their offsets */
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        if (ok) offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);  /* the type (kept below) keeps its members */
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "configure(): %s is not a slot", FIELD_NAMES[i]);
            return NULL;
        }
    }
    memcpy(field_offset, offsets, sizeof offsets);
    Py_XSETREF(request_type, (PyTypeObject *)Py_NewRef(rt));
    Py_XSETREF(topvia_type, (PyTypeObject *)Py_NewRef(tt));
    Py_XSETREF(keys_cache, Py_NewRef(keys));
    Py_XSETREF(header_key, Py_NewRef(hk));
    for (int i = 0; i < NAME_CACHE; i++) Py_CLEAR(name_cache[i].known);
    Py_RETURN_NONE;
}


/* ------------------------------------------------------------------ datagrams in batches */

#define MANY 64
#define DGRAM 65536
static char *rx_buf;  /* MANY * DGRAM, allocated on first use */

/* Host strings by address: the same peer sends many datagrams (IPv4 only; v6 is made). */
#define HOSTS 256
static struct { uint32_t addr; PyObject *host; } host_cache[HOSTS];

static PyObject *ipv4_host(uint32_t addr) {
    unsigned i = (addr ^ (addr >> 8) ^ (addr >> 16) ^ (addr >> 24)) & (HOSTS - 1);
    if (host_cache[i].host != NULL && host_cache[i].addr == addr)
        return Py_NewRef(host_cache[i].host);
    char text[INET_ADDRSTRLEN];
    struct in_addr a = {addr};
    if (inet_ntop(AF_INET, &a, text, sizeof text) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *host = PyUnicode_FromString(text);
    if (host == NULL) return NULL;
    Py_XSETREF(host_cache[i].host, Py_NewRef(host));
    host_cache[i].addr = addr;
    return host;
}

static PyObject *source_of(struct sockaddr_storage *ss) {
    PyObject *host, *port;
    if (ss->ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        host = ipv4_host(sin->sin_addr.s_addr);
        port = host ? PyLong_FromLong(ntohs(sin->sin_port)) : NULL;
    } else if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        char text[INET6_ADDRSTRLEN + 1 + IF_NAMESIZE + 1];
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, text, INET6_ADDRSTRLEN) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (sin6->sin6_scope_id != 0) {
            /* A link-local source keeps its zone, as Python's recvfrom writes it
             * ("fe80::1%eth0", the index when the link has no name): the reply must
             * leave on that link (SPEC §4; dest_of reads it back). */
            size_t at = strlen(text);
            char name[IF_NAMESIZE];
            text[at++] = '%';
            if (if_indextoname(sin6->sin6_scope_id, name) != NULL)
                snprintf(text + at, sizeof text - at, "%s", name);
            else
                snprintf(text + at, sizeof text - at, "%u", (unsigned)sin6->sin6_scope_id);
        }
        host = PyUnicode_FromString(text);
        port = host ? PyLong_FromLong(ntohs(sin6->sin6_port)) : NULL;
    } else {
        PyErr_SetString(PyExc_OSError, "recv_many: not an IP datagram socket");
        return NULL;
    }
    if (port == NULL) {
        Py_XDECREF(host);
        return NULL;
    }
    PyObject *t = PyTuple_Pack(2, host, port);
    Py_DECREF(host);
    Py_DECREF(port);
    return t;
}

/* One recvmmsg of up to MANY datagrams into rx_buf, each with its source address (and, with
 * ``control``, an array of MANY buffers of ``room`` bytes, its control messages): how many
 * came, 0 when none waits, -1 with an exception set. Non-blocking, so the GIL is kept: rx_buf
 * is one buffer for every thread (several servers may run in one process,
 * responder.testing), used only under the GIL. */
/* The MANY headers of one recvmmsg into rx_buf (allocated on first use): each datagram's
 * buffer, source address and, with ``control``, its control-message buffer of ``room``
 * bytes. 0, or -1 with MemoryError set. Shared by recv_batch and the RTP echo's loop. */
static int fill_batch(struct mmsghdr *msgs, struct iovec *iov, struct sockaddr_storage *addrs,
                      void *control, size_t room) {
    if (rx_buf == NULL && (rx_buf = PyMem_RawMalloc((size_t)MANY * DGRAM)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < MANY; i++) {
        iov[i].iov_base = rx_buf + (size_t)i * DGRAM;
        iov[i].iov_len = DGRAM;
        memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
        if (control != NULL) {
            msgs[i].msg_hdr.msg_control = (char *)control + (size_t)i * room;
            msgs[i].msg_hdr.msg_controllen = room;
        }
    }
    return 0;
}

static int recv_batch(int fd, struct mmsghdr *msgs, struct iovec *iov,
                      struct sockaddr_storage *addrs, void *control, size_t room) {
    if (fill_batch(msgs, iov, addrs, control, room) < 0) return -1;
    int got = recvmmsg(fd, msgs, MANY, MSG_DONTWAIT, NULL), err = errno;
    if (got < 0) {
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return 0;
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return got;
}

/* The address a datagram was sent to, from its IP_PKTINFO / IPV6_PKTINFO control message
 * (a socket bound to a wildcard address asked for it): (host, port), None when absent. An
 * IPv6 link-local address keeps its zone, as source_of writes one. */
#define CMSG_ROOM CMSG_SPACE(sizeof(struct in6_pktinfo))

static PyObject *reached_of(struct msghdr *h, long port) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            sin->sin_family = AF_INET;
            sin->sin_addr = info.ipi_addr;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            sin6->sin6_family = AF_INET6;
            sin6->sin6_addr = info.ipi6_addr;
            if (IN6_IS_ADDR_LINKLOCAL(&info.ipi6_addr)) sin6->sin6_scope_id = info.ipi6_ifindex;
        } else {
            continue;
        }
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);  /* same offset */
        return source_of(&ss);
    }
    Py_RETURN_NONE;
}

/* Up to MANY datagrams waiting on ``fd``: [(data, (host, port)), ...], or with ``port`` >= 0
 * (a wildcard-bound socket that asked for IP_PKTINFO) [(data, source, reached), ...] where
 * reached is the address each was sent to, (host, ``port``) or None. */
static PyObject *recv_list(int fd, long port) {
    struct mmsghdr msgs[MANY];
    struct iovec iov[MANY];
    struct sockaddr_storage addrs[MANY];
    union { char buf[CMSG_ROOM]; struct cmsghdr align; } control[MANY];
    int got = recv_batch(fd, msgs, iov, addrs, port >= 0 ? control : NULL, sizeof control[0]);
    if (got <= 0) return got == 0 ? PyList_New(0) : NULL;
    PyObject *out = PyList_New(got);
    if (out == NULL) return NULL;
    for (int i = 0; i < got; i++) {
        PyObject *data = PyBytes_FromStringAndSize(iov[i].iov_base, msgs[i].msg_len);
        PyObject *source = data ? source_of(&addrs[i]) : NULL;
        PyObject *item = NULL;
        if (source != NULL && port < 0) {
            item = PyTuple_Pack(2, data, source);
        } else if (source != NULL) {
            PyObject *reached = reached_of(&msgs[i].msg_hdr, port);
            item = reached ? PyTuple_Pack(3, data, source, reached) : NULL;
            Py_XDECREF(reached);
        }
        Py_XDECREF(data);
        Py_XDECREF(source);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static PyObject *speedups_recv_many(PyObject *self, PyObject *arg) {
    (void)self;
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "recv_many: not a file descriptor");
        return NULL;
    }
    return recv_list((int)fd, -1);
}

/* recv_reached(fd, port): recv_many for a wildcard-bound socket, each datagram with the
 * address it was sent to (``port``: the socket's). responder.io.udp.recv_pktinfo is its
 * pure-Python twin. */
static PyObject *speedups_recv_reached(PyObject *self, PyObject *args) {
    (void)self;
    int fd;
    long port;
    if (!PyArg_ParseTuple(args, "il:recv_reached", &fd, &port)) return NULL;
    if (fd < 0 || port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "recv_reached: a file descriptor and a port");
        return NULL;
    }
    return recv_list(fd, port);
}

/* Destination addresses by host string object: responses go to the source a datagram
 * came from, whose host string recv_many made (and keeps in host_cache). */
#define DESTS 64
static struct {
    PyObject *host;
    int family;
    struct in6_addr addr;
    uint32_t scope;  /* IPv6: the zone of "fe80::1%eth0" (interface index), else 0 */
} dest_cache[DESTS];

/* "fe80::1%eth0" or "fe80::1%2": the address (in ``a``) and the zone's interface index;
 * 0: not an address of ``family``, or a zone no interface has. */
static int read_host(const char *text, int family, struct in6_addr *a, uint32_t *scope) {
    const char *pct = strchr(text, '%');
    *scope = 0;
    if (pct == NULL) return inet_pton(family, text, a) == 1;
    char addr[INET6_ADDRSTRLEN];
    size_t n = (size_t)(pct - text);
    if (family != AF_INET6 || n >= sizeof addr || pct[1] == '\0') return 0;
    memcpy(addr, text, n);
    addr[n] = '\0';
    if (inet_pton(AF_INET6, addr, a) != 1) return 0;
    char *end;
    unsigned long index = strtoul(pct + 1, &end, 10);
    if (*end != '\0' || pct[1] < '0' || pct[1] > '9' || index > UINT32_MAX)
        index = if_nametoindex(pct + 1);
    *scope = (uint32_t)index;
    return index != 0;
}

static int dest_of(PyObject *dest, int family, struct sockaddr_storage *ss, socklen_t *len) {
    if (!PyTuple_Check(dest) || PyTuple_GET_SIZE(dest) < 2) return -1;
    PyObject *host = PyTuple_GET_ITEM(dest, 0);
    long port = PyLong_AsLong(PyTuple_GET_ITEM(dest, 1));
    if (port == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (!PyUnicode_Check(host) || port < 0 || port > 65535) return -1;
    unsigned i = (unsigned)(((uintptr_t)host >> 4) & (DESTS - 1));
    if (dest_cache[i].host != host || dest_cache[i].family != family) {
        const char *text = PyUnicode_AsUTF8(host);
        struct in6_addr a;
        uint32_t scope;
        if (text == NULL) {
            PyErr_Clear();
            return -1;
        }
        if (!read_host(text, family, &a, &scope)) return -1;
        Py_XSETREF(dest_cache[i].host, Py_NewRef(host));
        dest_cache[i].family = family;
        dest_cache[i].addr = a;
        dest_cache[i].scope = scope;
    }
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        memcpy(&sin->sin_addr, &dest_cache[i].addr, sizeof sin->sin_addr);
        *len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sin6->sin6_addr = dest_cache[i].addr;
        sin6->sin6_scope_id = dest_cache[i].scope;
        *len = sizeof *sin6;
    }
    return 0;
}

/* The control message that makes a datagram leave from ``local`` ((host, port), the address
 * its request reached), unless it is a wildcard or not an address of ``family``. */
static void from_local(PyObject *local, int family, struct msghdr *h, char *buf) {
    struct sockaddr_storage ss;
    socklen_t len;
    if (local == Py_None || dest_of(local, family, &ss, &len) < 0) return;
    h->msg_control = buf;
    if (family == AF_INET) {
        struct in_pktinfo info;
        memset(&info, 0, sizeof info);
        info.ipi_spec_dst = ((struct sockaddr_in *)&ss)->sin_addr;
        if (info.ipi_spec_dst.s_addr == htonl(INADDR_ANY)) {
            h->msg_control = NULL;
            return;
        }
        h->msg_controllen = CMSG_SPACE(sizeof info);
        struct cmsghdr *c = CMSG_FIRSTHDR(h);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof info);
        memcpy(CMSG_DATA(c), &info, sizeof info);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        struct in6_pktinfo info;
        memset(&info, 0, sizeof info);
        if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) {
            h->msg_control = NULL;
            return;
        }
        info.ipi6_addr = sin6->sin6_addr;
        info.ipi6_ifindex = sin6->sin6_scope_id;
        h->msg_controllen = CMSG_SPACE(sizeof info);
        struct cmsghdr *c = CMSG_FIRSTHDR(h);
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof info);
        memcpy(CMSG_DATA(c), &info, sizeof info);
    }
}

/* send_many(fd, family, effects, send_type): send each item of type ``send_type`` (the engine's
 * core.effects.Send, a NamedTuple whose positions 0 and 1 -- dest and data -- responder.io.udp
 * checks at load); items of any other type (drops, hand-offs, events) are skipped. Returns
 * how many could not be sent (a full buffer, an unreachable peer, an address it cannot
 * read). */
static PyObject *speedups_send_many(PyObject *self, PyObject *args) {
    (void)self;
    int fd, family, reached = 0;
    PyObject *outs, *send_type;
    if (!PyArg_ParseTuple(args, "iiO!O!|p:send_many", &fd, &family, &PyList_Type, &outs,
                          &PyType_Type, &send_type, &reached))
        return NULL;
    if (family != AF_INET && family != AF_INET6) {
        PyErr_SetString(PyExc_ValueError, "send_many: family is AF_INET or AF_INET6");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(outs), errors = 0, i = 0;
    struct mmsghdr msgs[MANY];
    struct iovec iov[MANY];
    struct sockaddr_storage addrs[MANY];
    union { char buf[CMSG_ROOM]; struct cmsghdr align; } control[MANY];
    PyObject *held[MANY];  /* the data objects of one sendmmsg */
    while (i < n) {
        int k = 0;
        for (; i < n && k < MANY; i++) {
            PyObject *item = PyList_GET_ITEM(outs, i);
            if ((PyObject *)Py_TYPE(item) != send_type) continue;  /* not a Send */
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 2) {
                errors++;
                continue;
            }
            PyObject *data = PyTuple_GET_ITEM(item, 1);
            socklen_t alen;
            if (!PyBytes_Check(data) ||
                dest_of(PyTuple_GET_ITEM(item, 0), family, &addrs[k], &alen) < 0) {
                errors++;
                continue;
            }
            held[k] = Py_NewRef(data);
            iov[k].iov_base = PyBytes_AS_STRING(data);
            iov[k].iov_len = (size_t)PyBytes_GET_SIZE(data);
            memset(&msgs[k].msg_hdr, 0, sizeof msgs[k].msg_hdr);
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
            msgs[k].msg_hdr.msg_name = &addrs[k];
            msgs[k].msg_hdr.msg_namelen = alen;
            if (reached && PyTuple_GET_SIZE(item) > 3)  /* leave from Send.local (pktinfo) */
                from_local(PyTuple_GET_ITEM(item, 3), family, &msgs[k].msg_hdr, control[k].buf);
            k++;
        }
        int done = 0;  /* non-blocking: the GIL is kept */
        while (done < k) {
            int r = sendmmsg(fd, msgs + done, (unsigned)(k - done), MSG_DONTWAIT);
            if (r > 0) {
                done += r;
            } else if (r < 0 && errno == EINTR) {
                continue;
            } else {
                done++;  /* this one failed (UDP: a full buffer or an unreachable peer) */
                errors++;
            }
        }
        for (int j = 0; j < k; j++) Py_DECREF(held[j]);
    }
    return PyLong_FromSsize_t(errors);
}

/* ------------------------------------------------------------------ response heads */

/* respond(req, code, reason, tag, source, record_route, tail) -> bytes | None: the status
 * line, Via (with received/rport as responder.sip.builder.top_via writes them), From, To (and
 * our tag), Call-ID, CSeq (and Record-Route), then ``tail`` -- the bytes responder.sip.builder
 * builds. None for anything but the common case (non-ASCII text, a Timestamp to echo, a
 * sent-by that may be the source address written another way, an odd Via): the caller
 * then builds it in Python. tests/test_speedups.py compares the two. */

#define PIECES 256
typedef struct {
    const char *p[PIECES];
    Py_ssize_t n[PIECES];
    int k, full;
    Py_ssize_t total;
} pieces;

static int put(pieces *ps, const char *p, Py_ssize_t n) {
    if (ps->k == PIECES) {
        ps->full = 1;  /* more pieces than room: the caller falls back */
        return -1;
    }
    ps->p[ps->k] = p;
    ps->n[ps->k++] = n;
    ps->total += n;
    return 0;
}

/* An ASCII str's text, or NULL (not a str, or not ASCII). */
static const char *ascii(PyObject *o, Py_ssize_t *n) {
    if (o == NULL || !PyUnicode_Check(o) || !PyUnicode_IS_ASCII(o)) return NULL;
    *n = PyUnicode_GET_LENGTH(o);
    return (const char *)PyUnicode_DATA(o);
}

static int put_str(pieces *ps, PyObject *o) {
    Py_ssize_t n;
    const char *p = ascii(o, &n);
    return p == NULL ? -1 : put(ps, p, n);
}

/* Text that is an IPv4 or IPv6 address (no scope), as ipaddress.ip_address reads it. */
static int is_ip_address(const char *p, Py_ssize_t n) {
    char text[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    if (n <= 0 || n >= (Py_ssize_t)sizeof text) return 0;
    memcpy(text, p, (size_t)n);
    text[n] = '\0';
    return inet_pton(AF_INET, text, addr) == 1 || inet_pton(AF_INET6, text, addr) == 1;
}

/* Hex digits, dots, colons, brackets, '%': an address possibly written another way. */
static int could_be_ip(const char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') ||
              c == '.' || c == ':' || c == '%' || c == '[' || c == ']'))
            return 0;
    }
    return 1;
}

static PyObject *speedups_respond(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7 || !PyLong_Check(args[1]) || !PyUnicode_Check(args[2]) ||
        !PyTuple_Check(args[4]) || !PyBytes_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "respond(req, code, reason, tag, source, record_route, tail)");
        return NULL;
    }
    PyObject *req = args[0], *reason = args[2], *tag = args[3], *source = args[4],
             *tail = args[6];
    long code = PyLong_AsLong(args[1]);
    int record_route = PyObject_IsTrue(args[5]);
    if ((code == -1 && PyErr_Occurred()) || record_route < 0) return NULL;
    if (request_type == NULL || Py_TYPE(req) != request_type || code < 100 || code > 699 ||
        PyTuple_GET_SIZE(source) < 2)
        Py_RETURN_NONE;
    /* The request's fields, borrowed: it is alive for the call and nothing here runs
     * Python code that could change it. An unset slot: not a Request the parser made. */
    PyObject *f[N_FIELDS];
    for (int i = 0; i < N_FIELDS; i++) {
        f[i] = *(PyObject **)((char *)req + field_offset[i]);
        if (f[i] == NULL) Py_RETURN_NONE;
    }
    PyObject *result = NULL;
    pieces ps;
    ps.k = ps.full = 0;
    ps.total = 0;
    char status[16], port_text[8];
    PyObject *tv = f[F_TOP_VIA];
    if ((code == 100 && f[F_TIMESTAMP] != Py_None) || !PyList_Check(f[F_VIAS]) ||
        !PyTuple_Check(tv) || PyTuple_GET_SIZE(tv) != N_TOPVIA ||
        !PyList_Check(f[F_HEADER_LINES]))
        goto fallback;

    /* the top Via: RFC 3261 §18.2.1 received, RFC 3581 §4 rport. The same rule is written
     * in Python as responder.sip.builder.top_via; this copy only takes its common cases
     * (falling back for a received already there, an rport with a value, an rport not
     * written ";rport" exactly once, a sent-by that may be the source written another way)
     * and tests/test_accel.py compares the two over Hypothesis-made Via parameter lists. */
    Py_ssize_t vn = 0, hn = 0, sn = 0;  /* set by ascii() when it returns text */
    const char *value = ascii(PyTuple_GET_ITEM(tv, TV_VALUE), &vn);
    const char *host = ascii(PyTuple_GET_ITEM(tv, TV_HOST), &hn);
    const char *src = ascii(PyTuple_GET_ITEM(source, 0), &sn);
    long src_port = PyLong_AsLong(PyTuple_GET_ITEM(source, 1));
    if (src_port == -1 && PyErr_Occurred()) {
        PyErr_Clear();  /* not an int: Python builds it (and says what is wrong) */
        goto fallback;
    }
    if (value == NULL || host == NULL || src == NULL || memchr(src, '%', sn) != NULL)
        goto fallback;
    int rport = PyObject_IsTrue(PyTuple_GET_ITEM(tv, TV_RPORT));
    int rport_empty = PyObject_IsTrue(PyTuple_GET_ITEM(tv, TV_RPORT_EMPTY));
    int received = PyObject_IsTrue(PyTuple_GET_ITEM(tv, TV_RECEIVED));
    if (rport < 0 || rport_empty < 0 || received < 0) goto done;
    /* builder.same_host: the same text, or the same address. A bracketed sent-by with the
     * source's text inside ("[2001:db8::1]" from 2001:db8::1) is the same only when that
     * text is an address (same_host compares the two as addresses, a name never matches);
     * anything else that may be an address written another way is left to Python. */
    int same = (hn == sn && memcmp(host, src, sn) == 0) ||
               (hn == sn + 2 && host[0] == '[' && host[hn - 1] == ']' &&
                memcmp(host + 1, src, sn) == 0 && is_ip_address(src, sn));
    if (!same && could_be_ip(host, hn)) goto fallback;
    snprintf(status, sizeof status, "SIP/2.0 %ld ", code);
    snprintf(port_text, sizeof port_text, "%ld", src_port);
    put(&ps, status, (Py_ssize_t)strlen(status));
    if (put_str(&ps, reason) < 0) goto fallback;
    put(&ps, "\r\nVia: ", 7);
    if (!rport && same) {
        put(&ps, value, vn);
    } else if (received) {
        goto fallback;
    } else if (!rport) {
        put(&ps, value, vn);
        put(&ps, ";received=", 10);
        put(&ps, src, sn);
    } else {
        if (!rport_empty) goto fallback;
        const char *at = NULL;
        int count = 0;
        for (Py_ssize_t i = 0; i + 6 <= vn; i++)
            if (memcmp(value + i, ";rport", 6) == 0) {
                count++;
                at = value + i;
            }
        if (count != 1) goto fallback;
        if (at + 6 == value + vn) {
            put(&ps, value, vn);
            put(&ps, "=", 1);
        } else if (at[6] == ';') {
            put(&ps, value, at + 6 - value);
            put(&ps, "=", 1);
            put(&ps, port_text, (Py_ssize_t)strlen(port_text));
            put(&ps, at + 6, value + vn - (at + 6));
            put(&ps, ";received=", 10);
            put(&ps, src, sn);
            goto via_done;
        } else {
            goto fallback;
        }
        put(&ps, port_text, (Py_ssize_t)strlen(port_text));
        put(&ps, ";received=", 10);
        put(&ps, src, sn);
    }
via_done:
    if (f[F_VIA_REST] != Py_None && put_str(&ps, f[F_VIA_REST]) < 0) goto fallback;
    put(&ps, "\r\n", 2);
    for (Py_ssize_t i = 1; i < PyList_GET_SIZE(f[F_VIAS]); i++) {
        put(&ps, "Via: ", 5);
        if (put_str(&ps, PyList_GET_ITEM(f[F_VIAS], i)) < 0) goto fallback;
        put(&ps, "\r\n", 2);
    }
    put(&ps, "From: ", 6);
    if (put_str(&ps, f[F_FROM]) < 0) goto fallback;
    put(&ps, "\r\nTo: ", 6);
    if (put_str(&ps, f[F_TO]) < 0) goto fallback;
    if (code != 100 && f[F_TO_TAG] == Py_None && tag != Py_None) {
        Py_ssize_t tn;
        const char *t = ascii(tag, &tn);
        if (t == NULL) goto fallback;
        if (tn) {
            put(&ps, ";tag=", 5);
            put(&ps, t, tn);
        }
    }
    put(&ps, "\r\nCall-ID: ", 11);
    if (put_str(&ps, f[F_CALL_ID]) < 0) goto fallback;
    put(&ps, "\r\nCSeq: ", 8);
    if (put_str(&ps, f[F_CSEQ]) < 0) goto fallback;
    put(&ps, "\r\n", 2);
    if (record_route) {
        PyObject *lines = f[F_HEADER_LINES];
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines); i++) {
            PyObject *line = PyList_GET_ITEM(lines, i);
            if (!PyTuple_Check(line) || PyTuple_GET_SIZE(line) != N_HEADER) goto fallback;
            PyObject *key = PyTuple_GET_ITEM(line, H_KEY);
            if (!PyUnicode_Check(key) ||
                PyUnicode_CompareWithASCIIString(key, "record-route") != 0)
                continue;
            put(&ps, "Record-Route: ", 14);
            if (put_str(&ps, PyTuple_GET_ITEM(line, H_VALUE)) < 0) goto fallback;
            put(&ps, "\r\n", 2);
        }
    }
    if (put(&ps, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail)) < 0 || ps.full) goto fallback;
    result = PyBytes_FromStringAndSize(NULL, ps.total);
    if (result != NULL) {
        char *out = PyBytes_AS_STRING(result);
        for (int i = 0; i < ps.k; i++) {
            memcpy(out, ps.p[i], (size_t)ps.n[i]);
            out += ps.n[i];
        }
    }
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    return result;
}

/* ------------------------------------------------------------------ To tags (BLAKE2b) */

/* responder.sip.seeded.Seeded.to_tag without the Python calls around hashlib: BLAKE2b
 * (RFC 7693) keyed with the seed's key, person "to-tag", 6 bytes, over
 * "{call_id}\0{from_tag}" (the dialog, SPEC §4), as 12 hex digits. tag_state(key) is the state after
 * the key block (what Seeded keeps); to_tag(state, ...) returns None for non-ASCII text
 * (Seeded encodes that with surrogateescape in Python). tests/test_speedups.py compares
 * it with hashlib. */

static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define B2_G(a, b, c, d, x, y)          \
    do {                                \
        v[a] = v[a] + v[b] + (x);       \
        v[d] = ROTR64(v[d] ^ v[a], 32); \
        v[c] = v[c] + v[d];             \
        v[b] = ROTR64(v[b] ^ v[c], 24); \
        v[a] = v[a] + v[b] + (y);       \
        v[d] = ROTR64(v[d] ^ v[a], 16); \
        v[c] = v[c] + v[d];             \
        v[b] = ROTR64(v[b] ^ v[c], 63); \
    } while (0)

static uint64_t load64(const uint8_t *p) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = (x << 8) | p[i];
    return x;
}

static void b2_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 16; i++) m[i] = load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= t;  /* the counter's high word stays 0: messages here are short */
    if (last) v[14] = ~v[14];
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = B2_SIGMA[r];
        B2_G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        B2_G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        B2_G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        B2_G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        B2_G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        B2_G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        B2_G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        B2_G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

#define TAG_SIZE 6                   /* digest bytes: 12 hex digits */
#define TAG_PERSON "to-tag"          /* the personalisation, zero padded to 16 bytes */

/* tag_state(key) -> bytes: the state after the key block, for to_tag. */
static PyObject *speedups_tag_state(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyBytes_Check(arg) || PyBytes_GET_SIZE(arg) < 1 || PyBytes_GET_SIZE(arg) > 64) {
        PyErr_SetString(PyExc_ValueError, "tag_state: a key of 1 to 64 bytes");
        return NULL;
    }
    Py_ssize_t klen = PyBytes_GET_SIZE(arg);
    uint64_t h[8];
    uint8_t param[64] = {0}, block[128] = {0};
    param[0] = TAG_SIZE;
    param[1] = (uint8_t)klen;
    param[2] = 1;  /* fanout */
    param[3] = 1;  /* depth */
    memcpy(param + 48, TAG_PERSON, sizeof TAG_PERSON - 1);  /* personalisation */
    for (int i = 0; i < 8; i++) h[i] = B2_IV[i] ^ load64(param + 8 * i);
    memcpy(block, PyBytes_AS_STRING(arg), (size_t)klen);
    b2_compress(h, block, 128, 0);
    return PyBytes_FromStringAndSize((const char *)h, sizeof h);
}

static int put_text(uint8_t *buf, Py_ssize_t *len, Py_ssize_t cap, PyObject *o) {
    Py_ssize_t n;
    const char *p;
    if (o == Py_None) {
        p = "None";
        n = 4;
    } else if ((p = ascii(o, &n)) == NULL) {
        return -1;
    }
    if (*len + n > cap) return -1;
    memcpy(buf + *len, p, (size_t)n);
    *len += n;
    return 0;
}

static PyObject *speedups_to_tag(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !PyBytes_Check(args[0]) || PyBytes_GET_SIZE(args[0]) != 64) {
        PyErr_SetString(PyExc_TypeError, "to_tag(state, call_id, from_tag)");
        return NULL;
    }
    uint8_t msg[1024];
    Py_ssize_t n = 0;
    if (put_text(msg, &n, 1023, args[1]) < 0) Py_RETURN_NONE;
    msg[n++] = 0;
    if (put_text(msg, &n, 1024, args[2]) < 0) Py_RETURN_NONE;
    uint64_t h[8];
    memcpy(h, PyBytes_AS_STRING(args[0]), sizeof h);
    uint64_t t = 128;
    Py_ssize_t off = 0;
    uint8_t block[128];
    while (n - off > 128) {  /* every full block but the last */
        t += 128;
        b2_compress(h, msg + off, t, 0);
        off += 128;
    }
    memset(block, 0, sizeof block);
    memcpy(block, msg + off, (size_t)(n - off));
    t += (uint64_t)(n - off);
    b2_compress(h, block, t, 1);
    static const char hex[] = "0123456789abcdef";
    char out[2 * TAG_SIZE];
    for (int i = 0; i < TAG_SIZE; i++) {
        uint8_t b = (uint8_t)(h[i / 8] >> (8 * (i % 8)));
        out[2 * i] = hex[b >> 4];
        out[2 * i + 1] = hex[b & 15];
    }
    return PyUnicode_DecodeASCII(out, sizeof out, NULL);
}

/* ------------------------------------------------------------------ what this file assumes */

/* A str of the bytes 0-255 for which ``test`` holds (each as the character of that code). */
static PyObject *chars_where(int (*test)(unsigned char)) {
    char out[256];
    Py_ssize_t n = 0;
    for (int c = 0; c < 256; c++)
        if (test((unsigned char)c)) out[n++] = (char)c;
    return PyUnicode_DecodeLatin1(out, n, NULL);
}

/* has_scheme() probed: a byte that may start a scheme ("c:"), one that may follow ("ac:"). */
static int scheme_start(unsigned char c) {
    char probe[2] = {(char)c, ':'};
    return has_scheme(probe, 2);
}
static int scheme_next(unsigned char c) {
    char probe[3] = {'a', (char)c, ':'};
    return has_scheme(probe, 3);
}
static int token_char(unsigned char c) { return is_token_char(c); }

/* A tuple of the names, as str. */
static PyObject *names_tuple(const char *const *names, int n) {
    PyObject *t = PyTuple_New(n);
    for (int i = 0; t != NULL && i < n; i++) {
        PyObject *name = PyUnicode_FromString(names[i]);
        if (name == NULL) Py_CLEAR(t);
        else PyTuple_SET_ITEM(t, i, name);
    }
    return t;
}

/* The RTP echo (EchoTable, below) reads packets as responder.core.media does. */
#define RTP_FIXED 12
#define RTCP_FIRST 72   /* RFC 5761 §4: payload types 72-76 are RTCP SR, RR, SDES, BYE, APP */
#define RTCP_LAST 76
#define PAYLOAD_TYPES 128

/* ASSUMES: {"parser": {...}, "to_tag": {...}, "media": {...}}, each a flat dict of what one part of this
 * file takes for granted about the Python side, made from the constants and functions the
 * code itself uses. responder.sip.parser (for parse and respond) and responder.sip.seeded
 * (for to_tag) build the same dicts from what they have; any difference turns that part
 * off. Keys are phrases: they are what the warning names. */
static PyObject *make_assumes(void) {
    PyObject *slots = PyDict_New(), *parser = PyDict_New(), *tag = PyDict_New(), *all = NULL;
    if (slots == NULL || parser == NULL || tag == NULL) goto done;
    for (int i = 1; i < N_SLOTS; i++) {
        PyObject *n = PyLong_FromLong(i);
        if (n == NULL || PyDict_SetItemString(slots, SLOT_NAMES[i], n) < 0) {
            Py_XDECREF(n);
            goto done;
        }
        Py_DECREF(n);
    }
    long largest_cseq = 0;
    for (int i = 0; i < CSEQ_DIGITS; i++) largest_cseq = largest_cseq * 10 + 9;
    PyObject *items[][2] = {
        /* parse() sets these slots, every one, bypassing __init__ (no __post_init__ runs) */
        {PyUnicode_FromString("Request fields"), names_tuple(FIELD_NAMES, N_FIELDS)},
        {PyUnicode_FromString("Request has __post_init__"), Py_NewRef(Py_False)},
        /* a tuple subclass, made with tp_alloc and filled by position */
        {PyUnicode_FromString("TopVia fields"), names_tuple(TOPVIA_NAMES, N_TOPVIA)},
        /* header_lines entries: parse() makes them, respond() reads key and value */
        {PyUnicode_FromString("header line fields"), names_tuple(HEADER_NAMES, N_HEADER)},
        {PyUnicode_FromString("header slots"), Py_NewRef(slots)},
        /* _header_key(name) -> (key, name as written, slot), or None */
        {PyUnicode_FromString("header key of 'Via '"),
         Py_BuildValue("(ssi)", SLOT_NAMES[S_VIA], "Via", S_VIA)},
        {PyUnicode_FromString("header key of 'no name'"), Py_NewRef(Py_None)},
        {PyUnicode_FromString("token characters"), chars_where(token_char)},
        {PyUnicode_FromString("scheme first characters"), chars_where(scheme_start)},
        {PyUnicode_FromString("scheme characters"), chars_where(scheme_next)},
        /* every CSeq of CSEQ_DIGITS digits is within MAX_CSEQ */
        {PyUnicode_FromString("largest CSeq read"), PyLong_FromLong(largest_cseq)},
        {PyUnicode_FromString("REGISTER To schemes"), Py_BuildValue("(ss)", "sip", "sips")},
        /* caps: a request within these is within every per-message cap */
        {PyUnicode_FromString("most header lines read"), PyLong_FromLong(MAX_LINES_READ)},
        {PyUnicode_FromString("most Via values read"), PyLong_FromLong(MAX_VIA_VALUES)},
    };
    PyObject *tag_items[][2] = {
        {PyUnicode_FromString("digest size"), PyLong_FromLong(TAG_SIZE)},
        {PyUnicode_FromString("person"), PyBytes_FromString(TAG_PERSON)},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        ok = ok && items[i][0] != NULL && items[i][1] != NULL &&
             PyDict_SetItem(parser, items[i][0], items[i][1]) == 0;
        Py_XDECREF(items[i][0]);
        Py_XDECREF(items[i][1]);
    }
    for (size_t i = 0; i < sizeof tag_items / sizeof tag_items[0]; i++) {
        ok = ok && tag_items[i][0] != NULL && tag_items[i][1] != NULL &&
             PyDict_SetItem(tag, tag_items[i][0], tag_items[i][1]) == 0;
        Py_XDECREF(tag_items[i][0]);
        Py_XDECREF(tag_items[i][1]);
    }
    /* the RTP echo (EchoTable): what responder.core.media.Media.packet reads the same way */
    PyObject *media = Py_BuildValue("{sisisis(ii)}", "RTP version", 2,
                                    "fixed RTP header", RTP_FIXED,
                                    "payload types", PAYLOAD_TYPES,
                                    "RTCP payload types", RTCP_FIRST, RTCP_LAST);
    if (ok && media != NULL)
        all = Py_BuildValue("{sOsOsO}", "parser", parser, "to_tag", tag, "media", media);
    Py_XDECREF(media);
done:
    Py_XDECREF(slots);
    Py_XDECREF(parser);
    Py_XDECREF(tag);
    return all;
}

/* ------------------------------------------------------------------ the RTP echo */

/* EchoTable(calls, sources, key): the hot part of responder.core.media.Media, in C.
 *
 * Media (Python) decides everything and keeps this table in step with its own: which
 * source address is which call's (a copy of Media._by_source), per call whether the call
 * echoes (mode echo) and which payload types need no Python (seen already, not RTCP, not
 * the call's telephone-event). echo(fd, now, budget) then reads datagrams in batches
 * (recvmmsg), and for each one from a known source, RTP version 2, at least the fixed
 * header, of such a payload type: counts it on its call (packets, bytes, first and last
 * arrival), and in mode echo replaces its SSRC by SSRC XOR key in place and sends it back
 * to its source (sendmmsg, straight from the receive buffer). Every other datagram --
 * unknown source, RTCP, DTMF, a payload type not seen yet, not RTP -- is returned to
 * Python, which handles it exactly as without this table (Media.packet). take(slot) hands
 * the counts to Python (Media.facts adds them to the call's). feed(packets, now) is the
 * same without a socket, for the differential tests (tests/test_media_accel.py).
 *
 * On a socket bound to a wildcard address (echo_reached: the socket asked for IP_PKTINFO /
 * IPV6_RECVPKTINFO), each echo leaves from the address its packet was sent to
 * (sendmmsg with an IP_PKTINFO / IPV6_PKTINFO control message made from the one the packet
 * came with), so a phone that connect()s its RTP socket, or drops what does not come from
 * the address it sends to, gets it; the packets for Python carry that address too.
 *
 * Bounded: ``calls`` slots (Media's call limit) and ``sources`` addresses (calls x 4) in
 * an open-addressing table of at least 1.5 x sources buckets (linear probing, keyed hash,
 * deletion by backward shift: no tombstones). */


typedef struct {
    unsigned long long packets_in, bytes_in, packets_out, bytes_out;
    double first, last;
    uint8_t seen;                     /* first and last are set */
    uint8_t echo;                     /* mode echo: send each packet back */
    uint8_t fast[PAYLOAD_TYPES / 8];  /* payload types counted here, a bit each */
} echo_call;

typedef struct {
    int32_t call;      /* the call's slot; -1: an empty bucket */
    uint16_t port;     /* host order */
    uint8_t v6;
    uint8_t addr[16];  /* IPv4: the first 4 bytes, the rest zero */
} echo_source;

typedef struct {
    PyObject_HEAD
    uint8_t key[4];
    uint64_t seed;
    Py_ssize_t ncalls, max_sources, nsources;
    size_t mask;
    echo_call *calls;
    echo_source *buckets;
    unsigned long long packets, sent, send_errors;
} EchoTable;

static uint64_t source_hash(const EchoTable *t, const echo_source *k) {
    uint64_t h = t->seed ^ ((uint64_t)k->port << 8) ^ k->v6;
    for (int i = 0; i < 16; i += 8) {
        uint64_t w;
        memcpy(&w, k->addr + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    h *= 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 32);
}

static int same_source(const echo_source *a, const echo_source *b) {
    return a->port == b->port && a->v6 == b->v6 && memcmp(a->addr, b->addr, 16) == 0;
}

/* The bucket holding ``k`` (whose hash is ``h``), or -1. */
static Py_ssize_t find_hashed(const EchoTable *t, const echo_source *k, uint64_t h) {
    if (t->buckets == NULL) return -1;
    size_t i = (size_t)h & t->mask;
    for (;;) {
        const echo_source *b = &t->buckets[i];
        if (b->call < 0) return -1;
        if (same_source(b, k)) return (Py_ssize_t)i;
        i = (i + 1) & t->mask;
    }
}

static Py_ssize_t find_source(const EchoTable *t, const echo_source *k) {
    return find_hashed(t, k, source_hash(t, k));
}

static void delete_bucket(EchoTable *t, size_t i) {
    size_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        if (t->buckets[j].call < 0) break;
        size_t h = (size_t)source_hash(t, &t->buckets[j]) & t->mask;
        /* the entry at j may move to i unless its home h lies cyclically in (i, j] */
        if (i <= j ? (i < h && h <= j) : (i < h || h <= j)) continue;
        t->buckets[i] = t->buckets[j];
        i = j;
    }
    t->buckets[i].call = -1;
    t->nsources--;
}

/* The key of a datagram's source; 0: not one this table holds (an IPv6 source with a zone
 * is never indexed: its host string, "fe80::1%eth0", is Python's business). */
static int source_key(const struct sockaddr_storage *ss, echo_source *k) {
    memset(k, 0, sizeof *k);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        k->port = ntohs(sin->sin_port);
        memcpy(k->addr, &sin->sin_addr, 4);
        return 1;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        if (sin6->sin6_scope_id != 0) return 0;
        k->v6 = 1;
        k->port = ntohs(sin6->sin6_port);
        memcpy(k->addr, &sin6->sin6_addr, 16);
        return 1;
    }
    return 0;
}

/* The key of a (host, port) Python address; 0 when the host is not written exactly as
 * recv_many writes a source (inet_ntop's form, no zone): Python's table tells such
 * strings apart, so this one must not merge them (the datagram then goes to Python). */
static int address_key(PyObject *addr, echo_source *k) {
    if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2) return 0;
    PyObject *host = PyTuple_GET_ITEM(addr, 0), *port = PyTuple_GET_ITEM(addr, 1);
    if (!PyUnicode_Check(host) || !PyLong_Check(port)) return 0;
    long p = PyLong_AsLong(port);
    if (p < 0 || p > 65535) {
        PyErr_Clear();
        return 0;
    }
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL) {
        PyErr_Clear();
        return 0;
    }
    int family = strchr(text, ':') != NULL ? AF_INET6 : AF_INET;
    uint8_t a[16];
    char back[INET6_ADDRSTRLEN];
    if (strchr(text, '%') != NULL || inet_pton(family, text, a) != 1 ||
        inet_ntop(family, a, back, sizeof back) == NULL || strcmp(back, text) != 0)
        return 0;
    memset(k, 0, sizeof *k);
    k->v6 = family == AF_INET6;
    k->port = (uint16_t)p;
    memcpy(k->addr, a, family == AF_INET6 ? 16 : 4);
    return 1;
}

/* One datagram from ``k`` (hashed: ``h``): 1 when it is counted here (*echo: send it
 * back, its SSRC already changed in ``data``), 0 when it is for Python. */
static int echo_one(EchoTable *t, const echo_source *k, uint64_t h, uint8_t *data,
                    Py_ssize_t n, double now, int *echo) {
    *echo = 0;
    if (n < RTP_FIXED || (data[0] & 0xC0) != 0x80) return 0;
    Py_ssize_t at = find_hashed(t, k, h);
    if (at < 0) return 0;
    echo_call *c = &t->calls[t->buckets[at].call];
    unsigned pt = data[1] & 0x7F;
    if (!(c->fast[pt >> 3] & (1u << (pt & 7)))) return 0;
    t->packets++;
    c->packets_in++;
    c->bytes_in += (unsigned long long)n;
    if (!c->seen) {
        c->seen = 1;
        c->first = now;
    }
    c->last = now;
    if (c->echo) {
        c->packets_out++;
        c->bytes_out += (unsigned long long)n;
        t->sent++;
        for (int i = 0; i < 4; i++) data[8 + i] ^= t->key[i];
        *echo = 1;
    }
    return 1;
}

static PyObject *echo_table_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Py_ssize_t ncalls, max_sources;
    unsigned long long key;
    static char *kwlist[] = {"calls", "sources", "key", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nnK:EchoTable", kwlist, &ncalls,
                                     &max_sources, &key))
        return NULL;
    if (ncalls < 1 || max_sources < 1 || ncalls > (1 << 24) || max_sources > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "EchoTable: calls and sources are 1 to 2**24");
        return NULL;
    }
    size_t buckets = 16;
    while (buckets < (size_t)max_sources + (size_t)max_sources / 2) buckets <<= 1;
    EchoTable *t = (EchoTable *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    /* zeroed pages, touched as calls come; the buckets on the first address indexed */
    t->calls = PyMem_Calloc((size_t)ncalls, sizeof(echo_call));
    if (t->calls == NULL) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    for (int i = 0; i < 4; i++) t->key[i] = (uint8_t)(key >> (24 - 8 * i));
    t->seed = (key * 0xD6E8FEB86659FD93ULL) ^ 0x243F6A8885A308D3ULL;
    t->ncalls = ncalls;
    t->max_sources = max_sources;
    t->mask = buckets - 1;
    return (PyObject *)t;
}

static void echo_table_dealloc(EchoTable *t) {
    PyMem_Free(t->calls);
    PyMem_Free(t->buckets);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static int slot_of(EchoTable *t, PyObject *o, Py_ssize_t *slot) {
    *slot = PyLong_AsSsize_t(o);
    if (*slot == -1 && PyErr_Occurred()) return -1;
    if (*slot < 0 || *slot >= t->ncalls) {
        PyErr_SetString(PyExc_IndexError, "EchoTable: no such call slot");
        return -1;
    }
    return 0;
}

static PyObject *echo_table_set_call(EchoTable *t, PyObject *args) {
    PyObject *o;
    int echo;
    Py_buffer fast;
    Py_ssize_t slot;
    if (!PyArg_ParseTuple(args, "Opy*:set_call", &o, &echo, &fast)) return NULL;
    if (slot_of(t, o, &slot) < 0 || fast.len != PAYLOAD_TYPES) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "set_call: one byte per payload type (128)");
        PyBuffer_Release(&fast);
        return NULL;
    }
    echo_call *c = &t->calls[slot];
    c->echo = (uint8_t)(echo != 0);
    memset(c->fast, 0, sizeof c->fast);
    const uint8_t *f = fast.buf;
    for (unsigned pt = 0; pt < PAYLOAD_TYPES; pt++)
        if (f[pt] && (pt < RTCP_FIRST || pt > RTCP_LAST)) c->fast[pt >> 3] |= (uint8_t)(1u << (pt & 7));
    PyBuffer_Release(&fast);
    Py_RETURN_NONE;
}

static PyObject *echo_table_reset(EchoTable *t, PyObject *o) {
    Py_ssize_t slot;
    if (slot_of(t, o, &slot) < 0) return NULL;
    memset(&t->calls[slot], 0, sizeof(echo_call));
    Py_RETURN_NONE;
}

static PyObject *echo_table_take(EchoTable *t, PyObject *o) {
    Py_ssize_t slot;
    if (slot_of(t, o, &slot) < 0) return NULL;
    echo_call *c = &t->calls[slot];
    PyObject *r;
    if (c->seen)
        r = Py_BuildValue("(KKKKdd)", c->packets_in, c->bytes_in, c->packets_out,
                          c->bytes_out, c->first, c->last);
    else
        r = Py_BuildValue("(KKKKOO)", c->packets_in, c->bytes_in, c->packets_out,
                          c->bytes_out, Py_None, Py_None);
    if (r != NULL) {
        c->packets_in = c->bytes_in = c->packets_out = c->bytes_out = 0;
        c->seen = 0;
    }
    return r;
}

/* Every bucket empty (call -1: all bits set). */
static void empty_buckets(EchoTable *t) {
    memset(t->buckets, 0xFF, (t->mask + 1) * sizeof(echo_source));
}

static PyObject *echo_table_add_source(EchoTable *t, PyObject *args) {
    PyObject *addr, *o;
    Py_ssize_t slot;
    echo_source k;
    if (!PyArg_ParseTuple(args, "OO:add_source", &addr, &o) || slot_of(t, o, &slot) < 0)
        return NULL;
    if (!address_key(addr, &k)) Py_RETURN_FALSE;
    if (t->buckets == NULL) {
        if ((t->buckets = PyMem_Malloc((t->mask + 1) * sizeof(echo_source))) == NULL)
            return PyErr_NoMemory();
        empty_buckets(t);
    }
    Py_ssize_t at = find_source(t, &k);
    if (at < 0) {
        if (t->nsources >= t->max_sources) Py_RETURN_FALSE;
        size_t i = (size_t)source_hash(t, &k) & t->mask;
        while (t->buckets[i].call >= 0) i = (i + 1) & t->mask;
        at = (Py_ssize_t)i;
        t->buckets[at] = k;
        t->nsources++;
    }
    t->buckets[at].call = (int32_t)slot;
    Py_RETURN_TRUE;
}

static PyObject *echo_table_remove_source(EchoTable *t, PyObject *args) {
    PyObject *addr, *o;
    Py_ssize_t slot;
    echo_source k;
    if (!PyArg_ParseTuple(args, "OO:remove_source", &addr, &o) || slot_of(t, o, &slot) < 0)
        return NULL;
    if (!address_key(addr, &k)) Py_RETURN_FALSE;
    Py_ssize_t at = find_source(t, &k);
    if (at < 0 || t->buckets[at].call != slot) Py_RETURN_FALSE;
    delete_bucket(t, (size_t)at);
    Py_RETURN_TRUE;
}

static PyObject *echo_table_clear(EchoTable *t, PyObject *unused) {
    (void)unused;
    /* the call slots are zeroed as they are reused (reset) */
    if (t->buckets != NULL && t->nsources > 0) empty_buckets(t);
    t->nsources = 0;
    Py_RETURN_NONE;
}

static PyObject *echo_table_feed(EchoTable *t, PyObject *args) {
    PyObject *packets;
    double now;
    if (!PyArg_ParseTuple(args, "O!d:feed", &PyList_Type, &packets, &now)) return NULL;
    PyObject *echoes = PyList_New(0), *rest = PyList_New(0);
    if (echoes == NULL || rest == NULL) goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(packets); i++) {
        PyObject *item = PyList_GET_ITEM(packets, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 2 || PyTuple_GET_SIZE(item) > 3 ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_TypeError,
                            "feed: a list of (bytes, (host, port)[, (host, port) | None])");
            goto fail;
        }
        PyObject *data = PyTuple_GET_ITEM(item, 0), *source = PyTuple_GET_ITEM(item, 1);
        PyObject *local = PyTuple_GET_SIZE(item) == 3 ? PyTuple_GET_ITEM(item, 2) : Py_None;
        echo_source k;
        int echo = 0, done = 0;
        PyObject *copy = NULL;
        if (address_key(source, &k)) {
            copy = PyBytes_FromStringAndSize(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
            if (copy == NULL) goto fail;
            done = echo_one(t, &k, source_hash(t, &k), (uint8_t *)PyBytes_AS_STRING(copy),
                            PyBytes_GET_SIZE(copy), now, &echo);
        }
        int bad = 0;
        if (echo) {
            PyObject *echoed = PyTuple_Pack(3, source, copy, local);
            bad = echoed == NULL || PyList_Append(echoes, echoed) < 0;
            Py_XDECREF(echoed);
        } else if (!done) {
            bad = PyList_Append(rest, item) < 0;
        }
        Py_XDECREF(copy);
        if (bad) goto fail;
    }
    PyObject *r = PyTuple_Pack(2, echoes, rest);
    Py_DECREF(echoes);
    Py_DECREF(rest);
    return r;
fail:
    Py_XDECREF(echoes);
    Py_XDECREF(rest);
    return NULL;
}

/* The control message that makes an echo leave from the address its packet was sent to,
 * written to ``buf`` (CMSG_ROOM bytes, aligned) from the IP_PKTINFO / IPV6_PKTINFO message
 * the packet came with: IPv4 with interface 0 (the route picks it), IPv6 with the packet's
 * interface for a link-local address (its zone) and 0 otherwise -- the address
 * reached_of names, so the echoes made here and those Python makes leave from the same
 * one. Its length; 0: the packet came without one (the kernel then picks). */
static size_t echo_pktinfo(struct msghdr *in, char *buf) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(in); c != NULL; c = CMSG_NXTHDR(in, c)) {
        struct cmsghdr *o = (struct cmsghdr *)buf;
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
            struct in_pktinfo got, info;
            memcpy(&got, CMSG_DATA(c), sizeof got);
            memset(&info, 0, sizeof info);
            info.ipi_spec_dst = got.ipi_addr;
            o->cmsg_level = IPPROTO_IP;
            o->cmsg_type = IP_PKTINFO;
            o->cmsg_len = CMSG_LEN(sizeof info);
            memcpy(CMSG_DATA(o), &info, sizeof info);
            return CMSG_SPACE(sizeof info);
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            if (!IN6_IS_ADDR_LINKLOCAL(&info.ipi6_addr)) info.ipi6_ifindex = 0;
            o->cmsg_level = IPPROTO_IPV6;
            o->cmsg_type = IPV6_PKTINFO;
            o->cmsg_len = CMSG_LEN(sizeof info);
            memcpy(CMSG_DATA(o), &info, sizeof info);
            return CMSG_SPACE(sizeof info);
        }
    }
    return 0;
}

/* echo(fd, now, budget) -> (read, rest): up to ``budget`` datagrams (rounded up to whole
 * batches of MANY) read, counted and echoed here; ``rest``: [(data, (host, port)), ...]
 * the ones for Python, in arrival order. echo_reached(fd, now, budget, port): the same for
 * a socket bound to a wildcard address on ``port`` that asked for IP_PKTINFO: each echo
 * leaves from the address its packet reached, and ``rest`` is [(data, source, (host, port)
 * | None), ...] with that address (as recv_reached gives it). ``port`` -1: echo. */
static PyObject *echo_run(EchoTable *t, int fd, double now, Py_ssize_t budget, long port) {
    int reached = port >= 0;
    PyObject *rest = PyList_New(0);
    if (rest == NULL) return NULL;
    struct mmsghdr msgs[MANY], out[MANY];
    struct iovec iov[MANY], oiov[MANY];
    struct sockaddr_storage addrs[MANY];
    echo_source keys[MANY];
    uint64_t hashes[MANY];
    int known[MANY];
    /* reached: each packet's control message in, each echo's out */
    union { char buf[CMSG_ROOM]; struct cmsghdr align; } cin[MANY], cout[MANY];
    Py_ssize_t read = 0;
    int rounds = 0;
    while (read < budget && rounds++ <= budget / MANY) {
        if (fill_batch(msgs, iov, addrs, reached ? (void *)cin : NULL, sizeof cin[0]) < 0) {
            Py_DECREF(rest);
            return NULL;
        }
        int got = recvmmsg(fd, msgs, MANY, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR || errno == ECONNREFUSED || errno == EHOSTUNREACH ||
                errno == ENETUNREACH)
                continue;  /* an ICMP error reported on this socket: read on */
            Py_DECREF(rest);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        read += got;
        /* The keys first, their buckets fetched into the cache meanwhile: a lookup is
         * otherwise mostly a wait for memory (the kernel's work in between evicts it). */
        for (int i = 0; i < got; i++) {
            known[i] = source_key(&addrs[i], &keys[i]);
            if (known[i]) {
                hashes[i] = source_hash(t, &keys[i]);
                __builtin_prefetch(&t->buckets[hashes[i] & t->mask]);
            }
        }
        int k = 0;
        for (int i = 0; i < got; i++) {
            int echo = 0;
            uint8_t *data = (uint8_t *)iov[i].iov_base;
            Py_ssize_t n = (Py_ssize_t)msgs[i].msg_len;
            if (known[i] && echo_one(t, &keys[i], hashes[i], data, n, now, &echo)) {
                if (!echo) continue;
                oiov[k].iov_base = data;
                oiov[k].iov_len = (size_t)n;
                memset(&out[k].msg_hdr, 0, sizeof out[k].msg_hdr);
                out[k].msg_hdr.msg_iov = &oiov[k];
                out[k].msg_hdr.msg_iovlen = 1;
                out[k].msg_hdr.msg_name = &addrs[i];
                out[k].msg_hdr.msg_namelen = msgs[i].msg_hdr.msg_namelen;
                if (reached) {
                    size_t len = echo_pktinfo(&msgs[i].msg_hdr, cout[k].buf);
                    if (len > 0) {
                        out[k].msg_hdr.msg_control = cout[k].buf;
                        out[k].msg_hdr.msg_controllen = len;
                    }
                }
                k++;
                continue;
            }
            PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, n);
            PyObject *source = bytes ? source_of(&addrs[i]) : NULL;
            PyObject *to = source && reached ? reached_of(&msgs[i].msg_hdr, port) : NULL;
            PyObject *pair = !source ? NULL
                             : !reached ? PyTuple_Pack(2, bytes, source)
                             : to ? PyTuple_Pack(3, bytes, source, to) : NULL;
            Py_XDECREF(bytes);
            Py_XDECREF(source);
            Py_XDECREF(to);
            if (pair == NULL || PyList_Append(rest, pair) < 0) {
                Py_XDECREF(pair);
                Py_DECREF(rest);
                return NULL;  /* the echoes of this batch are not sent: out of memory */
            }
            Py_DECREF(pair);
        }
        int done = 0;  /* non-blocking: the GIL is kept (rx_buf is shared) */
        while (done < k) {
            int r = sendmmsg(fd, out + done, (unsigned)(k - done), MSG_DONTWAIT);
            if (r > 0) {
                done += r;
            } else if (r < 0 && errno == EINTR) {
                continue;
            } else {
                done++;  /* this one failed (UDP: a full buffer or an unreachable peer) */
                t->send_errors++;
            }
        }
        if (got < MANY) break;
    }
    PyObject *r = Py_BuildValue("(nN)", read, rest);
    return r;
}

static PyObject *echo_table_echo(EchoTable *t, PyObject *args) {
    int fd;
    double now;
    Py_ssize_t budget;
    if (!PyArg_ParseTuple(args, "idn:echo", &fd, &now, &budget)) return NULL;
    return echo_run(t, fd, now, budget, -1);
}

static PyObject *echo_table_echo_reached(EchoTable *t, PyObject *args) {
    int fd;
    double now;
    Py_ssize_t budget;
    long port;
    if (!PyArg_ParseTuple(args, "idnl:echo_reached", &fd, &now, &budget, &port)) return NULL;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "echo_reached: port is 0 to 65535");
        return NULL;
    }
    return echo_run(t, fd, now, budget, port);
}

static PyMethodDef echo_table_methods[] = {
    {"set_call", (PyCFunction)echo_table_set_call, METH_VARARGS,
     "set_call(slot, echo, fast): whether the call echoes, and its payload types counted "
     "here (128 bytes, non-zero: yes; RTCP's 72-76 never)."},
    {"reset", (PyCFunction)echo_table_reset, METH_O,
     "reset(slot): the slot's counts and settings zeroed (a new call)."},
    {"take", (PyCFunction)echo_table_take, METH_O,
     "take(slot) -> (packets_in, bytes_in, packets_out, bytes_out, first, last): the counts "
     "since the last take, zeroed (first and last None when no packet was counted)."},
    {"add_source", (PyCFunction)echo_table_add_source, METH_VARARGS,
     "add_source((host, port), slot) -> bool: datagrams from there are the slot's call; "
     "False: not indexed (a host not in inet_ntop's form, a zone, the table full)."},
    {"remove_source", (PyCFunction)echo_table_remove_source, METH_VARARGS,
     "remove_source((host, port), slot) -> bool: forgotten if it was the slot's."},
    {"clear", (PyCFunction)echo_table_clear, METH_NOARGS, "clear(): no calls, no sources."},
    {"feed", (PyCFunction)echo_table_feed, METH_VARARGS,
     "feed([(data, (host, port)[, local]), ...], now) -> (echoes, rest): echo() without a "
     "socket; echoes [((host, port), data, local or None), ...]."},
    {"echo", (PyCFunction)echo_table_echo, METH_VARARGS,
     "echo(fd, now, budget) -> (read, rest): datagrams read from the non-blocking socket, "
     "counted and echoed here; rest: [(data, (host, port)), ...] for Python."},
    {"echo_reached", (PyCFunction)echo_table_echo_reached, METH_VARARGS,
     "echo_reached(fd, now, budget, port) -> (read, rest): echo() for a socket bound to a "
     "wildcard address on port (IP_PKTINFO asked): each echo leaves from the address its "
     "packet reached; rest: [(data, (host, port), (host, port) | None), ...] with it."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef echo_table_members[] = {
    {"packets", T_ULONGLONG, offsetof(EchoTable, packets), READONLY,
     "datagrams counted here"},
    {"sent", T_ULONGLONG, offsetof(EchoTable, sent), READONLY, "echoes sent from here"},
    {"send_errors", T_ULONGLONG, offsetof(EchoTable, send_errors), READONLY,
     "echoes the socket refused"},
    {"sources", T_PYSSIZET, offsetof(EchoTable, nsources), READONLY, "addresses indexed"},
    {"calls", T_PYSSIZET, offsetof(EchoTable, ncalls), READONLY, "call slots"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject EchoTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "responder._accel._speedups.EchoTable",
    .tp_basicsize = sizeof(EchoTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The RTP echo's hot loop: a copy of the media table's source index and counts.",
    .tp_new = echo_table_new,
    .tp_dealloc = (destructor)echo_table_dealloc,
    .tp_methods = echo_table_methods,
    .tp_members = echo_table_members,
};

static PyMethodDef methods[] = {
    {"parse", speedups_parse, METH_O,
     "parse(data) -> Request | None: the common well-formed request, or None (use the "
     "Python parser)."},
    {"configure", speedups_configure, METH_VARARGS,
     "configure(Request, TopVia, keys, header_key): the types and name cache to use (after "
     "comparing ASSUMES with them: responder.sip.parser does)."},
    {"respond", (PyCFunction)(void (*)(void))speedups_respond, METH_FASTCALL,
     "respond(req, code, reason, tag, source, record_route, tail) -> bytes | None: the "
     "response with its head copied from the request, or None (build it in Python)."},
    {"tag_state", speedups_tag_state, METH_O,
     "tag_state(key) -> bytes: the keyed BLAKE2b state To tags start from."},
    {"to_tag", (PyCFunction)(void (*)(void))speedups_to_tag, METH_FASTCALL,
     "to_tag(state, call_id, from_tag) -> str | None: Seeded.to_tag's value, or "
     "None for non-ASCII text."},
    {"recv_many", speedups_recv_many, METH_O,
     "recv_many(fd) -> [(data, (host, port)), ...]: up to 64 datagrams waiting on a "
     "non-blocking UDP socket, [] when none is."},
    {"send_many", speedups_send_many, METH_VARARGS,
     "send_many(fd, family, effects, send_type, reached=False) -> int: send each send_type "
     "item's data to its dest (from its local address, position 3, when reached), skip the "
     "rest; returns how many could not be sent."},
    {"recv_reached", speedups_recv_reached, METH_VARARGS,
     "recv_reached(fd, port) -> [(data, (host, port), (host, port) | None), ...]: recv_many "
     "with the address each datagram was sent to (IP_PKTINFO), for a wildcard socket."},
    {"frame", (PyCFunction)(void (*)(void))speedups_frame, METH_FASTCALL,
     "frame(buf, pos, crlfs, ping) -> (frames, pos, crlfs): Framer.feed's hot case from pos "
     "between messages: whole messages and pings, up to where Python must go on "
     "(responder/_accel/_framing.h)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "responder._accel._speedups",
    "Compiled primitives with pure-Python twins (see responder/_accel/_speedups.c).", -1,
    methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    sip_version = PyUnicode_InternFromString("SIP/2.0");
    empty_tuple = PyTuple_New(0);
    if (sip_version == NULL || empty_tuple == NULL) return NULL;
    PyObject *m = PyModule_Create(&module);
    PyObject *assumes = m != NULL ? make_assumes() : NULL;
    if (assumes == NULL || PyModule_AddObject(m, "ASSUMES", assumes) < 0) {
        Py_XDECREF(assumes);
        Py_XDECREF(m);
        return NULL;
    }
    if (PyType_Ready(&EchoTableType) < 0 ||
        PyModule_AddObjectRef(m, "EchoTable", (PyObject *)&EchoTableType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
