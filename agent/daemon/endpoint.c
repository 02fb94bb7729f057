#include "endpoint.h"

#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "util.h"

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

void *gwd_endpoint_bind(void *zctx, int type, const char *endpoint, mode_t mode, const char *group,
                        const char *curve_secret_key, long max_message_bytes)
{
    void *sock = zmq_socket(zctx, type);
    if (!sock) {
        gw_log(GW_LOG_ERR, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int64_t maxmsg = max_message_bytes;
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);

    const bool ipc = !strncmp(endpoint, "ipc://", 6);
    if (!strncmp(endpoint, "tcp://", 6)) {
        if (!curve_secret_key || strlen(curve_secret_key) != 40) {
            gw_log(GW_LOG_ERR, "%s: tcp endpoints need a CURVE secret key (40 Z85 characters)", endpoint);
            goto fail;
        }
        int server = 1;
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &server, sizeof server) < 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, curve_secret_key, 40) < 0) {
            gw_log(GW_LOG_ERR, "%s: CURVE setup failed: %s", endpoint, zmq_strerror(zmq_errno()));
            goto fail;
        }
    } else if (!ipc && strncmp(endpoint, "inproc://", 9)) {
        gw_log(GW_LOG_ERR, "%s: only ipc://, tcp:// (with CURVE) and inproc:// endpoints are served", endpoint);
        goto fail;
    }
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
    /* Bind under a restrictive umask so the file is never wider than intended. */
    mode_t old = umask(0077);
    int rc = zmq_bind(sock, endpoint);
    umask(old);
    if (rc < 0) {
        gw_log(GW_LOG_ERR, "bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (ipc && secure_ipc_file(endpoint + 6, mode, group) < 0)
        goto fail;
    return sock;
fail:
    zmq_close(sock);
    return NULL;
}
