/* SPDX-License-Identifier: Apache-2.0 */
/* libvirt loaded on first use (agent/lib/libvirt_dl.c): nothing maps it
 * before, every symbol resolves to libvirt's own, and a missing or wrong
 * library is a clear error. This binary does not link libvirt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include <gpuwarden/attach.h>

#include "libvirt_dl.h"

static bool libvirt_mapped(void)
{
    void *dl = dlopen(GW_LIBVIRT_SONAME, RTLD_NOW | RTLD_NOLOAD);
    if (dl)
        dlclose(dl);
    return dl != NULL;
}

static void missing_library_is_a_clear_error(void **state)
{
    assert_int_equal(gw_libvirt_dlopen_check("libgpuwarden-test-no-such-library.so.0"), -EOPNOTSUPP);
    const char *m = gw_error_message();
    assert_non_null(strstr(m, "cannot load libgpuwarden-test-no-such-library.so.0"));
    assert_non_null(strstr(m, "install libvirt0"));
    assert_non_null(strstr(m, "cannot open shared object file"));   /* dlerror()'s reason */
}

static void library_without_the_symbols_is_a_clear_error(void **state)
{
    assert_int_equal(gw_libvirt_dlopen_check("libc.so.6"), -ELIBBAD);
    assert_non_null(strstr(gw_error_message(), "libc.so.6 has no symbol virConnectClose"));
    assert_null(sym_virConnectClose);   /* the check publishes nothing */
}

static void loads_on_first_use_only(void **state)
{
    /* Everything above, and linking the library's objects, left it unmapped. */
    assert_false(libvirt_mapped());
    assert_null(sym_virConnectOpen);

    /* Bad options are refused before anything is loaded. */
    gw_attach_source *src = NULL;
    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.uri = "";
    assert_int_equal(gw_attach_libvirt_new(&src, &o), -EINVAL);
    assert_false(libvirt_mapped());

    assert_int_equal(gw_libvirt_dlopen(), 0);
    assert_int_equal(gw_libvirt_dlopen(), 0);   /* once */
    assert_true(libvirt_mapped());

    void *dl = dlopen(GW_LIBVIRT_SONAME, RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(dl);
#define SAME(name) assert_ptr_equal((void *)sym_##name, dlsym(dl, #name));
    GW_LIBVIRT_SYMBOLS(SAME)
#undef SAME
    dlclose(dl);

    /* And it works: the test driver through the pointers. */
    virConnectPtr c = sym_virConnectOpenReadOnly("test:///default");
    assert_non_null(c);
    assert_int_equal(sym_virConnectIsAlive(c), 1);
    assert_int_equal(sym_virConnectClose(c), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(missing_library_is_a_clear_error),
        cmocka_unit_test(library_without_the_symbols_is_a_clear_error),
        cmocka_unit_test(loads_on_first_use_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
