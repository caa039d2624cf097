/*
 * pecctl audit - placeholder, being written (see pecctl.h).
 */
#include "pecctl.h"

int pecctl_audit(struct ctl *c, int argc, char **argv)
{
    (void)c;
    (void)argc;
    (void)argv;
    fprintf(stderr, "pecctl: audit: not implemented yet\n");
    return 69;
}
