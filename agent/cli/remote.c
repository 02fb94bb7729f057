/* SPDX-License-Identifier: Apache-2.0 */
/* Talking to gpuwardend from the CLI (remote.h). */
#include "remote.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "commands.h"
#include "format.h"

void cli_remote_init(cli_remote *r, const char *cmd, bool admin)
{
    *r = (cli_remote){ .cmd = cmd, .default_endpoint = admin ? GW_PROTO_ADMIN_ENDPOINT : GW_PROTO_READ_ENDPOINT,
                       .timeout_ms = GW_CLIENT_DEFAULT_TIMEOUT_MS };
}

bool cli_parse_seconds(const char *s, int *ms)
{
    if (!s || !(isdigit((unsigned char)*s) || *s == '.'))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v > 0) || v > 86400)
        return false;
    long m = (long)(v * 1000 + 0.5);
    *ms = m < 1 ? 1 : (int)m;
    return true;
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

int cli_remote_option(cli_remote *r, int c, const char *arg)
{
    switch (c) {
    case CLI_OPT_ENDPOINT:
        if (!*arg) {
            fprintf(stderr, "gpuwarden %s: --endpoint wants an endpoint (ipc://PATH or tcp://HOST:PORT)\n", r->cmd);
            return -1;
        }
        r->endpoint = arg;
        return 1;
    case CLI_OPT_SERVER_KEY:
    case CLI_OPT_PUBLIC_KEY:
    case CLI_OPT_SECRET_KEY:
        r->key_files[c - CLI_OPT_SERVER_KEY] = arg;
        return 1;
    case CLI_OPT_TIMEOUT:
        if (!cli_parse_seconds(arg, &r->timeout_ms)) {
            fprintf(stderr, "gpuwarden %s: --timeout wants seconds > 0 (at most 86400), not '%s'\n", r->cmd, arg);
            return -1;
        }
        return 1;
    case 'f':
        if (!strcmp(arg, "json") || !strcmp(arg, "table")) {
            r->json = !strcmp(arg, "json");
            r->format = r->json ? CLI_FORMAT_JSON : CLI_FORMAT_TABLE;
            return 1;
        }
        fprintf(stderr, "gpuwarden %s: unknown format '%s' (table or json)\n", r->cmd, arg);
        return -1;
    default:
        return 0;
    }
}

const char *cli_remote_endpoint(const cli_remote *r)
{
    if (r->endpoint)
        return r->endpoint;
    const char *env = getenv(CLI_ENDPOINT_ENV);
    return env && *env ? env : r->default_endpoint;
}

int cli_remote_probe(const cli_remote *r, const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) != 0 || endpoint[6] == '@')
        return GW_EXIT_OK;   /* tcp, or an abstract socket: libzmq's timeout tells */
    const char *path = endpoint + 6;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return GW_EXIT_OK;
    strcpy(sa.sun_path, path);
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, "gpuwarden %s: %s: %s (is gpuwardend running?)\n", r->cmd, endpoint, strerror(errno));
        return GW_EXIT_UNREACHABLE;
    }
    if (!S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "gpuwarden %s: %s: not a socket\n", r->cmd, endpoint);
        return GW_EXIT_UNREACHABLE;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return GW_EXIT_OK;
    int ok = connect(fd, (const struct sockaddr *)&sa, sizeof sa), e = errno;
    close(fd);
    if (ok == 0)
        return GW_EXIT_OK;
    if (e == ECONNREFUSED)
        fprintf(stderr, "gpuwarden %s: %s: connection refused (a stale socket: gpuwardend is not running)\n",
                r->cmd, endpoint);
    else if (e == EACCES || e == EPERM)
        fprintf(stderr, "gpuwarden %s: %s: permission denied (%s)\n", r->cmd, endpoint,
                strcmp(endpoint, GW_PROTO_ADMIN_ENDPOINT) ? "ask the daemon's operator for access"
                                                          : "the admin endpoint is root's and its admin_group's");
    else
        fprintf(stderr, "gpuwarden %s: %s: %s\n", r->cmd, endpoint, strerror(e));
    return GW_EXIT_UNREACHABLE;
}

/* A CURVE key from a file: its first line that is neither blank nor a
 * comment, 40 Z85 characters with blanks around. */
static int read_key_file(const cli_remote *r, const char *what, const char *path, char key[41])
{
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "gpuwarden %s: %s key %s: %s\n", r->cmd, what, path, strerror(errno));
        return -1;
    }
    char line[256];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t\r\n");
        if (!*p || *p == '#')
            continue;
        size_t n = strcspn(p, " \t\r\n");
        found = n == 40 && !p[n + strspn(p + n, " \t\r\n")];
        if (found)
            memcpy(key, p, 40), key[40] = '\0';
        else
            break;
    }
    fclose(f);
    if (!found)
        fprintf(stderr, "gpuwarden %s: %s key %s: expected one CURVE key, 40 Z85 characters\n", r->cmd, what, path);
    return found ? 0 : -1;
}

/* The CURVE keys of a tcp:// endpoint into opts: from the options, else the
 * environment; the keys live in `keys`. 0, or -1 (message printed). */
static int curve_keys(const cli_remote *r, gw_client_options *opts, char keys[3][41])
{
    static const char *const what[3] = { "server", "public", "secret" };
    static const char *const env[3] = { CLI_SERVER_KEY_ENV, CLI_PUBLIC_KEY_ENV, CLI_SECRET_KEY_ENV };
    const char **dst[3] = { &opts->curve_server_key, &opts->curve_public_key, &opts->curve_secret_key };
    for (int i = 0; i < 3; i++) {
        const char *path = r->key_files[i] ? r->key_files[i] : getenv(env[i]);
        if (!path || !*path)
            continue;
        if (read_key_file(r, what[i], path, keys[i]) < 0)
            return -1;
        *dst[i] = keys[i];
    }
    return 0;
}

int cli_remote_client_options(const cli_remote *r, gw_client_options *opts, char keys[3][41])
{
    *opts = (gw_client_options)GW_CLIENT_OPTIONS_INIT;
    opts->endpoint = cli_remote_endpoint(r);
    opts->timeout_ms = r->timeout_ms;
    if (!strncmp(opts->endpoint, "tcp://", 6) && curve_keys(r, opts, keys) < 0)
        return GW_EXIT_USAGE;
    return GW_EXIT_OK;
}

int cli_remote_connect(cli_remote *r, gw_client **out)
{
    gw_client_options opts;
    char keys[3][41];
    if (cli_remote_client_options(r, &opts, keys) != GW_EXIT_OK)
        return GW_EXIT_USAGE;
    int code = cli_remote_probe(r, opts.endpoint);
    if (code != GW_EXIT_OK)
        return code;
    if (gw_client_new(out, &opts) < 0) {
        fprintf(stderr, "gpuwarden %s: %s\n", r->cmd, gw_error_message());
        return GW_EXIT_USAGE;   /* only bad options (the endpoint's form) fail here */
    }
    return GW_EXIT_OK;
}

int cli_remote_fail(const cli_remote *r, gw_client *c)
{
    const gw_client_error *e = gw_client_last_error(c);
    if (!e || e->code == GW_PROTO_OK) {
        fprintf(stderr, "gpuwarden %s: %s\n", r->cmd, gw_error_message());
        return GW_EXIT_FAILURE;
    }
    int code = GW_EXIT_FAILURE;
    if (e->remote) {
        switch (e->code) {
        case GW_PROTO_FORBIDDEN:
        case GW_PROTO_NOT_FOUND:
        case GW_PROTO_ILLEGAL_TRANSITION:
        case GW_PROTO_CONFLICT:
        case GW_PROTO_BUSY:
            code = GW_EXIT_REFUSED;
            break;
        case GW_PROTO_UNAVAILABLE:
            code = GW_EXIT_UNREACHABLE;
            break;
        default:
            break;
        }
        fprintf(stderr, "gpuwarden %s: %s (%s)\n", r->cmd, e->message, e->code_name);
        if (e->code == GW_PROTO_FORBIDDEN)
            fprintf(stderr, "gpuwarden %s: %s serves read requests only; this command needs the admin "
                            "endpoint (%s)\n", r->cmd, gw_client_endpoint(c), GW_PROTO_ADMIN_ENDPOINT);
    } else {
        if (e->code == GW_PROTO_UNAVAILABLE)
            code = GW_EXIT_UNREACHABLE;
        fprintf(stderr, "gpuwarden %s: %s\n", r->cmd, e->message);
    }
    return code;
}

bool cli_canonical_address(const char *in, char out[13])
{
    static const char shape[] = "xxxx:xx:xx.x";
    char buf[13];
    size_t len = strlen(in);
    if (len == 7)
        snprintf(buf, sizeof buf, "0000:%s", in);
    else if (len == 12)
        memcpy(buf, in, sizeof buf);
    else
        return false;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'x' ? !isxdigit((unsigned char)buf[i]) : buf[i] != shape[i])
            return false;
        buf[i] = (char)tolower((unsigned char)buf[i]);
    }
    if (strtoul(buf + 8, NULL, 16) > 0x1f || buf[11] > '7')
        return false;
    memcpy(out, buf, sizeof buf);
    return true;
}

int cli_address_arg(const char *cmd, int argc, char **argv, char out[13])
{
    if (optind >= argc) {
        fprintf(stderr, "gpuwarden %s: which GPU? give its PCI address (dddd:bb:dd.f)\n", cmd);
        return GW_EXIT_USAGE;
    }
    if (optind + 1 < argc) {
        fprintf(stderr, "gpuwarden %s: unexpected argument '%s'\n", cmd, argv[optind + 1]);
        return GW_EXIT_USAGE;
    }
    if (!cli_canonical_address(argv[optind], out)) {
        fprintf(stderr, "gpuwarden %s: '%s' is not a PCI address (dddd:bb:dd.f or bb:dd.f)\n", cmd, argv[optind]);
        return GW_EXIT_USAGE;
    }
    return GW_EXIT_OK;
}

int cli_remote_parse(cli_remote *r, int argc, char **argv, void (*usage)(FILE *))
{
    static const struct option longopts[] = {
        CLI_REMOTE_LONGOPTS,
        { NULL, 0, NULL, 0 },
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
        int done = cli_remote_option(r, c, optarg);
        if (done < 0)
            return GW_EXIT_USAGE;
        if (done)
            continue;
        usage(c == 'h' ? stdout : stderr);
        return c == 'h' ? GW_EXIT_OK : GW_EXIT_USAGE;
    }
    return -1;
}
