// AVX-512 intrinsics, for the few loops gcc does not vectorise by itself
// (row maxima, dropout's Philox rounds); each keeps a scalar path for other
// CPUs. gcc 12's AVX-512 headers build some intrinsics' results from an
// "undefined" register and then warn that it may be used uninitialized (GCC
// bug 105593, fixed in 12.3): a function using them sits between
// MP_AVX512_BEGIN and MP_AVX512_END, which silence that warning there only.
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define MP_AVX512_BEGIN _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define MP_AVX512_END _Pragma("GCC diagnostic pop")
#else
#define MP_AVX512_BEGIN
#define MP_AVX512_END
#endif
