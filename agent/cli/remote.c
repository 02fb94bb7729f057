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
#include "output.h"
#include "publish_wait.h"

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
    case CLI_OPT_TIMEOUT:
        if (!cli_parse_seconds(arg, &r->timeout_ms)) {
            fprintf(stderr, "gpuwarden %s: --timeout wants seconds > 0 (at most 86400), not '%s'\n", r->cmd, arg);
            return -1;
        }
        return 1;
    case 'f':
        if (!strcmp(arg, "json") || !strcmp(arg, "table")) {
            r->json = !strcmp(arg, "json");
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
                                                          : "the admin endpoint is root's");
    else
        fprintf(stderr, "gpuwarden %s: %s: %s\n", r->cmd, endpoint, strerror(e));
    return GW_EXIT_UNREACHABLE;
}

int cli_remote_connect(cli_remote *r, gw_client **out)
{
    gw_client_options opts = GW_CLIENT_OPTIONS_INIT;
    opts.endpoint = cli_remote_endpoint(r);
    opts.timeout_ms = r->timeout_ms;
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

/*
 * After a change that takes a GPU out of Placement's offer (an operator's
 * quarantine): wait until the Cyborg driver has confirmed (`published`) the
 * inventory revision that shows it reserved, as the libvirt hook does after
 * `release end`. Until then Placement may still offer the GPU (the driver's
 * event listener usually raises `reserved` within milliseconds, its agent
 * cycle within a minute). Only a warning when that does not happen in time:
 * the GPU is quarantined whatever Placement shows, and the gate refuses a
 * VM on it.
 */
static void wait_placement(const cli_remote *r, const char *address, unsigned int wait_ms)
{
    cli_publish_wait w = { .endpoint = cli_remote_endpoint(r), .actor = NULL, .timeout_ms = (unsigned)r->timeout_ms,
                           .wait_ms = wait_ms, .revision = 0 };
    switch (cli_wait_published(&w)) {
    case CLI_PUBLISH_REACHED:
    case CLI_PUBLISH_NO_WRITER:
        break;
    case CLI_PUBLISH_ERROR:
        fprintf(stderr, "gpuwarden %s: warning: %s is %sd; cannot ask the daemon whether Placement shows it "
                        "reserved (%s): Placement may offer it until the Cyborg agent's next cycle\n",
                r->cmd, address, r->cmd, w.error);
        break;
    case CLI_PUBLISH_RESTARTED:
        fprintf(stderr, "gpuwarden %s: warning: %s is %sd; the daemon restarted while waiting for Placement to "
                        "show it reserved: not waiting further\n", r->cmd, address, r->cmd);
        break;
    case CLI_PUBLISH_TIMEOUT:
        fprintf(stderr, "gpuwarden %s: warning: %s is %sd, but Placement does not show it reserved after %.1f s "
                        "(inventory revision %llu, published up to %llu): Placement may offer it until the "
                        "Cyborg agent's next cycle\n",
                r->cmd, address, r->cmd, wait_ms / 1000.0, (unsigned long long)w.revision,
                (unsigned long long)w.published);
        break;
    }
}

int cli_run_device_command(const cli_device_command *spec, int argc, char **argv)
{
    enum { OPT_PUBLISH_WAIT = CLI_OPT_FIRST_FREE };
    static const struct option longopts[] = {
        CLI_REMOTE_LONGOPTS,
        { "reason", required_argument, NULL, 'r' },
        { "publish-wait", required_argument, NULL, OPT_PUBLISH_WAIT },
        { NULL, 0, NULL, 0 },
    };
    cli_remote r;
    cli_remote_init(&r, spec->name, true);
    const char *reason = NULL;
    char address[13];
    unsigned int wait_ms = CLI_PUBLISH_WAIT_DEFAULT_MS;
    const char *env = spec->publish_wait_env ? getenv(spec->publish_wait_env) : NULL;
    if (env && cli_parse_publish_wait(env, &wait_ms) < 0) {
        fprintf(stderr, "gpuwarden %s: %s='%s': expected seconds, 0..%d\n", spec->name, spec->publish_wait_env,
                env, CLI_PUBLISH_WAIT_MAX_S);
        return GW_EXIT_USAGE;
    }
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
        int done = cli_remote_option(&r, c, optarg);
        if (done < 0)
            return GW_EXIT_USAGE;
        if (done)
            continue;
        if (c == 'h') {
            spec->usage(stdout);
            return GW_EXIT_OK;
        }
        if (c == 'r' && spec->reason != CLI_REASON_NONE) {
            reason = optarg;
            continue;
        }
        if (c == OPT_PUBLISH_WAIT && spec->publish_wait_env) {
            if (cli_parse_publish_wait(optarg, &wait_ms) < 0) {
                fprintf(stderr, "gpuwarden %s: --publish-wait '%s': expected seconds, 0..%d\n", spec->name, optarg,
                        CLI_PUBLISH_WAIT_MAX_S);
                return GW_EXIT_USAGE;
            }
            continue;
        }
        spec->usage(stderr);
        return GW_EXIT_USAGE;
    }
    int code = cli_address_arg(spec->name, argc, argv, address);
    if (code != GW_EXIT_OK)
        return code;
    if (spec->reason == CLI_REASON_REQUIRED && !reason) {
        fprintf(stderr, "gpuwarden %s: --reason TEXT is required (it is kept in the audit log)\n", spec->name);
        return GW_EXIT_USAGE;
    }
    if (reason && !*reason) {
        fprintf(stderr, "gpuwarden %s: --reason must not be empty\n", spec->name);
        return GW_EXIT_USAGE;
    }

    gw_client *client = NULL;
    if ((code = cli_remote_connect(&r, &client)) != GW_EXIT_OK)
        return code;
    json_t *dev = NULL;
    if (spec->call(client, address, reason, &dev) < 0) {
        code = cli_remote_fail(&r, client);
        gw_client_free(client);
        return code;
    }
    gw_client_free(client);
    int w;
    if (r.json) {
        w = cli_print_json(dev, false);
    } else {
        json_t *one = json_pack("[O]", dev);
        w = one ? cli_print_devices(one) : -ENOMEM;
        json_decref(one);
    }
    json_decref(dev);
    code = w == 0 && fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
    /* The device is printed first: the change is done whatever the wait
     * finds, and the exit status stays the change's own. */
    if (spec->publish_wait_env && wait_ms > 0)
        wait_placement(&r, address, wait_ms);
    return code;
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
