/*
 * pgtest - what the store's tests on PostgreSQL share: SQL run beside the
 * store, on the test's database (PEC_TEST_STORE, t/pectest/postgres.py),
 * and a fresh schema for one store.
 */
#ifndef PEC_TEST_PGTEST_H
#define PEC_TEST_PGTEST_H

#include "util/xalloc.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

/* SQL on the database CONNINFO names, outside any store; 0 when it worked. */
static inline int pg_sql(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

/* The store spec of SCHEMA in CONNINFO's database, the schema made afresh (empty); NULL on error.
 */
static inline char *pg_fresh_schema(const char *conninfo, const char *schema)
{
    char *sql = xasprintf("SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s CASCADE;"
                          " CREATE SCHEMA %s",
                          schema, schema);
    int rc = pg_sql(conninfo, sql);

    free(sql);
    return rc == 0 ? xasprintf("%s options='-csearch_path=%s'", conninfo, schema) : NULL;
}

#endif
