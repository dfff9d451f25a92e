/* The build's version string (CMakeLists.txt defines QTSP_VERSION). */
#include "core/version.h"

#ifndef QTSP_VERSION
#define QTSP_VERSION "unknown"
#endif

const char *qtsp_version(void)
{
    return QTSP_VERSION;
}
