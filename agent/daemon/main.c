/* gpuwardend: the per-host daemon. */
#include <gpuwarden/common.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("gpuwardend %s\n", gw_version());
        return 0;
    }
    fprintf(stderr, "gpuwardend: the daemon is not built yet (issue 5)\n");
    return 1;
}
