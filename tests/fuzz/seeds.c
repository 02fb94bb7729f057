/* SPDX-License-Identifier: Apache-2.0 */
/* gw-fuzz-seeds SOURCE_DIR OUT_DIR: writes the seed corpus of every fuzz
 * target to OUT_DIR/<target>/, made at build time from the repository's own
 * data, so that no binary corpus is kept in git and the seeds follow the
 * formats as they change:
 *
 *   proto_request    every proto/vectors/ *.msgpack, as it is;
 *   client_reply     every rep_* and err_* vector behind "<op>\n";
 *   client_events    every ev_* vector as a record, and all of them in one;
 *   domain_xml       tests/fixtures/libvirt/ *.xml, and a domain passing
 *                    through every GPU of each fixture host;
 *   clique_override  each fixture host's cliques as an override file;
 *   rom_allowlist    each fixture host's GPU ids with made-up hashes;
 *   checkpoint,      the files a registry writes when the library drives
 *   audit            each fixture host's GPUs through their lifecycle
 *                    (clean-up, publication, attach, quarantine, a clean-up
 *                    left running, a GPU gone);
 *   config           packaging/gpuwarden.conf, and one with [model] sections
 *                    for each fixture host's GPU models;
 *   curve_allowlist  two keys, a comment and blank lines.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <gpuwarden/registry.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "record.h"
#include "util.h"

static const char *src_dir, *out_dir;
static unsigned written;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("gw-fuzz-seeds: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, got;
    char *buf = gw_xcalloc(cap + 1, 1);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            buf = gw_xrealloc(buf, 2 * cap + 1, 1);
            cap *= 2;
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void put(const char *target, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
        die("%s: %s", path, strerror(errno));
    written++;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Files of `dir` ending in `suffix`, sorted; free each and the array. */
static size_t list_dir(const char *dir, const char *suffix, char ***names)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, by_name);
    if (n < 0)
        die("%s: %s", dir, strerror(errno));
    *names = gw_xcalloc((size_t)n + 1, sizeof **names);
    size_t k = 0, sl = strlen(suffix);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(ents[i]->d_name);
        if (l > sl && !strcmp(ents[i]->d_name + l - sl, suffix))
            (*names)[k++] = gw_strdup_printf("%.*s", (int)(l - sl), ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    return k;
}

/* ---- protocol vectors ---- */

static void vectors(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/proto/vectors", src_dir);
    char **names;
    size_t n = list_dir(dir, ".msgpack", &names);
    char *all_events = NULL;
    size_t all_len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *path = gw_strdup_printf("%s/%s.msgpack", dir, names[i]);
        char *bytes = read_all(path, &len);
        free(path);
        put("proto_request", names[i], bytes, len);

        if (!strncmp(names[i], "rep_", 4) || !strncmp(names[i], "err_", 4)) {
            path = gw_strdup_printf("%s/%s.json", dir, names[i]);
            json_t *twin = json_load_file(path, 0, NULL);
            free(path);
            const char *op = json_string_value(json_object_get(twin, "op"));
            size_t ol = strlen(op ? op : "hello");
            char *seed = gw_xcalloc(ol + 1 + len, 1);
            memcpy(seed, op ? op : "hello", ol);
            seed[ol] = '\n';
            memcpy(seed + ol + 1, bytes, len);
            put("client_reply", names[i], seed, ol + 1 + len);
            free(seed);
            json_decref(twin);
        }
        if (!strncmp(names[i], "ev_", 3) && len < 65536) {
            /* [flags][len lo][len hi][body]: flags 1 = the body's own topic. */
            char *rec = gw_xcalloc(len + 3, 1);
            rec[0] = 1, rec[1] = (char)(len & 0xff), rec[2] = (char)(len >> 8);
            memcpy(rec + 3, bytes, len);
            put("client_events", names[i], rec, len + 3);
            all_events = gw_xrealloc(all_events, all_len + len + 3, 1);
            memcpy(all_events + all_len, rec, len + 3);
            all_len += len + 3;
            free(rec);
        }
        free(bytes);
        free(names[i]);
    }
    free(names);
    if (all_events)
        put("client_events", "all_events_in_order", all_events, all_len);
    free(all_events);
}

/* ---- fixture hosts ---- */

typedef struct host_gpu {
    const char *address;
    unsigned vendor, device, sub_vendor, sub_device;
    bool dsn;
} host_gpu;

static unsigned hex(const char *s)
{
    return s ? (unsigned)strtoul(s, NULL, 16) : 0;
}

static size_t host_gpus(json_t *host, host_gpu **out)
{
    json_t *gpus = json_object_get(host, "gpus");
    size_t n = json_array_size(gpus);
    *out = gw_xcalloc(n + 1, sizeof **out);
    for (size_t i = 0; i < n; i++) {
        json_t *g = json_array_get(gpus, i);
        host_gpu *h = &(*out)[i];
        h->address = json_string_value(json_object_get(g, "address"));
        h->vendor = hex(json_string_value(json_object_get(g, "vendor_id")));
        h->device = hex(json_string_value(json_object_get(g, "device_id")));
        const char *sub = json_string_value(json_object_get(g, "subsystem"));
        if (sub && strlen(sub) == 9) {
            h->sub_vendor = hex(sub);
            h->sub_device = hex(sub + 5);
        }
        h->dsn = json_is_true(json_object_get(g, "dsn"));
        if (!h->address || !gw_is_bdf(h->address))
            die("a GPU of a fixture host has no address");
    }
    return n;
}

static void domain_xml(const char *name, const host_gpu *g, size_t n)
{
    char *xml = gw_strdup_printf("<domain type='kvm'>\n  <name>%s</name>\n  <devices>\n", name);
    for (size_t i = 0; i < n; i++) {
        unsigned dom, bus, slot, fn;
        sscanf(g[i].address, "%x:%x:%x.%x", &dom, &bus, &slot, &fn);
        /* Every other one without its domain attribute (libvirt's 0). */
        char dattr[32] = "";
        if (i % 2 == 0)
            snprintf(dattr, sizeof dattr, "domain='0x%04x' ", dom);
        char *more = gw_strdup_printf(
            "%s    <%s type='%s' managed='yes'>\n      <source>\n"
            "        <address %sbus='0x%02x' slot='0x%02x' function='0x%x'/>\n      </source>\n"
            "      <address type='pci' domain='0x0000' bus='0x%02zx' slot='0x00' function='0x0'/>\n    </%s>\n",
            xml, i % 3 == 2 ? "interface" : "hostdev", i % 3 == 2 ? "hostdev" : "pci",
            dattr, bus, slot, fn, i + 6,
            i % 3 == 2 ? "interface" : "hostdev");
        free(xml);
        xml = more;
    }
    char *doc = gw_strdup_printf("%s  </devices>\n</domain>\n", xml);
    free(xml);
    char *file = gw_strdup_printf("%s.xml", name);
    put("domain_xml", file, doc, strlen(doc));
    free(file);
    free(doc);
}

static void clique_override(const char *name, json_t *host, const host_gpu *g, size_t n)
{
    json_t *cliques = json_object_get(host, "cliques");
    char *text = gw_strdup_printf("# NVLink partitions of %s\n", name);
    size_t k = json_array_size(cliques);
    for (size_t i = 0; i < k; i++) {
        json_t *c = json_array_get(cliques, i);
        char *line = gw_strdup_printf("%zu =", i);
        for (size_t j = 0; j < json_array_size(c); j++) {
            char *more = gw_strdup_printf("%s%s %s", line, j && i % 2 ? "," : "",
                                          json_string_value(json_array_get(c, j)));
            free(line);
            line = more;
        }
        char *more = gw_strdup_printf("%s%s\n", text, line);
        free(line);
        free(text);
        text = more;
    }
    if (k == 0 && n >= 2) {
        char *more = gw_strdup_printf("%s\n7 = %s %s   # two GPUs the topology does not pair\n", text,
                                      g[0].address, g[1].address);
        free(text);
        text = more;
    }
    put("clique_override", name, text, strlen(text));
    free(text);
}

static void rom_allowlist(const char *name, const host_gpu *g, size_t n)
{
    char *text = gw_strdup_printf("# VBIOS images accepted on %s\n\n", name);
    for (size_t i = 0; i < n; i++) {
        unsigned char md[32];
        unsigned mdlen = 0;
        char sha[65];
        EVP_Digest(g[i].address, strlen(g[i].address), md, &mdlen, EVP_sha256(), NULL);
        for (unsigned b = 0; b < 32; b++)
            snprintf(sha + 2 * b, 3, i % 2 ? "%02X" : "%02x", md[b]);
        char *more = i % 2 ? gw_strdup_printf("%s%04x:%04x:%04x:%04x\t%s  # %s\n", text, g[i].vendor, g[i].device,
                                              g[i].sub_vendor, g[i].sub_device, sha, g[i].address)
                           : gw_strdup_printf("%s%04x:%04x %s\n", text, g[i].vendor, g[i].device, sha);
        free(text);
        text = more;
    }
    put("rom_allowlist", name, text, strlen(text));
    free(text);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Drive the host's GPUs through the lifecycle with the library itself, and
 * keep the checkpoint and the audit log it wrote. Refusals by the table
 * are ignored: the aim is varied records, not a scenario. */
static void registry_files(const char *name, const host_gpu *g, size_t n)
{
    char dir[] = "/tmp/gw-fuzz-seeds.XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = dir;
    gw_registry *reg;
    if (gw_registry_open(&reg, &o) < 0)
        die("gw_registry_open %s: %s", dir, gw_error_message());
    gw_identity *ids = gw_xcalloc(n + 1, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i].address, sizeof ids[i].address, "%s", g[i].address);
        ids[i].vendor_id = (uint16_t)g[i].vendor;
        ids[i].device_id = (uint16_t)g[i].device;
        ids[i].subsystem_vendor_id = (uint16_t)g[i].sub_vendor;
        ids[i].subsystem_device_id = (uint16_t)g[i].sub_device;
        ids[i].dsn_present = g[i].dsn;
        ids[i].dsn = g[i].dsn ? 0x0123456789abcdefull + i : 0;
    }
    gw_registry_sync(reg, ids, n, "seed");

    gw_cleanup_step steps[] = {
        { "reset", "pass", "flr", 120 },
        { "scrub", "skip", "no scrub method for this model", 0 },
        { "firmware", "pass", "rom sha256 in the allowlist", 35 },
        { "health", "fail", "AER fatal error count went from 0 to 1", 12 },
    };
    gw_cleanup_result pass = { 1700000000000, 1700000001500, true, steps, 3 };
    gw_cleanup_result fail = { 1700000002000, 1700000003000, false, steps, 4 };
    for (size_t i = 0; i < n; i++) {
        const char *a = g[i].address;
        gw_apply_options ap = GW_APPLY_OPTIONS_INIT;
        ap.actor = "seed";
        gw_registry_apply(reg, a, GW_EVENT_CLEANUP_STARTED, &ap, NULL);
        switch (i % 5) {
        case 0:
            ap.cleanup = &pass;
            gw_registry_apply(reg, a, GW_EVENT_CLEANUP_PASSED, &ap, NULL);
            ap.cleanup = NULL;
            gw_registry_set_fact(reg, a, "rom_sha256", "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff");
            gw_registry_apply(reg, a, GW_EVENT_PUBLISHED, &ap, NULL);
            gw_registry_apply(reg, a, GW_EVENT_ATTACH_SEEN, &ap, NULL);
            break;
        case 1:
            ap.cleanup = &fail;
            ap.reason = "health: AER fatal error";
            gw_registry_apply(reg, a, GW_EVENT_CLEANUP_FAILED, &ap, NULL);
            break;
        case 2:
            break;      /* left cleaning: the next read-write open recovers it */
        case 3:
            ap.reason = "fan noise \"loud\"\n\xc3\xa9t\xc3\xa9";
            ap.evidence = "operator";
            gw_registry_apply(reg, a, GW_EVENT_QUARANTINE, &ap, NULL);
            break;
        case 4:
            ap.cleanup = &pass;
            gw_registry_apply(reg, a, GW_EVENT_CLEANUP_PASSED, &ap, NULL);
            ap.cleanup = NULL;
            ap.reason = "re-check";
            gw_registry_apply(reg, a, GW_EVENT_SANITIZE, &ap, NULL);
            break;
        }
    }
    if (n > 1)
        gw_registry_sync(reg, ids, n - 1, "seed");     /* the last GPU is gone */
    gw_registry_free(reg);
    free(ids);

    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/" GW_CHECKPOINT_NAME, dir);
    char *file = read_all(path, &len);
    put("checkpoint", name, file, len);
    free(file);
    snprintf(path, sizeof path, "%s/" GW_AUDIT_NAME, dir);
    file = read_all(path, &len);
    put("audit", name, file, len);
    /* A record cut short by a crash, as the daemon must find it. */
    if (len > 10) {
        char *torn = gw_strdup_printf("%s_torn", name);
        put("audit", torn, file, len - 10);
        free(torn);
    }
    free(file);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void hosts(char **models_conf)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/hosts", src_dir);
    char **names;
    size_t n = list_dir(dir, ".json", &names);
    for (size_t i = 0; i < n; i++) {
        char *path = gw_strdup_printf("%s/%s.json", dir, names[i]);
        json_error_t jerr;
        json_t *host = json_load_file(path, 0, &jerr);
        if (!host)
            die("%s: %s", path, jerr.text);
        free(path);
        host_gpu *g;
        size_t k = host_gpus(host, &g);
        clique_override(names[i], host, g, k);
        rom_allowlist(names[i], g, k);
        if (k > 0 && k <= 8) {
            /* Large hosts make large inputs, and slow executions. */
            domain_xml(names[i], g, k);
            registry_files(names[i], g, k);
        }
        for (size_t j = 0; j < k && j < 2; j++) {
            char id[16];
            snprintf(id, sizeof id, "%04x:%04x", g[j].vendor, g[j].device);
            if (strstr(*models_conf, id))
                continue;
            char *more = gw_strdup_printf(
                j ? "%s\n[model %s]\nreset = flr+bus\nscrub = bar\nscrub_bar = 1\nscrub_verify_fraction = 0.25\n"
                  : "%s\n[model %s]\nreset = auto\nscrub = driver\nscrub_driver = nvidia\n"
                    "scrub_driver_ready = nvidia\nscrub_commands = /usr/bin/nvidia-smi -r && /bin/true\n"
                    "scrub_command_timeout_s = 30\n",
                *models_conf, id);
            free(*models_conf);
            *models_conf = more;
        }
        free(g);
        json_decref(host);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        die("usage: gw-fuzz-seeds SOURCE_DIR OUT_DIR");
    src_dir = argv[1];
    out_dir = argv[2];
    gw_log_set_level(-1);
    nftw(out_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);      /* no seed outlives its source */
    if (mkdir(out_dir, 0755) < 0)
        die("%s: %s", out_dir, strerror(errno));

    vectors();

    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/libvirt", src_dir);
    char **names;
    size_t n = list_dir(dir, ".xml", &names);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *path = gw_strdup_printf("%s/%s.xml", dir, names[i]);
        char *file = gw_strdup_printf("libvirt_%s.xml", names[i]);
        char *xml = read_all(path, &len);
        put("domain_xml", file, xml, len);
        free(path);
        free(file);
        free(xml);
        free(names[i]);
    }
    free(names);

    char *models = gw_xstrdup("[daemon]\nhost_backend = simulated\nhost_root = /nonexistent/tree\n"
                              "log_level = debug\n\n[cleanup]\nworkers = 2\nstep_timeout_s = 600\n");
    hosts(&models);
    put("config", "models.conf", models, strlen(models));
    free(models);
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/packaging/gpuwarden.conf", src_dir);
    char *conf = read_all(path, &len);
    put("config", "packaging_gpuwarden.conf", conf, len);
    free(conf);

    /* Two listed keys (the Z85 test vectors of ZeroMQ's RFC 32), a comment
     * and blank lines, as an operator writes the file. */
    static const char curve[] = "# who may use the tcp admin endpoint\n"
                                "\n"
                                "ops-1 Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\n"
                                "\tcyborg@cmp1   rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n";
    put("curve_allowlist", "two-keys", curve, sizeof curve - 1);

    printf("gw-fuzz-seeds: %u seed(s) in %s\n", written, out_dir);
    return 0;
}
