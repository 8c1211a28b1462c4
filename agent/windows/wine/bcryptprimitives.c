/* A TEST AID for Wine 8 only, never shipped: real Windows (8.1 and later)
 * has bcryptprimitives.dll. Rust's standard library draws its random
 * numbers from ProcessPrng, which Wine 8 lacks; this DLL, placed next to
 * the .exe under Wine, forwards it to advapi32's RtlGenRandom
 * (SystemFunction036). Built by agent/windows/build --wine. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
