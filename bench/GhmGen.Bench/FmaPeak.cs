// The machine's single-precision FMA peak: a register-only loop of independent Vector512 (or
// Vector256) fused multiply-adds on 1..n threads, no memory traffic. Compare GFLOP/s of the
// convolutions against it.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Bench;

/// <summary>Measures FMA throughput with a tight register-only loop.</summary>
public static class FmaPeak
{
    private const int Accumulators = 12;

    /// <summary>Floating-point operations of <see cref="Loop"/> for <paramref name="iterations"/>.</summary>
    public static double Flops(long iterations) => 2.0 * iterations * Accumulators * (Avx512F.IsSupported ? 16 : 8);

    /// <summary>GFLOP/s of <paramref name="threads"/> threads each running <paramref name="iterations"/> iterations.</summary>
    public static double Measure(int threads, long iterations)
    {
        Loop(1000);
        long start = Stopwatch.GetTimestamp();
        Run(threads, iterations);
        return threads * Flops(iterations) / Stopwatch.GetElapsedTime(start).TotalSeconds / 1e9;
    }

    /// <summary>Runs <see cref="Loop"/> on <paramref name="threads"/> threads at once.</summary>
    public static void Run(int threads, long iterations)
    {
        if (threads == 1)
        {
            Loop(iterations);
            return;
        }
        var workers = new Thread[threads];
        for (int i = 0; i < threads; i++) (workers[i] = new Thread(() => Loop(iterations))).Start();
        foreach (Thread t in workers) t.Join();
    }

    /// <summary>12 independent FMA chains (enough to cover latency x 2 pipes); returns their sum.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Loop(long iterations)
    {
        if (Avx512F.IsSupported)
        {
            Vector512<float> m = Vector512.Create(0.999999f), a = Vector512.Create(1e-7f);
            Vector512<float> c0 = Vector512.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
            for (long i = 0; i < iterations; i++)
            {
                c0 = Avx512F.FusedMultiplyAdd(c0, m, a); c1 = Avx512F.FusedMultiplyAdd(c1, m, a); c2 = Avx512F.FusedMultiplyAdd(c2, m, a);
                c3 = Avx512F.FusedMultiplyAdd(c3, m, a); c4 = Avx512F.FusedMultiplyAdd(c4, m, a); c5 = Avx512F.FusedMultiplyAdd(c5, m, a);
                c6 = Avx512F.FusedMultiplyAdd(c6, m, a); c7 = Avx512F.FusedMultiplyAdd(c7, m, a); c8 = Avx512F.FusedMultiplyAdd(c8, m, a);
                c9 = Avx512F.FusedMultiplyAdd(c9, m, a); c10 = Avx512F.FusedMultiplyAdd(c10, m, a); c11 = Avx512F.FusedMultiplyAdd(c11, m, a);
            }
            return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
        }
        else
        {
            Vector256<float> m = Vector256.Create(0.999999f), a = Vector256.Create(1e-7f);
            Vector256<float> c0 = Vector256.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
            for (long i = 0; i < iterations; i++)
            {
                c0 = Fma.MultiplyAdd(c0, m, a); c1 = Fma.MultiplyAdd(c1, m, a); c2 = Fma.MultiplyAdd(c2, m, a);
                c3 = Fma.MultiplyAdd(c3, m, a); c4 = Fma.MultiplyAdd(c4, m, a); c5 = Fma.MultiplyAdd(c5, m, a);
                c6 = Fma.MultiplyAdd(c6, m, a); c7 = Fma.MultiplyAdd(c7, m, a); c8 = Fma.MultiplyAdd(c8, m, a);
                c9 = Fma.MultiplyAdd(c9, m, a); c10 = Fma.MultiplyAdd(c10, m, a); c11 = Fma.MultiplyAdd(c11, m, a);
            }
            return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
        }
    }
}
