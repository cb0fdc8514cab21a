/* responder._accel._speedups.frame: the hot case of responder.sip.framing.Framer.feed in one
 * C call (issue 14). Included from _speedups.c; its pure-Python twin is Framer.feed, which
 * stays the reference (tests/test_framing_accel.py holds the two to the same frames).
 *
 * frame(buf, pos, crlfs, ping) -> (frames, pos, crlfs)
 *
 * ``buf`` (bytes or bytearray; any other type is handed back whole) is read from ``pos``, a point between messages, with ``crlfs``
 * line ends already seen there (0 or 1). Line ends are skipped, each second one a ``ping``
 * (RFC 5626); each whole message -- its header section ends at the first empty line, CRLF or
 * LF line ends alike, and exactly one Content-Length value (``l`` its compact form, any
 * case, every occurrence the same once stripped of spaces and tabs), digits, at most six,
 * the message within MAX_MESSAGE -- becomes one bytes object. It stops, returning where,
 * at the end of ``buf`` or before anything else: a message not whole yet, a lone CR at the
 * end, a CR not followed by LF, a Content-Length that is missing, conflicting, not digits or
 * too large. ``pos`` is then a point between messages again: Framer.feed goes on from there
 * in Python, which owns every error and every partial message. So this code never decides
 * that input is bad; it frames only what is plainly good, exactly as Framer.feed does.
 */
#ifndef SIP_RESPONDER_FRAMING_H
#define SIP_RESPONDER_FRAMING_H

/* responder.sip.framing.MAX_MESSAGE: framing.py probes the bound before it uses frame() */
#define FRAME_MAX_MESSAGE 65535

static inline unsigned char frame_lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Whether a Content-Length line (the regular expression framing._LENGTH without its
 * leading "\n") starts at p, before end: "content-length" or "l", any case, then spaces or
 * tabs, then ":". *value is then where its value begins. */
static int frame_length_name(const unsigned char *p, const unsigned char *end,
                             const unsigned char **value) {
    static const char NAME[] = "content-length";
    const Py_ssize_t n = (Py_ssize_t)(sizeof(NAME) - 1);
    const unsigned char *q = NULL;
    if (end - p >= n) {
        Py_ssize_t i = 0;
        while (i < n && frame_lower(p[i]) == (unsigned char)NAME[i]) i++;
        if (i == n) q = p + n;
    }
    if (q == NULL) {
        if (p < end && frame_lower(*p) == 'l') q = p + 1;
        else return 0;
    }
    while (q < end && (*q == ' ' || *q == '\t')) q++;
    if (q < end && *q == ':') {
        *value = q + 1;
        return 1;
    }
    return 0;
}

/* The Content-Length of the header section [start, end), or -1: none to frame by here
 * (Python says why). Every line after the first is looked at, as findall does. */
static Py_ssize_t frame_content_length(const unsigned char *start, const unsigned char *end) {
    const unsigned char *seen = NULL;  /* the first value, stripped */
    Py_ssize_t seen_len = 0;
    const unsigned char *p = start;
    for (;;) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) break;
        const unsigned char *v;
        p = nl + 1;
        if (!frame_length_name(p, end, &v)) continue;
        const unsigned char *ve = v;
        while (ve < end && *ve != '\r' && *ve != '\n') ve++;
        p = ve;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        if (seen == NULL) {
            seen = v;
            seen_len = ve - v;
        } else if (ve - v != seen_len || memcmp(v, seen, (size_t)seen_len) != 0) {
            return -1;  /* conflicting: Python's 400 */
        }
    }
    if (seen == NULL || seen_len == 0 || seen_len > 6) return -1;
    Py_ssize_t value = 0;
    for (Py_ssize_t i = 0; i < seen_len; i++) {
        if (seen[i] < '0' || seen[i] > '9') return -1;
        value = value * 10 + (seen[i] - '0');
    }
    if ((end - start) + value > FRAME_MAX_MESSAGE) return -1;
    return value;
}

/* framing.head_end: the first LF followed by LF (the head ends at it, the body 2 later) or
 * by CRLF (the head ends at it, or at the CR before it; the body 3 later). 0: not yet. */
static int frame_head_end(const unsigned char *b, Py_ssize_t start, Py_ssize_t len,
                          Py_ssize_t *head, Py_ssize_t *body) {
    Py_ssize_t i = start;
    for (;;) {
        const unsigned char *nl = memchr(b + i, '\n', (size_t)(len - i));
        if (nl == NULL) return 0;
        i = nl - b;
        if (i + 1 >= len) return 0;
        if (b[i + 1] == '\n') {
            *head = i;
            *body = i + 2;
            return 1;
        }
        if (b[i + 1] == '\r' && i + 2 < len && b[i + 2] == '\n') {
            *head = (i > 0 && b[i - 1] == '\r') ? i - 1 : i;
            *body = i + 3;
            return 1;
        }
        i++;
    }
}

static PyObject *speedups_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "frame(buf, pos, crlfs, ping) takes 4 arguments");
        return NULL;
    }
    PyObject *obj = args[0], *ping = args[3];
    const unsigned char *b;
    Py_ssize_t len;
    int is_bytes = PyBytes_CheckExact(obj);
    if (is_bytes) {
        b = (const unsigned char *)PyBytes_AS_STRING(obj);
        len = PyBytes_GET_SIZE(obj);
    } else if (PyByteArray_CheckExact(obj)) {
        b = (const unsigned char *)PyByteArray_AS_STRING(obj);
        len = PyByteArray_GET_SIZE(obj);
    } else {
        b = NULL;  /* another bytes-like object (a memoryview): all of it Python's */
        len = 0;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    long crlfs = PyLong_AsLong(args[2]);
    if (crlfs == -1 && PyErr_Occurred()) return NULL;
    if (b == NULL) return Py_BuildValue("([]nl)", pos, crlfs);
    if (pos < 0 || pos > len) {
        PyErr_SetString(PyExc_ValueError, "frame: pos out of range");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    while (pos < len) {
        unsigned char first = b[pos];
        if (first == '\n' || first == '\r') {  /* between messages: line ends, pings */
            if (first == '\n') {
                pos += 1;
            } else if (pos + 1 < len && b[pos + 1] == '\n') {
                pos += 2;
            } else {
                break;  /* a lone CR (its LF may come next) or a CR alone: Python's */
            }
            if (++crlfs == 2) {
                crlfs = 0;
                if (PyList_Append(out, ping) < 0) goto fail;
            }
            continue;
        }
        crlfs = 0;
        Py_ssize_t head, body;
        if (!frame_head_end(b, pos, len, &head, &body)) break;  /* not whole yet */
        Py_ssize_t length = frame_content_length(b + pos, b + head);
        if (length < 0) break;  /* Python answers it */
        Py_ssize_t need = body + length;
        if (need > len) break;  /* the body is still to come */
        PyObject *message;
        if (is_bytes && pos == 0 && need == len) {
            Py_INCREF(obj);  /* a read that is one message: itself, as bytes(data[0:len]) */
            message = obj;
        } else {
            message = PyBytes_FromStringAndSize((const char *)b + pos, need - pos);
            if (message == NULL) goto fail;
        }
        int failed = PyList_Append(out, message);
        Py_DECREF(message);
        if (failed < 0) goto fail;
        pos = need;
    }
    return Py_BuildValue("(Nnl)", out, pos, crlfs);
fail:
    Py_DECREF(out);
    return NULL;
}

#endif /* SIP_RESPONDER_FRAMING_H */
