/* SPDX-License-Identifier: Apache-2.0 */
/* lab-mmio: read or write one register of a PCI BAR through the kernel's
 * sysfs resource<N> mmap, for the QEMU lab's guest. The lab uses it to leave
 * state in a device before a clean-up and to look for it afterwards.
 *
 *   lab-mmio ADDR BAR OFFSET WIDTH [VALUE]      BAR 0-5, WIDTH 1|2|4
 *   lab-mmio ADDR virtio-common OFFSET WIDTH [VALUE]
 *
 * "virtio-common" finds the virtio common configuration structure from the
 * device's vendor capabilities (cfg_type 1), as a virtio driver does.
 * Prints the value read (after the write, when one is given) in hex. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_config(const char *addr, uint8_t cfg[256])
{
    char path[256];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/config", addr);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    ssize_t n = pread(fd, cfg, 256, 0);
    close(fd);
    return n == 256 ? 0 : -EIO;
}

static int virtio_common(const char *addr, int *bar, unsigned long *off)
{
    uint8_t cfg[256];
    if (read_config(addr, cfg) < 0 || !(cfg[6] & 0x10))
        return -ENOENT;
    for (unsigned p = cfg[0x34] & 0xfc, hops = 0; p && hops < 48; p = cfg[p + 1] & 0xfc, hops++) {
        if (cfg[p] == 0x09 && cfg[p + 3] == 1) {
            *bar = cfg[p + 4];
            *off = cfg[p + 8] | cfg[p + 9] << 8 | cfg[p + 10] << 16 | (unsigned long)cfg[p + 11] << 24;
            return 0;
        }
    }
    return -ENOENT;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: lab-mmio ADDR BAR|virtio-common OFFSET WIDTH [VALUE]\n");
        return 2;
    }
    const char *addr = argv[1];
    int bar;
    unsigned long off = strtoul(argv[3], NULL, 0), base = 0;
    if (!strcmp(argv[2], "virtio-common")) {
        if (virtio_common(addr, &bar, &base) < 0) {
            fprintf(stderr, "%s: no virtio common configuration capability\n", addr);
            return 1;
        }
    } else {
        bar = atoi(argv[2]);
    }
    unsigned width = (unsigned)atoi(argv[4]);
    char path[256];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource%d", addr, bar);
    int fd = open(path, O_RDWR | O_SYNC);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    struct stat st;
    fstat(fd, &st);
    off += base;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), map = (off & ~(page - 1));
    if (off + width > (unsigned long)st.st_size) {
        fprintf(stderr, "%s: offset 0x%lx beyond the BAR (%lld bytes)\n", path, off, (long long)st.st_size);
        return 1;
    }
    volatile uint8_t *m = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)map);
    if (m == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    volatile uint8_t *r = m + (off - map);
    if (argc == 6) {
        unsigned long v = strtoul(argv[5], NULL, 0);
        if (width == 1) *(volatile uint8_t *)r = (uint8_t)v;
        else if (width == 2) *(volatile uint16_t *)r = (uint16_t)v;
        else *(volatile uint32_t *)r = (uint32_t)v;
    }
    unsigned long v = width == 1 ? *(volatile uint8_t *)r : width == 2 ? *(volatile uint16_t *)r
                                                                       : *(volatile uint32_t *)r;
    printf("0x%lx\n", v);
    munmap((void *)m, page);
    close(fd);
    return 0;
}
