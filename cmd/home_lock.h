/* One server per home: qtsp serve holds an exclusive flock on
 * DIR/serve.lock for as long as it (or any worker it forked) lives. The
 * kernel drops the lock when the last holder exits, also after kill -9, so
 * a stale file never blocks a later start. */
#ifndef QTSP_CMD_HOME_LOCK_H
#define QTSP_CMD_HOME_LOCK_H

#include "core/err.h"

/* Takes the lock of home (creating DIR/serve.lock, mode 0600) and keeps its
 * descriptor open for the life of the process; forked workers inherit it.
 * QTSP_ERR_STATE "another qtsp serve ... is running" when held by another
 * process, QTSP_ERR_IO when the file cannot be opened. Call once, from the
 * main thread, before forking. */
qtsp_status cmd_home_lock_serve(const char *home) QTSP_MUST_USE;

#endif
