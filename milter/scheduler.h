/*
 * scheduler - the daemon's timer thread: the sender side's 12 h and 24 h
 * timeout notices, the daily seal of the legal log and the retention purge
 * (lib/provider/scheduler.h decides what is due; this thread only waits for it).
 *
 * Each round takes the current runtime (so a reload's durations, key and
 * clock apply from the next round), seals the finished days when the
 * daily time has come (at start-up too, for days missed while the daemon
 * was down), queues the notices due, then sleeps until the next one is
 * due, at most warning_after and at most ten minutes, so transactions opened
 * meanwhile are never late.  Failures are logged and retried later (a
 * minute for notices, five for the seal); they never stop the daemon.
 *
 * Call scheduler_start() once the store is open and the signal mask is set
 * (the thread inherits it); scheduler_stop() before the injector is stopped.
 */
#ifndef PECMILTER_SCHEDULER_H
#define PECMILTER_SCHEDULER_H

/* 0, or -1 after logging why. */
int scheduler_start(void);

/* Let the round in progress finish, then stop the thread. */
void scheduler_stop(void);

#endif
