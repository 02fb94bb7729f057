/* SPDX-License-Identifier: Apache-2.0 */
/* Binding the daemon's ZeroMQ endpoints with the right exposure, and bounding
 * what any one client can make the daemon hold.
 *
 * Why the bounds live below libzmq. libzmq 4.3 offers no limit on the
 * number of connections a listener accepts, and its ipc listener aborts the
 * whole process when accept() fails with EMFILE (ipc_listener.cpp asserts
 * on every errno but a short list that leaves EMFILE out: ~1000 connections
 * to read.sock under the default 1024 open files killed the daemon, and
 * systemd's Restart= made that a crash loop). Nor does it limit the frames
 * of one message: a message reaches the socket only once all its frames
 * have arrived, so ZMQ_MAXMSGSIZE (per frame) and ZMQ_RCVHWM (per message)
 * leave a peer free to make it buffer any number of 1 MiB frames (three
 * read clients sending 1000 x 1 MiB frames each took it to 2.9 GB).
 *
 * So the daemon watches its own listening sockets at the system call libzmq
 * makes: it defines accept4(), accept(), recv() and close() (the executable's
 * definitions come before libc's for every library it loads; the calls go to
 * the kernel directly), and for the listeners of its endpoints
 *   - keeps a count of the connections each has open and closes a new one
 *     beyond max_connections at once, before libzmq sees it (the client sees
 *     its connection closed: refused, and the daemon goes on);
 *   - turns an EMFILE/ENFILE from accept() into a refusal (a reserve
 *     descriptor is given up to take the connection off the queue and close
 *     it), which libzmq handles, instead of the abort;
 *   - reads the ZMTP 3 stream of each connection as libzmq receives it, and
 *     drops the peer (ECONNRESET, which libzmq handles as a broken
 *     connection) whose message grows beyond GUARD_FRAMES frames or
 *     max_message_bytes, or when all unfinished messages together would pass
 *     GUARD_INFLIGHT_MSGS x max_message_bytes, before those bytes are
 *     buffered. A ZMTP 1.0/2.0 greeting (libzmq < 3.x) is dropped the same
 *     way: the protocol needs ZMTP 3 (libzmq >= 4.0). Behind CURVE (tcp)
 *     the frame flags are encrypted; there only the connection count,
 *     ZMQ_MAXMSGSIZE and ZMQ_RCVHWM bound a peer.
 * Every other descriptor passes straight through. docs/daemon.md ("Limits")
 * states the resulting bound.
 *
 * Who may connect to the ipc admin endpoint. Its socket file is 0660
 * root:<admin_group>, and on top of that every connection accepted on it is
 * checked against the credentials the kernel recorded at connect()
 * (SO_PEERCRED, SO_PEERGROUPS): root, or a process whose group or
 * supplementary groups include admin_group; any other is closed at once,
 * before libzmq sees it, and logged with its uid and pid. The file mode alone
 * is one chmod away from open to all (a too-wide mode set by hand, a
 * directory shared with another service); the check does not depend on it.
 * The identity each request is recorded under is taken by server.c from the
 * same kernel record, as libzmq keeps it on the connection (PROTOCOL.md §2). */
#include "endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "util.h"

/* ---- the guard ----------------------------------------------------------- */

/* Frames of one message on the wire. Requests have 2 ([empty][body]); a
 * wrong count up to this is still read and answered `malformed`. */
#define GUARD_FRAMES 8
/* All unfinished messages together: this many times max_message_bytes. */
#define GUARD_INFLIGHT_MSGS 16
/* Descriptors the daemon keeps for itself below the open-file limit (state
 * files, libvirt, hooks' pipes, sysfs reads of the clean-ups, libzmq's own). */
#define FD_RESERVE 256
/* Soft open-file limit the daemon raises itself to at most: the guard keeps
 * a table entry per descriptor. */
#define FD_CEILING (1u << 20)
/* A refusal is logged at most this often per endpoint (with a count). */
#define REFUSAL_LOG_MS 10000
#define GUARD_ENDPOINTS 8

enum { Z_GREETING, Z_HEADER, Z_SIZE, Z_BODY, Z_OPAQUE };

typedef struct guard_conn {
    int ep;                     /* index into g.ep */
    uint8_t state;
    uint8_t greeting[64];
    unsigned got;               /* bytes of the greeting or size field so far */
    uint8_t flags;              /* of the frame being read */
    uint8_t size[8];
    uint64_t body_left;
    bool last;                  /* the frame being read ends its message */
    unsigned frames;            /* of the unfinished message */
    uint64_t bytes;             /* of the unfinished message, counted in g.inflight */
} guard_conn;

typedef struct guard_ep {
    char name[16];              /* "admin", "read", "events", "gate" */
    sa_family_t family;
    char path[sizeof ((struct sockaddr_un *)0)->sun_path];  /* AF_UNIX: bound name (abstract: leading NUL) */
    size_t path_len;
    in_port_t port;             /* AF_INET/6, network order */
    bool admins_only;           /* AF_UNIX: only root and members of `gid` (SO_PEERCRED) */
    gid_t gid;
    char group[32];             /* the group's name, for the log */
    long max_conns;
    uint64_t max_msg;
    atomic_long conns;
    atomic_ulong refused, dropped;
    atomic_llong last_log_ms;
} guard_ep;

static struct {
    bool on;
    size_t nfds;
    _Atomic(guard_conn *) *conn;   /* per descriptor: a guarded connection */
    _Atomic(signed char) *lsn;  /* per descriptor: k+1 for endpoint k's listener; 0 not known as one */
    guard_ep ep[GUARD_ENDPOINTS];
    atomic_int n_ep;
    atomic_ullong inflight;     /* bytes of unfinished messages, all connections */
    uint64_t inflight_max;
    pthread_mutex_t reserve_lock;
    int reserve_fd;             /* given up to take a connection off a full process */
} g = { .reserve_lock = PTHREAD_MUTEX_INITIALIZER, .reserve_fd = -1 };

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sys_close(int fd) { return (int)syscall(SYS_close, fd); }

/* Log a refusal or a drop, at most every REFUSAL_LOG_MS per endpoint. */
static void note(guard_ep *e, atomic_ulong *counter, const char *what)
{
    unsigned long n = atomic_fetch_add(counter, 1) + 1;
    int64_t now = mono_ms(), last = atomic_load(&e->last_log_ms);
    if ((last && now - last < REFUSAL_LOG_MS) || !atomic_compare_exchange_strong(&e->last_log_ms, &last, now))
        return;
    gw_log(GW_LOG_WARNING, "%s endpoint: %s (%lu since start; %ld connections open, at most %ld)", e->name, what, n,
           atomic_load(&e->conns), e->max_conns);
}

/* Which endpoint a listening descriptor serves, from its bound address;
 * -1 when none of ours. Cached until the descriptor is closed. */
static int listener_of(int fd)
{
    if (!g.on || fd < 0 || (size_t)fd >= g.nfds)
        return -1;
    signed char c = atomic_load(&g.lsn[fd]);
    if (c)
        return c - 1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int k = -1;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        int n = atomic_load(&g.n_ep);
        for (int i = 0; i < n && k < 0; i++) {
            const guard_ep *e = &g.ep[i];
            if (ss.ss_family != e->family)
                continue;
            if (e->family == AF_UNIX) {
                const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
                const size_t at = offsetof(struct sockaddr_un, sun_path);
                size_t plen = len > at ? len - at : 0;
                /* A path name may come back with its NUL counted. */
                if (plen && un->sun_path[0] && un->sun_path[plen - 1] == '\0')
                    plen--;
                if (plen == e->path_len && !memcmp(un->sun_path, e->path, plen))
                    k = i;
            } else if (e->family == AF_INET && ((const struct sockaddr_in *)&ss)->sin_port == e->port) {
                k = i;
            } else if (e->family == AF_INET6 && ((const struct sockaddr_in6 *)&ss)->sin6_port == e->port) {
                k = i;
            }
        }
    }
    /* Only a registered listener is remembered: one asked before its
     * endpoint was registered is asked again. */
    if (k >= 0)
        atomic_store(&g.lsn[fd], (signed char)(k + 1));
    return k;
}

/* Whether the peer of an accepted AF_UNIX connection may use an admin
 * endpoint: root, or its primary or a supplementary group is e->gid. The
 * kernel's record of the peer at connect(), never anything it says. */
static bool peer_admitted(const guard_ep *e, int fd, struct ucred *cred)
{
    socklen_t len = sizeof *cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
        return false;
    if (cred->uid == 0 || cred->gid == e->gid)
        return true;
    /* The supplementary groups (Linux >= 4.13): ERANGE says how many. */
    gid_t some[64];
    _cleanup_free_ gid_t *many = NULL;
    gid_t *groups = some;
    len = sizeof some;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
        if (errno != ERANGE || len <= sizeof some)
            return false;
        many = gw_xcalloc(len / sizeof *many + 1, sizeof *many);
        groups = many;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
            return false;
    }
    for (size_t i = 0; i < len / sizeof *groups; i++)
        if (groups[i] == e->gid)
            return true;
    return false;
}

/* A connection accepted on endpoint k's listener: kept, or refused. */
static int admit(int k, int fd)
{
    guard_ep *e = &g.ep[k];
    struct ucred cred = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
    if (e->admins_only && !peer_admitted(e, fd, &cred)) {
        char what[160];
        snprintf(what, sizeof what, "connection refused: uid %u (pid %d, gid %u) is neither root nor in group '%s'",
                 (unsigned)cred.uid, (int)cred.pid, (unsigned)cred.gid, e->group);
        note(e, &e->refused, what);
        sys_close(fd);
        errno = EAGAIN;     /* libzmq: nothing accepted, wait for the next */
        return -1;
    }
    if ((size_t)fd >= g.nfds || atomic_fetch_add(&e->conns, 1) >= e->max_conns) {
        if ((size_t)fd < g.nfds)
            atomic_fetch_sub(&e->conns, 1);
        /* Counted before the client can see it. */
        note(e, &e->refused, "connection refused: too many open");
        sys_close(fd);
        errno = EAGAIN;     /* libzmq: nothing accepted, wait for the next */
        return -1;
    }
    guard_conn *c = gw_xcalloc(1, sizeof *c);
    c->ep = k;
    atomic_store(&g.conn[fd], c);
    return fd;
}

/* accept() failed for lack of descriptors while a connection waits: libzmq
 * would abort (EMFILE) or be woken for it again at once (ENFILE). Give up
 * the reserve descriptor, take the connection and close it. */
static int refuse_exhausted(int k, int fd, int err)
{
    guard_ep *e = &g.ep[k];
    pthread_mutex_lock(&g.reserve_lock);
    if (g.reserve_fd >= 0) {
        sys_close(g.reserve_fd);
        g.reserve_fd = -1;
    }
    int nfd = (int)syscall(SYS_accept4, fd, NULL, NULL, SOCK_CLOEXEC);
    if (nfd >= 0) {
        /* Counted before the client can see it. */
        note(e, &e->refused, err == EMFILE ? "connection refused: no descriptor left in the process (EMFILE)"
                                           : "connection refused: no descriptor left in the system (ENFILE)");
        sys_close(nfd);
    }
    g.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pthread_mutex_unlock(&g.reserve_lock);
    errno = EAGAIN;
    return -1;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int nfd = (int)syscall(SYS_accept4, fd, addr, len, flags);
    int err = errno;
    int k = listener_of(fd);
    if (k < 0) {
        errno = err;
        return nfd;
    }
    if (nfd < 0) {
        if (err == EMFILE || err == ENFILE)
            return refuse_exhausted(k, fd, err);
        errno = err;
        return -1;
    }
    return admit(k, nfd);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    return accept4(fd, addr, len, 0);
}

static void message_done(guard_conn *c)
{
    atomic_fetch_sub(&g.inflight, c->bytes);
    c->bytes = 0;
    c->frames = 0;
}

int close(int fd)
{
    guard_conn *c = NULL;
    if (g.on && fd >= 0 && (size_t)fd < g.nfds) {
        /* Before the descriptor is released: after, its number may be a new
         * connection's already. */
        if (atomic_load(&g.lsn[fd]))
            atomic_store(&g.lsn[fd], 0);
        c = atomic_load(&g.conn[fd]) ? atomic_exchange(&g.conn[fd], NULL) : NULL;
    }
    int r = sys_close(fd);
    if (c) {
        /* Counted open until its descriptor is free. */
        int e = errno;
        message_done(c);
        atomic_fetch_sub(&g.ep[c->ep].conns, 1);
        free(c);
        errno = e;
    }
    return r;
}

/* Why the bytes just received break the endpoint's bounds; NULL when they
 * do not. Advances the connection's reading of the stream. */
static const char *zmtp_feed(guard_conn *c, const uint8_t *p, size_t n)
{
    const guard_ep *e = &g.ep[c->ep];
    while (n) {
        switch (c->state) {
        case Z_GREETING: {
            size_t take = 64 - c->got < n ? 64 - c->got : n;
            memcpy(c->greeting + c->got, p, take);
            c->got += (unsigned)take;
            p += take;
            n -= take;
            /* signature: 0xFF, 8 bytes, 0x7F (bit 0 set: versioned); then the major version */
            if (c->got >= 1 && c->greeting[0] != 0xff)
                return "a ZMTP 1.0 peer (the protocol needs ZMTP 3)";
            if (c->got >= 10 && !(c->greeting[9] & 1))
                return "a ZMTP 1.0 peer (the protocol needs ZMTP 3)";
            if (c->got >= 11 && c->greeting[10] < 3)
                return "a ZMTP 2.0 peer (the protocol needs ZMTP 3)";
            if (c->got == 64) {
                /* Only the NULL mechanism shows frames as they are. */
                c->state = memcmp(c->greeting + 12, "NULL\0", 5) ? Z_OPAQUE : Z_HEADER;
                c->got = 0;
            }
            break;
        }
        case Z_HEADER:
            c->flags = *p++;
            n--;
            c->got = 0;
            c->state = Z_SIZE;
            break;
        case Z_SIZE: {
            unsigned need = c->flags & 0x02 ? 8 : 1;
            c->size[c->got++] = *p++;
            n--;
            if (c->got < need)
                break;
            uint64_t size = 0;
            for (unsigned i = 0; i < need; i++)
                size = size << 8 | c->size[i];
            c->state = size ? Z_BODY : Z_HEADER;
            c->body_left = size;
            if (c->flags & 0x04) {
                /* A command (handshake, heartbeat): libzmq takes it whole and
                 * at once; never inside a message. */
                if (c->frames)
                    return "a command inside a message";
                c->last = false;
                break;
            }
            if (++c->frames > GUARD_FRAMES)
                return "a message of more frames than the protocol allows";
            if (size > e->max_msg - c->bytes)
                return "a message larger than max_message_bytes";
            if (atomic_fetch_add(&g.inflight, size) + size > g.inflight_max) {
                atomic_fetch_sub(&g.inflight, size);
                return "unfinished messages of all clients would pass their bound";
            }
            c->bytes += size;
            c->last = !(c->flags & 0x01);
            if (c->last && !size)
                message_done(c);
            break;
        }
        case Z_BODY: {
            uint64_t take = c->body_left < n ? c->body_left : n;
            c->body_left -= take;
            p += take;
            n -= (size_t)take;
            if (!c->body_left) {
                if (c->last)
                    message_done(c);
                c->state = Z_HEADER;
            }
            break;
        }
        case Z_OPAQUE:
            return NULL;
        }
    }
    return NULL;
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t r = syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
    if (r <= 0 || !g.on || fd < 0 || (size_t)fd >= g.nfds || (flags & MSG_PEEK))
        return r;
    guard_conn *c = atomic_load(&g.conn[fd]);
    if (!c)
        return r;
    const char *why = zmtp_feed(c, buf, (size_t)r);
    if (!why)
        return r;
    guard_ep *e = &g.ep[c->ep];
    char what[160];
    snprintf(what, sizeof what, "client dropped: %s", why);
    note(e, &e->dropped, what);
    /* libzmq takes the error as a broken connection and closes it; nothing
     * of these bytes reaches it. */
    shutdown(fd, SHUT_RDWR);
    errno = ECONNRESET;
    return -1;
}

long gwd_endpoint_limits(long max_connections, long max_message_bytes)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        gw_log(GW_LOG_ERR, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -errno;
    }
    /* The default soft limit (1024) is what systemd and shells hand out for
     * programs that use select(); the daemon does not, and every client
     * connection costs it one descriptor. */
    rlim_t want = rl.rlim_max > FD_CEILING ? FD_CEILING : rl.rlim_max;
    if (rl.rlim_cur < want) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            gw_log(GW_LOG_WARNING, "open files: cannot raise the soft limit from %llu to %llu: %s",
                   (unsigned long long)was, (unsigned long long)want, strerror(errno));
        else
            gw_log(GW_LOG_INFO, "open files: soft limit raised from %llu to %llu", (unsigned long long)was,
                   (unsigned long long)want);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    size_t nfds = rl.rlim_cur > FD_CEILING ? FD_CEILING : (size_t)rl.rlim_cur;
    /* Three endpoints share what the daemon does not keep for itself. */
    long fit = nfds > FD_RESERVE + 3 ? (long)(nfds - FD_RESERVE) / 3 : 1;
    long cap = max_connections < fit ? max_connections : fit;
    if (cap < max_connections)
        gw_log(GW_LOG_WARNING, "max_connections %ld does not fit in %zu open files: %ld per endpoint (raise "
                               "LimitNOFILE)", max_connections, nfds, cap);
    if (!g.on) {
        g.nfds = nfds;
        g.conn = gw_xcalloc(nfds, sizeof *g.conn);
        g.lsn = gw_xcalloc(nfds, sizeof *g.lsn);
        g.inflight_max = (uint64_t)max_message_bytes * GUARD_INFLIGHT_MSGS;
        g.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        g.on = true;
    }
    return cap;
}

/* Watch the listener of `endpoint`, from before it is bound (its first
 * connection is watched too). A tcp port the system chooses ("*" or 0) is
 * known only after the bind: then `sock` is bound already and this is
 * called again for it. Returns the endpoint's index, or -1 (not watched:
 * inproc, or no room). */
static int guard_endpoint(void *sock, const char *name, const char *endpoint, long max_conns, long max_msg,
                          const struct group *admins)
{
    int n = atomic_load(&g.n_ep);
    if (!g.on || n == GUARD_ENDPOINTS)
        return -1;
    guard_ep *e = &g.ep[n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->max_conns = max_conns;
    e->max_msg = (uint64_t)max_msg;
    if (admins) {
        e->admins_only = true;
        e->gid = admins->gr_gid;
        snprintf(e->group, sizeof e->group, "%s", admins->gr_name);
    }
    char bound[512] = "";
    size_t blen = sizeof bound;
    if (!sock || zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, bound, &blen) < 0 || !*bound)
        snprintf(bound, sizeof bound, "%s", endpoint);
    if (!strncmp(bound, "ipc://", 6)) {
        const char *p = bound + 6;
        size_t len = strlen(p);
        if (len > sizeof e->path)
            return -1;      /* libzmq refuses to bind it anyway */
        e->family = AF_UNIX;
        memcpy(e->path, p, len);
        e->path_len = len;
        if (*p == '@')
            e->path[0] = '\0';     /* abstract namespace: a leading NUL instead of the '@' */
    } else if (!strncmp(bound, "tcp://", 6)) {
        const char *colon = strrchr(bound, ':');
        char *end;
        unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
        if (!colon || *end || !port || port > 65535)
            return -1;      /* chosen at bind: asked again after it */
        e->family = strchr(bound + 6, '[') ? AF_INET6 : AF_INET;
        e->port = htons((uint16_t)port);
    } else {
        return -1;          /* inproc: no descriptors */
    }
    atomic_store(&g.n_ep, n + 1);
    return n;
}

/* ---- binding ------------------------------------------------------------- */

static int make_parent_dir(const char *path)
{
    _cleanup_free_ char *dir = gw_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* The socket file's exposure is the read/admin split's whole security: set it
 * before anyone can connect through a too-open umask window. */
static int secure_ipc_file(const char *path, mode_t mode, const char *group)
{
    if (group && *group) {
        struct group *gr = getgrnam(group);
        if (!gr) {
            gw_log(GW_LOG_ERR, "ipc %s: unknown group '%s'", path, group);
            return -ENOENT;
        }
        if (chown(path, (uid_t)-1, gr->gr_gid) < 0) {
            gw_log(GW_LOG_ERR, "chown %s: %s", path, strerror(errno));
            return -errno;
        }
    }
    if (chmod(path, mode) < 0) {
        gw_log(GW_LOG_ERR, "chmod %s: %s", path, strerror(errno));
        return -errno;
    }
    return 0;
}

void *gwd_endpoint_bind(void *zctx, int type, const char *name, const char *endpoint, mode_t mode, const char *group,
                        bool admins_only, const char *curve_secret_key, long max_message_bytes, long max_connections)
{
    void *sock = zmq_socket(zctx, type);
    if (!sock) {
        gw_log(GW_LOG_ERR, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int64_t maxmsg = max_message_bytes;
    int linger = 0;
    /* Finished messages a peer may have waiting (the guard bounds the
     * unfinished one): past it libzmq stops reading that peer, which then
     * waits, nothing lost. ZMQ_SNDHWM stays libzmq's: a ROUTER drops a
     * reply when it is reached, and it is reached early (32 made replies to a
     * client sending one request at a time get lost under load, 1 run in 10). */
    int rcvhwm = GWD_RCVHWM;
    /* A connection that has not said hello (the ZMTP handshake) in this
     * time is closed: it holds a connection slot. */
    int handshake_ms = GWD_HANDSHAKE_MS;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    zmq_setsockopt(sock, ZMQ_HANDSHAKE_IVL, &handshake_ms, sizeof handshake_ms);

    const bool ipc = !strncmp(endpoint, "ipc://", 6);
    if (!strncmp(endpoint, "tcp://", 6)) {
        if (!curve_secret_key || strlen(curve_secret_key) != 40) {
            gw_log(GW_LOG_ERR, "%s: tcp endpoints need a CURVE secret key (40 Z85 characters)", endpoint);
            goto fail;
        }
        int server = 1;
        /* The ZAP handler (zap.c) decides on the endpoint's name. */
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &server, sizeof server) < 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, curve_secret_key, 40) < 0 ||
            zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, name, strlen(name)) < 0) {
            gw_log(GW_LOG_ERR, "%s: CURVE setup failed: %s", endpoint, zmq_strerror(zmq_errno()));
            goto fail;
        }
    } else if (!ipc && strncmp(endpoint, "inproc://", 9)) {
        gw_log(GW_LOG_ERR, "%s: only ipc://, tcp:// (with CURVE) and inproc:// endpoints are served", endpoint);
        goto fail;
    }
    /* An admin ipc endpoint: the group whose members the kernel's record of
     * a peer must show (root always may). Resolved once, at the start. */
    struct group admins_gr = { 0 };
    char admins_name[32] = "";
    if (ipc && admins_only) {
        const char *want = group && *group ? group : "root";
        struct group *gr = getgrnam(want);
        if (!gr) {
            gw_log(GW_LOG_ERR, "%s: unknown admin group '%s'", endpoint, want);
            goto fail;
        }
        snprintf(admins_name, sizeof admins_name, "%s", gr->gr_name);
        admins_gr.gr_gid = gr->gr_gid;
        admins_gr.gr_name = admins_name;
    }
    const struct group *admins = ipc && admins_only ? &admins_gr : NULL;
    if (ipc) {
        const char *path = endpoint + 6;
        int r = make_parent_dir(path);
        if (r < 0) {
            gw_log(GW_LOG_ERR, "%s: cannot create its directory: %s", endpoint, strerror(-r));
            goto fail;
        }
        /* A socket file left by a crashed daemon would make bind fail. */
        unlink(path);
    }
    int watched = guard_endpoint(NULL, name, endpoint, max_connections, max_message_bytes, admins);
    /* Bind under a restrictive umask so the file is never wider than intended. */
    mode_t old = umask(0077);
    int rc = zmq_bind(sock, endpoint);
    umask(old);
    if (rc < 0) {
        gw_log(GW_LOG_ERR, "bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (watched < 0 && strncmp(endpoint, "inproc://", 9))
        guard_endpoint(sock, name, endpoint, max_connections, max_message_bytes, admins);
    if (ipc && secure_ipc_file(endpoint + 6, mode, group) < 0)
        goto fail;
    return sock;
fail:
    zmq_close(sock);
    return NULL;
}
