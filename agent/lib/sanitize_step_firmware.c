/* SPDX-License-Identifier: Apache-2.0 */
/* Step firmware: read the VBIOS through sysfs `rom` (write "1" to enable,
 * read, write exactly "0\n" to disable: any other write, "0" without the
 * newline included, enables it), SHA-256 it, and compare with the operator's
 * allowlist for vendor:device:subsystem, else with the hash pinned at the
 * device's first clean-up. What the read returns is what the kernel lets
 * through: the ROM's images up to the one flagged last, not the whole BAR;
 * no valid image at all is EIO, and a failure. */
#include <openssl/evp.h>
#include <string.h>

#include "sanitize_internal.h"

#define PIN_ROM "sanitize.rom_sha256"
#define ROM_MAX ((size_t)64 << 20)

static int sha256_hex(const void *buf, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return gw_error_set(-EIO, "SHA-256 failed (OpenSSL)");
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static gw_verdict compare(gw_sctx *c, const char *hash)
{
    const char *a = c->address;
    uint16_t ven, dev, sven, sdev;
    if (gw_dev_config16(c->ops, a, 0x00, &ven) < 0 || gw_dev_config16(c->ops, a, 0x02, &dev) < 0 ||
        gw_dev_config16(c->ops, a, 0x2c, &sven) < 0 || gw_dev_config16(c->ops, a, 0x2e, &sdev) < 0)
        return gw_fail(c, "IDs unreadable: %s", gw_error_message());
    char id4[20], id2[10];
    snprintf(id4, sizeof id4, "%04x:%04x:%04x:%04x", ven, dev, sven, sdev);
    snprintf(id2, sizeof id2, "%04x:%04x", ven, dev);

    const gw_sanitize_policy *pol = &c->policy->pol;
    const char *ids[2] = { id4, id2 };
    for (int k = 0; k < 2; k++) {
        size_t named = 0;
        for (size_t i = 0; i < pol->n_rom_allowlist; i++) {
            if (strcmp(pol->rom_allowlist[i].id, ids[k]))
                continue;
            named++;
            if (!strcmp(pol->rom_allowlist[i].sha256, hash)) {
                gw_note(c, "sha256 %s allowed for %s by the allowlist", hash, ids[k]);
                return GW_VERDICT_PASS;
            }
        }
        if (named)
            return gw_fail(c, "sha256 %s is not in the allowlist for %s (%zu allowed hash%s)", hash, ids[k], named,
                           named == 1 ? "" : "es");
    }
    const char *pin = gw_pin_get(c, PIN_ROM);
    if (!pin) {
        gw_pin_set(c, PIN_ROM, hash);
        gw_note(c, "sha256 %s pinned at the first clean-up (%s not in the allowlist)", hash, id4);
        return GW_VERDICT_PASS;
    }
    if (strcmp(pin, hash))
        return gw_fail(c, "sha256 %s changed vs the pin %s from the first clean-up", hash, pin);
    gw_note(c, "sha256 %s matches the pin", hash);
    return GW_VERDICT_PASS;
}

#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x0002

/* The kernel's ROM read turns the ROM BAR on but not the Command register's
 * Memory Space bit (pci_map_rom). A device no firmware or driver enabled -
 * hot-plugged, or on vfio-pci and never opened - then reads zeros, and the
 * kernel refuses them with EIO (measured in the QEMU lab). The sysfs
 * `enable` attribute is refused (EBUSY) while vfio-pci is bound, so turn
 * decoding on in config space for the read, as vfio-pci does when it opens
 * the device, and back off after. *restore is set when it was turned on. */
static int decoding_on(gw_sctx *c, uint16_t *restore, bool *turned_on)
{
    uint16_t cmd;
    *turned_on = false;
    if (gw_dev_config16(c->ops, c->address, PCI_COMMAND, &cmd) < 0) {
        gw_fail(c, "Command register unreadable: %s", gw_error_message());
        return -EIO;
    }
    if (cmd & PCI_COMMAND_MEMORY)
        return 0;
    uint16_t on = (uint16_t)(cmd | PCI_COMMAND_MEMORY);
    uint8_t le[2] = { (uint8_t)on, (uint8_t)(on >> 8) };
    if (gw_host_write_config(c, c->address, PCI_COMMAND, le, 2) < 0) {
        gw_fail(c, "Memory Space decoding is off and could not be turned on for the ROM read");
        return -EIO;
    }
    gw_note(c, "Memory Space decoding was off: on for the ROM read");
    *restore = cmd;
    *turned_on = true;
    return 0;
}

static void decoding_restore(gw_sctx *c, uint16_t cmd)
{
    uint8_t le[2] = { (uint8_t)cmd, (uint8_t)(cmd >> 8) };
    if (gw_host_write_config(c, c->address, PCI_COMMAND, le, 2) < 0)
        gw_note(c, "Memory Space decoding could not be turned off again");
}

static gw_verdict run(gw_sctx *c)
{
    const char *a = c->address;
    _cleanup_free_ char *rom = gw_dev_path(a, "rom");
    if (gw_hostops_exists(c->ops, rom) < 0)
        return gw_skip(c, "no ROM BAR (no sysfs rom attribute): nothing to hash");
    uint16_t cmd_before = 0;
    bool turned_on;
    if (decoding_on(c, &cmd_before, &turned_on) < 0)
        return GW_VERDICT_FAIL;
    if (gw_host_write(c, a, rom, "1", 1) < 0) {
        if (turned_on)
            decoding_restore(c, cmd_before);
        return gw_fail(c, "cannot enable ROM reads");
    }
    _cleanup_free_ char *img = NULL;
    size_t len = 0;
    int rr = gw_hostops_read(c->ops, rom, ROM_MAX, &img, &len);
    _cleanup_free_ char *read_err = rr < 0 ? gw_xstrdup(gw_error_message()) : NULL;
    /* Always disable again, also after a failed read. */
    int rd = gw_host_write(c, a, rom, "0\n", 2);
    if (turned_on)
        decoding_restore(c, cmd_before);
    /* The kernel sizes the ROM by its images (pci_get_rom_size) and refuses
     * the read with EIO when the first has no 55 AA header or no PCIR
     * structure: there is no firmware image it would hand a VM either, and
     * nothing to hash. A GPU whose VBIOS cannot be verified is not offered. */
    if (rr == -EIO)
        return gw_fail(c, "ROM read failed with EIO (%s): the kernel found no valid ROM image (55 AA header "
                       "and PCIR structure), so the firmware cannot be verified", read_err);
    if (rr < 0)
        return gw_fail(c, "ROM read failed: %s", read_err);
    if (rd < 0)
        return gw_fail(c, "ROM read but not disabled again");
    if (len == 0)
        return gw_skip(c, "ROM read returned 0 bytes: no ROM image to hash");
    const unsigned char *u = (const unsigned char *)img;
    gw_note(c, "ROM %zu bytes%s", len, len >= 2 && u[0] == 0x55 && u[1] == 0xaa ? "" : " (no 55aa signature)");
    char hash[65];
    if (sha256_hex(img, len, hash) < 0)
        return gw_fail(c, "%s", gw_error_message());
    return compare(c, hash);
}

const gw_step_def gw_step_firmware = { GW_STEP_FIRMWARE, "firmware", run };
