/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

static void bdf_shapes(void **state)
{
    assert_true(gw_is_bdf("0000:3b:00.0"));
    assert_true(gw_is_bdf("ffff:ff:1f.7"));
    assert_false(gw_is_bdf("0000:3b:20.0"));   /* device > 0x1f */
    assert_false(gw_is_bdf("0000:3b:00.8"));   /* function > 7 */
    assert_false(gw_is_bdf("0000:3B:00.0"));   /* sysfs is lower-case */
    assert_false(gw_is_bdf("3b:00.0"));
    assert_false(gw_is_bdf("0000:3b:00.0 "));
    assert_false(gw_is_bdf("pci0000:00"));
}

static void read_file_strips_newline_and_reports_path(void **state)
{
    char dir[] = "/tmp/gw-util-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *p = gw_strdup_printf("%s/numa_node", dir);
    FILE *f = fopen(p, "w");
    fputs("-1\n", f);
    fclose(f);
    long v = 0;
    assert_int_equal(gw_read_long(p, 10, &v), 0);
    assert_int_equal(v, -1);

    f = fopen(p, "w");
    fputs("banana\n", f);
    fclose(f);
    assert_int_equal(gw_read_long(p, 10, &v), -EINVAL);
    assert_non_null(strstr(gw_error_message(), "numa_node"));

    unlink(p);
    assert_int_equal(gw_read_long(p, 10, &v), -ENOENT);
    assert_non_null(strstr(gw_error_message(), p));
    free(p);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bdf_shapes),
        cmocka_unit_test(read_file_strips_newline_and_reports_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
