/* The tar reader's and the unpacker's fast lane in C: the run of plain files of a layer (images/tarstream.py
 * TarReader.files, images/unpack.py _Extractor.files). Optional: without it the Python lanes do the same work,
 * and they are the reference — `files` accepts a strict subset of what the Python lane accepts, with the same
 * values (it stops earlier where in doubt, and the entry is then read the Python way), which
 * tests/test_tarlane.py checks on mutated headers. Nothing here decides what is safe to write where: the
 * caller walks (and checks) each directory, and `write` creates plain new names in that directory only. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 512
#define PAX_BODY 64
#define WRITE_MAX (64 << 10) /* as unpack._WRITE: large writes cost ext4 more CPU */

/* A field of octal digits followed by NULs or spaces (what `field.rstrip(b"\0 ")` leaves must be octal digits,
 * at least one): 1 and its value, else 0. */
static int octal_tail(const unsigned char *f, int len, unsigned long long *out) {
    int k = len;
    while (k > 0 && (f[k - 1] == 0 || f[k - 1] == ' ')) k--;
    if (k == 0) return 0;
    unsigned long long v = 0;
    for (int i = 0; i < k; i++) {
        if (f[i] < '0' || f[i] > '7') return 0;
        v = v * 8 + (unsigned long long)(f[i] - '0');
    }
    *out = v;
    return 1;
}

/* A mode, uid or gid field as tarstream._num reads it, for its plain form only: spaces and NULs around octal
 * digits (none: 0). Anything else (base-256, a NUL inside, an 8 or a 9): 0, the Python lane decides. */
static int octal_padded(const unsigned char *f, int len, unsigned long long *out) {
    int a = 0, b = len;
    while (a < b && (f[a] == 0 || f[a] == ' ')) a++;
    while (b > a && (f[b - 1] == 0 || f[b - 1] == ' ')) b--;
    if (len > 0 && (f[0] == 0200 || f[0] == 0377)) return 0;
    unsigned long long v = 0;
    for (int i = a; i < b; i++) {
        if (f[i] < '0' || f[i] > '7') return 0;
        v = v * 8 + (unsigned long long)(f[i] - '0');
    }
    *out = v;
    return 1;
}

/* The header's checksum: its bytes summed unsigned, the checksum field counted as spaces. */
static int checksum_ok(const unsigned char *h) {
    unsigned long long stored;
    if (!octal_tail(h + 148, 8, &stored)) return 0;
    unsigned long sum = 0;
    for (int i = 0; i < BLOCK; i++) sum += h[i];
    for (int i = 148; i < 156; i++) sum -= h[i];
    return stored == sum + 8 * ' ';
}

static int all_digits(const unsigned char *p, Py_ssize_t n) {
    if (n <= 0) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return 0;
    return 1;
}

static const unsigned char *find_nul(const unsigned char *p, Py_ssize_t n) {
    return memchr(p, 0, (size_t)n);
}

/* files(view, pos, end) -> (list of (name, mode, uid, gid, mtime, data), pos): see TarReader.files. */
static PyObject *lane_files(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *view;
    Py_ssize_t pos, end;
    if (!PyArg_ParseTuple(args, "Onn", &view, &pos, &end)) return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(view, &b, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *buf = b.buf;
    if (pos < 0 || end > b.len || pos > end) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "files: pos and end must lie in the view");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    while (end - pos >= BLOCK) {
        PyObject *mtime = NULL;
        Py_ssize_t at = pos;
        if (buf[pos + 156] == 'x') {  /* a pax header whose one record is the mtime */
            if (end - pos < 3 * BLOCK) break;
            const unsigned char *ph = buf + pos;
            unsigned long long size;
            if (!octal_tail(ph + 124, 12, &size) || !checksum_ok(ph) || size == 0 || size > PAX_BODY) break;
            const unsigned char *body = buf + pos + BLOCK;
            Py_ssize_t n = (Py_ssize_t)size;
            const unsigned char *sp = memchr(body, ' ', (size_t)n);
            if (sp == NULL) break;
            Py_ssize_t s = sp - body;
            if (!all_digits(body, s)) break;
            unsigned long long length = 0;
            for (Py_ssize_t i = 0; i < s; i++) {
                length = length * 10 + (unsigned long long)(body[i] - '0');
                if (length > PAX_BODY) break;
            }
            if (length != size || body[n - 1] != '\n') break;
            if (n - (s + 1) < 6 || memcmp(body + s + 1, "mtime=", 6) != 0) break;
            const unsigned char *value = body + s + 7;
            Py_ssize_t vlen = n - 1 - (s + 7);
            if (vlen <= 0) break;
            const unsigned char *dot = memchr(value, '.', (size_t)vlen);
            Py_ssize_t secs = dot ? dot - value : vlen;
            if (!all_digits(value, secs) || secs > 18) break;
            if (dot && vlen - secs - 1 > 0 && !all_digits(dot + 1, vlen - secs - 1)) break;
            PyObject *text = PyBytes_FromStringAndSize((const char *)value, vlen);
            if (text == NULL) goto fail;
            mtime = PyFloat_FromString(text);
            Py_DECREF(text);
            if (mtime == NULL) goto fail;
            at = pos + 2 * BLOCK;
        }
        const unsigned char *h = buf + at;
        unsigned long long size, umtime, mode, uid, gid;
        if (!octal_tail(h + 124, 12, &size) || !octal_tail(h + 136, 12, &umtime) ||
            !checksum_ok(h) || h[156] != '0' || !octal_padded(h + 100, 8, &mode) || !octal_padded(h + 108, 8, &uid) ||
            !octal_padded(h + 116, 8, &gid) || uid >= 0xFFFFFFFFULL || gid >= 0xFFFFFFFFULL) {
            Py_XDECREF(mtime);
            break;
        }
        Py_ssize_t data = at + BLOCK;
        if (size > (unsigned long long)(end - data)) {
            Py_XDECREF(mtime);
            break;
        }
        Py_ssize_t after = data + (Py_ssize_t)size + (Py_ssize_t)(-(long long)size & (BLOCK - 1));
        if (after > end) {
            Py_XDECREF(mtime);
            break;
        }
        const unsigned char *nul = find_nul(h, 100);
        Py_ssize_t nlen = nul ? nul - h : 100;
        PyObject *name;
        if (memcmp(h + 257, "ustar\0", 6) == 0 && h[345] != 0) {
            const unsigned char *pnul = find_nul(h + 345, 155);
            Py_ssize_t plen = pnul ? pnul - (h + 345) : 155;
            name = PyBytes_FromStringAndSize(NULL, plen + 1 + nlen);
            if (name != NULL) {
                char *p = PyBytes_AS_STRING(name);
                memcpy(p, h + 345, (size_t)plen);
                p[plen] = '/';
                memcpy(p + plen + 1, h, (size_t)nlen);
            }
        } else {
            name = PyBytes_FromStringAndSize((const char *)h, nlen);
        }
        if (mtime == NULL) mtime = PyLong_FromUnsignedLongLong(umtime);
        PyObject *piece = NULL;
        if (name != NULL && mtime != NULL) {
            PyObject *lo = PyLong_FromSsize_t(data);
            PyObject *hi = lo ? PyLong_FromSsize_t(data + (Py_ssize_t)size) : NULL;
            PyObject *slice = hi ? PySlice_New(lo, hi, NULL) : NULL;
            piece = slice ? PyObject_GetItem(view, slice) : NULL;
            Py_XDECREF(lo);
            Py_XDECREF(hi);
            Py_XDECREF(slice);
        }
        if (piece == NULL) {
            Py_XDECREF(name);
            Py_XDECREF(mtime);
            goto fail;
        }
        PyObject *item = Py_BuildValue("(NKKKNN)", name, mode, uid, gid, mtime, piece);  /* (N: taken, even on failure) */
        if (item == NULL) goto fail;
        int r = PyList_Append(out, item);
        Py_DECREF(item);
        if (r < 0) goto fail;
        pos = after;
    }
    PyBuffer_Release(&b);
    return Py_BuildValue("(Nn)", out, pos);
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&b);
    return NULL;
}

/* A float mtime as os.utime takes it (the integer part, the fraction in nanoseconds rounded down). */
static void to_timespec(double d, struct timespec *ts) {
    double intpart, frac = modf(d, &intpart);
    frac = floor(frac * 1e9);
    if (frac >= 1e9) {
        frac -= 1e9;
        intpart += 1.0;
    } else if (frac < 0) {
        frac += 1e9;
        intpart -= 1.0;
    }
    ts->tv_sec = (time_t)intpart;
    ts->tv_nsec = (long)frac;
}

/* One plain file of a run (see `write`): 0 when it was written, 1 to stop before it — *err then 0 (not one to
 * take here), -1 (its name is there already) or the errno of the call that failed. */
static int write_one(int parent, const Py_buffer *folder, PyObject *item, unsigned int umask_, int root,
                     long long owner_uid, long long owner_gid, long long budget, long long *written, int *err) {
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 6 || !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 0)))
        return 1;
    PyObject *nameobj = PyTuple_GET_ITEM(item, 0);
    const char *name = PyBytes_AS_STRING(nameobj);
    Py_ssize_t nlen = PyBytes_GET_SIZE(nameobj);
    if (nlen <= folder->len || memcmp(name, folder->buf, (size_t)folder->len) != 0) return 1;
    const char *base = name + folder->len;
    Py_ssize_t blen = nlen - folder->len;
    if (memchr(base, '/', (size_t)blen) || memchr(base, 0, (size_t)blen) || (blen == 1 && base[0] == '.') ||
        (blen == 2 && base[0] == '.' && base[1] == '.') || (blen >= 4 && memcmp(base, ".wh.", 4) == 0))
        return 1;
    char path[256];
    if (blen >= (Py_ssize_t)sizeof(path)) return 1; /* (a ustar name is at most 100 bytes) */
    memcpy(path, base, (size_t)blen);
    path[blen] = 0;
    PyObject *m = PyTuple_GET_ITEM(item, 1), *u = PyTuple_GET_ITEM(item, 2), *g = PyTuple_GET_ITEM(item, 3);
    if (!PyLong_CheckExact(m) || !PyLong_CheckExact(u) || !PyLong_CheckExact(g)) return 1;
    unsigned long long mode = PyLong_AsUnsignedLongLong(m);
    long long uid = PyLong_AsLongLong(u), gid = PyLong_AsLongLong(g);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 1;
    }
    PyObject *mt = PyTuple_GET_ITEM(item, 4);
    struct timespec times[2];
    if (PyLong_CheckExact(mt)) {
        long long sec = PyLong_AsLongLong(mt);
        if (sec == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 1;
        }
        times[0].tv_sec = (time_t)sec;
        times[0].tv_nsec = 0;
    } else if (PyFloat_CheckExact(mt)) {
        double d = PyFloat_AS_DOUBLE(mt);
        if (!(d > -9.2e18 && d < 9.2e18)) return 1;
        to_timespec(d, &times[0]);
    } else {
        return 1;
    }
    times[1] = times[0];
    Py_buffer data;
    if (!PyMemoryView_Check(PyTuple_GET_ITEM(item, 5)) ||
        PyObject_GetBuffer(PyTuple_GET_ITEM(item, 5), &data, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return 1;
    }
    if (budget >= 0 && *written + data.len > budget) {
        PyBuffer_Release(&data);
        return 1;
    }
    unsigned int perm = (unsigned int)(mode & 07777);
    unsigned int first = (!(perm & ~0777u) && !(perm & umask_)) ? perm : 0600;
    int chown_ = root && (uid != owner_uid || gid != owner_gid);
    int e = 0;
    Py_BEGIN_ALLOW_THREADS
    int fd = openat(parent, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, first);
    if (fd < 0) {
        e = errno == EEXIST ? -1 : errno;
    } else {
        const char *p = data.buf;
        Py_ssize_t left = data.len;
        while (left > 0) {
            ssize_t w = write(fd, p, (size_t)(left > WRITE_MAX ? WRITE_MAX : left));
            if (w < 0) {
                if (errno == EINTR) continue;
                e = errno;
                break;
            }
            p += w;
            left -= w;
        }
        if (!e && chown_ && fchown(fd, (uid_t)uid, (gid_t)gid) < 0) e = errno;
        if (!e && first != perm && fchmod(fd, perm) < 0) e = errno;
        if (!e && futimens(fd, times) < 0) e = errno;
        if (close(fd) < 0 && !e && errno != EINTR) e = errno;
    }
    Py_END_ALLOW_THREADS
    if (!e) *written += data.len;
    PyBuffer_Release(&data);
    *err = e;
    return e != 0;
}

/* write(parent_fd, folder, batch, start, umask, root, owner_uid, owner_gid, budget)
 *   -> (stop, bytes, errno)
 * Writes batch[start:stop] — plain files (name, mode, uid, gid, mtime, data) in the directory `folder` (bytes,
 * with its slash, or b"") whose fd is parent_fd — as _Extractor.files does each: open (a new name only), write,
 * owner (root, unless it is `owner`), mode (when the umask or special bits kept it from open), times, close.
 * It stops before the first entry it must not take: another directory, a name that is not a plain one (empty,
 * `.`, `..`, a whiteout's), a name already there (errno -1), one that would take the bytes past `budget` (-1:
 * none). On an error it stops at that entry with its errno (nothing of that file is left open). */
static PyObject *lane_write(PyObject *self, PyObject *args) {
    (void)self;
    int parent, root;
    Py_buffer folder;
    PyObject *batch;
    Py_ssize_t start;
    unsigned int umask_;
    long long owner_uid, owner_gid, budget;
    if (!PyArg_ParseTuple(args, "iy*O!nIpLLL", &parent, &folder, &PyList_Type, &batch, &start, &umask_, &root,
                          &owner_uid, &owner_gid, &budget))
        return NULL;
    if (start < 0 || start > PyList_GET_SIZE(batch)) {
        PyBuffer_Release(&folder);
        PyErr_SetString(PyExc_IndexError, "write: start is not an index of the batch");
        return NULL;
    }
    Py_ssize_t k = start;
    long long written = 0;
    int err = 0;
    for (; k < PyList_GET_SIZE(batch); k++) {
        PyObject *item = PyList_GET_ITEM(batch, k);
        Py_INCREF(item);  /* (held: the list may change while the GIL is let go between files) */
        int stop = write_one(parent, &folder, item, umask_, root, owner_uid, owner_gid, budget, &written, &err);
        Py_DECREF(item);
        if (stop) break;
    }
    PyBuffer_Release(&folder);
    if (PyErr_Occurred()) return NULL;
    return Py_BuildValue("(nLi)", k, written, err);
}

static PyMethodDef methods[] = {
    {"files", lane_files, METH_VARARGS, "the run of plain files in a chunk (TarReader.files)"},
    {"write", lane_write, METH_VARARGS, "write a run of plain files into one directory (_Extractor.files)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pycontainer_tarlane", NULL, -1, methods, NULL, NULL, NULL, NULL};

#ifndef TARLANE_SOURCE
#define TARLANE_SOURCE "" /* the build hook passes the sha256 of this file: native/__init__.py compares */
#endif

PyMODINIT_FUNC PyInit__pycontainer_tarlane(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "SOURCE", TARLANE_SOURCE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
