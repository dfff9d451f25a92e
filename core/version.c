/* The build's version string (CMakeLists.txt defines QTSP_VERSION). */
#include "core/version.h"

#ifndef QTSP_VERSION
#define QTSP_VERSION "unknown"
#endif
#ifndef QTSP_RELEASE
#define QTSP_RELEASE "unknown"
#endif
#ifndef QTSP_COMMIT
#define QTSP_COMMIT ""
#endif

const char *qtsp_version(void)
{
    return QTSP_VERSION;
}

const char *qtsp_version_release(void)
{
    return QTSP_RELEASE;
}

const char *qtsp_version_commit(void)
{
    return QTSP_COMMIT;
}
