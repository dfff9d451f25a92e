/* The version of this build: the project version and, when built from a git
 * checkout, the commit (`qtsp --version`, the build info of /metrics). */
#ifndef QTSP_CORE_VERSION_H
#define QTSP_CORE_VERSION_H

/* "0.16.0 (88d9a41)" or "0.16.0"; a static string. Thread-safe. */
const char *qtsp_version(void);
/* Its parts, for the build info of /metrics: "0.16.0", and the commit
 * ("88d9a41", "88d9a41-dirty"; "" outside a git checkout). Static strings. */
const char *qtsp_version_release(void);
const char *qtsp_version_commit(void);

#endif
