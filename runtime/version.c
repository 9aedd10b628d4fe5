/*
 * weft_version, weft_version_number: the version the library was built as
 * (include/weft.h's WEFT_VERSION_*), for a program to compare at run time
 * with the one it was compiled against. Calls nothing (first in the layers).
 */
#include "weft.h"

WEFT_API const char *weft_version(void) { return WEFT_VERSION_STRING; }

WEFT_API unsigned weft_version_number(void) { return WEFT_VERSION_NUMBER; }
