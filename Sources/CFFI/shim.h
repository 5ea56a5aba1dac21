#include <ffi.h>

/* Swift 6 rejects C globals such as ffi_type_sint32 (mutable global state): these return their
 * addresses. */
static inline ffi_type *pbffi_void(void) { return &ffi_type_void; }
static inline ffi_type *pbffi_uint8(void) { return &ffi_type_uint8; }
static inline ffi_type *pbffi_sint8(void) { return &ffi_type_sint8; }
static inline ffi_type *pbffi_uint16(void) { return &ffi_type_uint16; }
static inline ffi_type *pbffi_sint16(void) { return &ffi_type_sint16; }
static inline ffi_type *pbffi_uint32(void) { return &ffi_type_uint32; }
static inline ffi_type *pbffi_sint32(void) { return &ffi_type_sint32; }
static inline ffi_type *pbffi_uint64(void) { return &ffi_type_uint64; }
static inline ffi_type *pbffi_sint64(void) { return &ffi_type_sint64; }
static inline ffi_type *pbffi_float(void) { return &ffi_type_float; }
static inline ffi_type *pbffi_double(void) { return &ffi_type_double; }
static inline ffi_type *pbffi_pointer(void) { return &ffi_type_pointer; }
