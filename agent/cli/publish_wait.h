/* SPDX-License-Identifier: Apache-2.0 */
/* Waiting until Placement shows an inventory revision: after the hook's
 * `release end` and after `gpuwarden quarantine`, both of which take a GPU
 * out of Placement's offer (docs/libvirt.md, docs/cli.md). */
#ifndef GW_CLI_PUBLISH_WAIT_H
#define GW_CLI_PUBLISH_WAIT_H

#include <stdint.h>

#define CLI_PUBLISH_POLL_MS 50          /* how often `metrics` is asked */
#define CLI_PUBLISH_WAIT_MAX_S 600      /* longer is a mistake (libvirtd blocks on the hook meanwhile) */
#define CLI_PUBLISH_WAIT_DEFAULT_MS 10000

typedef enum cli_publish_outcome {
    CLI_PUBLISH_REACHED,        /* published_revision reached the revision */
    CLI_PUBLISH_NO_WRITER,      /* nothing to wait for: no Placement writer has confirmed anything since
                                   the daemon started (or the daemon does not say) */
    CLI_PUBLISH_TIMEOUT,        /* wait_ms passed first */
    CLI_PUBLISH_RESTARTED,      /* the daemon restarted meanwhile: its revisions mean something else now */
    CLI_PUBLISH_ERROR,          /* `metrics` failed; cli_publish_wait.error says why */
} cli_publish_outcome;

typedef struct cli_publish_wait {
    const char *endpoint;       /* the daemon's request endpoint */
    const char *actor;          /* the client's actor, for the daemon's log */
    unsigned int timeout_ms;    /* per request (capped at wait_ms) */
    unsigned int wait_ms;       /* the whole wait, > 0 */
    /* The revision to wait for; 0: the daemon's current one (`metrics.revision`) at the first
     * poll, i.e. the content right after a change the caller just made. Set on return. */
    uint64_t revision;
    uint64_t published;         /* out: the last `published_revision` seen */
    char error[512];            /* out: why, after CLI_PUBLISH_ERROR */
} cli_publish_wait;

/* Poll `metrics` every CLI_PUBLISH_POLL_MS until `published_revision` >=
 * w->revision, while a Placement writer is active (`published` > 0). Prints
 * nothing: the caller says what each outcome means for it. */
cli_publish_outcome cli_wait_published(cli_publish_wait *w);

/* "SECONDS" with an optional fraction, 0..CLI_PUBLISH_WAIT_MAX_S, as ms
 * (0 disables the wait); -1 when it is not that. */
int cli_parse_publish_wait(const char *s, unsigned int *ms);

#endif
