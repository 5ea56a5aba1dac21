/*
 * Compiles plugboard.h as part of the package so that its _Static_asserts run
 * on every build, and gives the header's C module an object file to link.
 */
#include "plugboard.h"

/** The ABI version this copy of the header declares (for `plugboard --version`). */
__attribute__((visibility("hidden"))) uint32_t pb_header_abi_version(void);
uint32_t pb_header_abi_version(void) { return PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR); }
