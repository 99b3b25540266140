// OpenBLAS's C interface. cblas.h declares complex types with _Complex,
// which clang's -Wpedantic flags; this wrapper silences that one warning.
#pragma once
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wc99-extensions"
#endif
#include <cblas.h>
#if defined(__clang__)
#pragma clang diagnostic pop
#endif
