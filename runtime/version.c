/*
 * weft_version, weft_version_number: the version the library was built as
 * (include/weft.h's WEFT_VERSION_*), for a program to compare at run time
 * with the one it was compiled against. Calls nothing (first in the layers).
 */
#include "weft.h"

#define WEFT__STR2(x) #x
#define WEFT__STR(x) WEFT__STR2(x)

WEFT_API const char *weft_version(void)
{
    return WEFT__STR(WEFT_VERSION_MAJOR) "." WEFT__STR(WEFT_VERSION_MINOR) "." WEFT__STR(
        WEFT_VERSION_PATCH);
}

WEFT_API unsigned weft_version_number(void) { return WEFT_VERSION_NUMBER; }
