/*
 * pecctl status - placeholder, being written (see pecctl.h).
 */
#include "pecctl.h"

int pecctl_status(struct ctl *c, int argc, char **argv)
{
    (void)c;
    (void)argc;
    (void)argv;
    fprintf(stderr, "pecctl: status: not implemented yet\n");
    return 69;
}
