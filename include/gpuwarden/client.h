/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/client.h - talking to gpuwardend: requests with timeouts, and the
 * event stream (proto/PROTOCOL.md is the wire protocol).
 *
 *     gw_client_options opts = GW_CLIENT_OPTIONS_INIT;
 *     opts.endpoint = GW_PROTO_ADMIN_ENDPOINT;
 *     gw_client *c;
 *     if (gw_client_new(&c, &opts) < 0)
 *         errx(2, "%s", gw_error_message());
 *     json_t *dev;
 *     int r = gw_client_quarantine(c, "0000:3b:00.0", "fan noise", &dev);
 *     if (r < 0)
 *         errx(gw_client_last_error(c)->remote ? 5 : 4, "%s", gw_error_message());
 *     puts(json_string_value(json_object_get(dev, "state")));   // "quarantined"
 *     json_decref(dev);
 *     gw_client_free(c);
 *
 * Results are jansson values in the protocol's JSON form (proto/vectors/
 * README.md): msgpack maps become objects with their keys in wire order,
 * integers become JSON integers, nil becomes null; an unsigned integer above
 * 2^63-1 (none in a 1.0 result) would be {"$u64": "<decimal>"}. A result
 * handed out through `json_t **result` is a new reference: the caller owns it
 * and releases it with json_decref(). On failure *result is NULL.
 *
 * Every call returns 0 or a negative errno value and never waits longer than
 * the client's timeout. A daemon's error reply maps to the errno of
 * gw_proto_code_errno() (not_found -> -ENOENT, forbidden -> -EACCES, ...); a
 * daemon that does not answer in time, or is not there, gives -ETIMEDOUT; a
 * reply that cannot be decoded gives -EPROTO. gw_error_message() says what
 * happened, and gw_client_last_error() has the code, the field and whether
 * the daemon itself sent the error.
 *
 * A gw_client is one ZeroMQ DEALER socket: use it from one thread at a time
 * (one client per thread is the easy way). The library links libzmq; a
 * client creates its own ZeroMQ context.
 */
#ifndef GPUWARDEN_CLIENT_H
#define GPUWARDEN_CLIENT_H

#include <gpuwarden/common.h>
#include <gpuwarden/proto.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GW_CLIENT_DEFAULT_TIMEOUT_MS 5000

typedef struct gw_client gw_client;

typedef struct gw_client_options {
    unsigned int version;
    /* ZeroMQ endpoint: "ipc://PATH" or "tcp://HOST:PORT" (the latter only
     * with curve_server_key). NULL = GW_PROTO_READ_ENDPOINT. */
    const char *endpoint;
    /* The longest any call waits, sending and receiving together, in ms.
     * 0 = GW_CLIENT_DEFAULT_TIMEOUT_MS; negative is invalid. */
    int timeout_ms;
    /* Who is asking, sent as the request's `actor` and written to the audit
     * log beside what the daemon knows of the endpoint. NULL = "uid=N(name)"
     * of this process, plus " sudo=USER" when SUDO_USER is set. */
    const char *actor;
    /* CURVE, required for tcp:// endpoints: the daemon's public key (Z85, 40
     * characters), and this client's key pair (both NULL = a fresh ephemeral
     * pair). */
    const char *curve_server_key;
    const char *curve_public_key;
    const char *curve_secret_key;
} gw_client_options;

#define GW_CLIENT_OPTIONS_VERSION 1
#define GW_CLIENT_OPTIONS_INIT { GW_CLIENT_OPTIONS_VERSION, NULL, 0, NULL, NULL, NULL, NULL }

/* Create a client and start connecting (asynchronously: a daemon that is not
 * there shows up as -ETIMEDOUT on the first call). -EINVAL for bad options
 * (unknown version, an endpoint that is not ipc:// or tcp://, tcp:// without
 * a server key, a key that is not 40 Z85 characters), -ENOTSUP when libzmq
 * lacks CURVE. */
GW_EXTERN int gw_client_new(gw_client **out, const gw_client_options *opts);
GW_EXTERN void gw_client_free(gw_client *c);
GW_EXTERN const char *gw_client_endpoint(const gw_client *c);

/* The last call's failure. Strings belong to the client and stay valid until
 * its next call. */
typedef struct gw_client_error {
    gw_proto_code code;     /* GW_PROTO_OK after a successful call */
    const char *code_name;  /* as the daemon sent it (an unknown code keeps its
                               name; `code` is then GW_PROTO_INTERNAL), or the
                               name of the local code */
    const char *message;    /* the daemon's message, or the local reason */
    const char *field;      /* "args.address", ...; NULL when none */
    bool remote;            /* true: the daemon sent this error; false: it did
                               not answer in time (GW_PROTO_UNAVAILABLE), its
                               reply was unusable (GW_PROTO_MALFORMED,
                               GW_PROTO_UNSUPPORTED_VERSION), or the request
                               could not be encoded (GW_PROTO_INVALID_ARGUMENT) */
} gw_client_error;

GW_EXTERN const gw_client_error *gw_client_last_error(const gw_client *c);

/* Any op: `args` is a JSON object in JSON form (NULL = no arguments; reals
 * are refused with -EINVAL, floats do not exist in the protocol). For the ops
 * of protocol 1.0 the result's top-level fields are checked (-EPROTO when the
 * daemon's result lacks one or has the wrong type). */
GW_EXTERN int gw_client_call(gw_client *c, const char *op, const json_t *args, json_t **result);

/* Typed calls. Each hands out the op's result map as PROTOCOL.md §8 describes. */

/* {versions, daemon, host, endpoint, capabilities, ops} */
GW_EXTERN int gw_client_hello(gw_client *c, json_t **result);
/* {generation, host, model, deployables} */
GW_EXTERN int gw_client_inventory(gw_client *c, json_t **result);
/* The shim pushed `generation`: {generation, promoted}. */
GW_EXTERN int gw_client_published(gw_client *c, uint64_t generation, json_t **result);
/* {devices: [device, ...]}; state: only devices in that state, NULL = all. */
GW_EXTERN int gw_client_devices(gw_client *c, const char *state, json_t **result);
/* The device object plus `cleanup` and `steps`. */
GW_EXTERN int gw_client_device(gw_client *c, const char *address, json_t **result);
/* The device object after the change; reason is required for quarantine and
 * optional (NULL) for release. */
GW_EXTERN int gw_client_quarantine(gw_client *c, const char *address, const char *reason, json_t **result);
GW_EXTERN int gw_client_release(gw_client *c, const char *address, const char *reason, json_t **result);
GW_EXTERN int gw_client_sanitize(gw_client *c, const char *address, json_t **result);
/* Cyborg's disable (on) / enable (off), served on the read endpoint too:
 * on quarantines as "cyborg" (nothing changes when already quarantined);
 * off releases a quarantine that "cyborg" set (a clean-up follows), is
 * -EPERM for anyone else's, and changes nothing when not quarantined.
 * reason is required. The device object after the call. */
GW_EXTERN int gw_client_maintenance(gw_client *c, const char *address, bool on, const char *reason,
                                    json_t **result);

typedef struct gw_client_audit_filter {
    unsigned int version;
    const char *device;     /* NULL = every device */
    bool has_since;
    uint64_t since;         /* ms since the epoch */
    unsigned int limit;     /* 0 = the daemon's default (100) */
} gw_client_audit_filter;

#define GW_CLIENT_AUDIT_FILTER_VERSION 1
#define GW_CLIENT_AUDIT_FILTER_INIT { GW_CLIENT_AUDIT_FILTER_VERSION, NULL, false, 0, 0 }

/* {records, truncated}; filter NULL = no filter. */
GW_EXTERN int gw_client_audit(gw_client *c, const gw_client_audit_filter *filter, json_t **result);
/* libvirt hook hints: {devices: [the managed GPUs among addresses]}. */
GW_EXTERN int gw_client_attached(gw_client *c, const char *domain, const char *const *addresses, size_t n,
                                 json_t **result);
GW_EXTERN int gw_client_released(gw_client *c, const char *domain, const char *const *addresses, size_t n,
                                 json_t **result);
/* May `domain` start on these functions: {allowed, reasons}. A refusal is a
 * successful call with allowed = false. */
GW_EXTERN int gw_client_gate(gw_client *c, const char *domain, const char *const *addresses, size_t n,
                             json_t **result);
GW_EXTERN int gw_client_metrics(gw_client *c, json_t **result);

/* ---- events (PROTOCOL.md §9) ---- */

typedef struct gw_events gw_events;

typedef struct gw_events_options {
    unsigned int version;
    const char *endpoint;           /* NULL = GW_PROTO_EVENTS_ENDPOINT */
    const char *curve_server_key;   /* as in gw_client_options */
    const char *curve_public_key;
    const char *curve_secret_key;
} gw_events_options;

#define GW_EVENTS_OPTIONS_VERSION 1
#define GW_EVENTS_OPTIONS_INIT { GW_EVENTS_OPTIONS_VERSION, NULL, NULL, NULL, NULL }

typedef struct gw_event_msg {
    const char *topic;      /* "transition/0000:3b:00.0" */
    const char *kind;       /* "transition", "cleanup", or a kind newer than this library */
    const char *address;
    uint64_t seq, boot, time;
    /* Events lost just before this one: a gap in seq within one daemon run,
     * or the seq - 1 events of a new run that this subscriber never saw. */
    uint64_t missed;
    /* This event comes from a new daemon run (boot changed): state may have
     * changed unseen; resynchronise with gw_client_devices(). */
    bool restarted;
    json_t *body;           /* the whole body in JSON form, owned by the event */
} gw_event_msg;

/* Subscribe to every event (gap detection needs them all). */
GW_EXTERN int gw_events_new(gw_events **out, const gw_events_options *opts);
GW_EXTERN void gw_events_free(gw_events *ev);
/* Wait up to timeout_ms (negative = forever) for the next event. 0 and *out
 * (free it with gw_event_msg_free()); -ETIMEDOUT when none came; -EINTR when a
 * signal interrupted the wait; -EPROTO for an event that could not be
 * decoded, or whose seq went backwards within one run (it is dropped; the
 * next call goes on with the next event). */
GW_EXTERN int gw_events_next(gw_events *ev, int timeout_ms, gw_event_msg **out);
/* All events missed since gw_events_new(), as the per-event `missed` sums. */
GW_EXTERN uint64_t gw_events_missed(const gw_events *ev);
GW_EXTERN void gw_event_msg_free(gw_event_msg *event);

#ifdef __cplusplus
}
#endif
#endif
