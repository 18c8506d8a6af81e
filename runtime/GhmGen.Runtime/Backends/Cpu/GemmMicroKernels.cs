// GEMM micro-kernels of the CPU convolution: one register tile of output
//   c[MR, NR] = epilogue(init + sum over kc steps of a[k, 0..MR) (outer) b[k, 0..NR))
// a is a packed weight panel (MR output channels per step k, see PackedConvWeights), b a packed
// input panel (NR output pixels per step k, see ConvInputPacker), c rows are output channels with
// row stride ldc (NCHW: pixels contiguous). init = bias (mode First) or the partial sums already
// in c; the epilogue (mode Last) adds the residual (same layout as c) and applies ReLU.
// Three variants, chosen at run time by CpuBackend: AVX-512 8x48 (24 zmm accumulators; a 4x48
// one for convolutions with 4 output channels per group, ResNeXt; 8x16 and 8x32 ones for outputs
// of few pixels, SharedInputConvolution), AVX2+FMA 6x16 (12 ymm),
// portable Vector<T> 4x(2 vectors). The rows are written out by hand
// (one line per row) so that the JIT keeps every accumulator in a register.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackendTests.cs (every variant against
// ReferenceBackend).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>Register-tile GEMM micro-kernels (AVX-512, AVX2+FMA, portable) for the CPU convolution.</summary>
internal static class GemmMicroKernels
{
    /// <summary>Start from the bias instead of the partial sums in c.</summary>
    public const int First = 1;

    /// <summary>Last k block: add the residual (when given) and apply ReLU (when <see cref="Relu"/>).</summary>
    public const int Last = 2;

    /// <summary>Apply max(x, 0) in the last block.</summary>
    public const int Relu = 4;

    /// <summary>
    /// A tile cut by the matrix edge (<paramref name="rows"/> x <paramref name="columns"/> of the full
    /// mr x nr): runs the full <paramref name="tile"/> on a copy in <paramref name="tileOut"/> (and, when a
    /// residual is added in this block, <paramref name="tileResidual"/>; mr * nr floats each), zero-padded,
    /// then writes the valid part back to <paramref name="c"/> (row stride <paramref name="ldc"/>, as the residual).
    /// </summary>
    public static unsafe void EdgeTile(delegate*<int, float*, float*, float*, nint, float*, float*, int, void> tile, int mr, int nr,
        int kc, float* a, float* b, float* c, nint ldc, float* bias, float* residual, int mode, int rows, int columns,
        float* tileOut, float* tileResidual)
    {
        bool useResidual = residual != null && (mode & Last) != 0;
        new Span<float>(tileOut, mr * nr).Clear();
        if (useResidual) new Span<float>(tileResidual, mr * nr).Clear();
        for (int i = 0; i < rows; i++)
        {
            if ((mode & First) == 0)
                new ReadOnlySpan<float>(c + i * ldc, columns).CopyTo(new Span<float>(tileOut + i * nr, columns));
            if (useResidual)
                new ReadOnlySpan<float>(residual + i * ldc, columns).CopyTo(new Span<float>(tileResidual + i * nr, columns));
        }
        tile(kc, a, b, tileOut, nr, bias, useResidual ? tileResidual : null, mode);
        for (int i = 0; i < rows; i++)
            new ReadOnlySpan<float>(tileOut + i * nr, columns).CopyTo(new Span<float>(c + i * ldc, columns));
    }

    /// <summary>8x(48) tile: c[8, 48] (row stride ldc) = epilogue(init + a-panel x b-panel) over kc steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Avx512Tile(int kc, float* a, float* b, float* c, nint ldc, float* bias, float* residual, int mode)
    {
        Vector512<float> c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32, c40, c41, c42, c50, c51, c52, c60, c61, c62, c70, c71, c72;
        if ((mode & First) != 0)
        {
            c00 = Vector512.Create(bias[0]); c01 = c00; c02 = c00;
            c10 = Vector512.Create(bias[1]); c11 = c10; c12 = c10;
            c20 = Vector512.Create(bias[2]); c21 = c20; c22 = c20;
            c30 = Vector512.Create(bias[3]); c31 = c30; c32 = c30;
            c40 = Vector512.Create(bias[4]); c41 = c40; c42 = c40;
            c50 = Vector512.Create(bias[5]); c51 = c50; c52 = c50;
            c60 = Vector512.Create(bias[6]); c61 = c60; c62 = c60;
            c70 = Vector512.Create(bias[7]); c71 = c70; c72 = c70;
        }
        else
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16); c02 = Vector512.Load(c + 32);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16); c12 = Vector512.Load(c + ldc + 32);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16); c22 = Vector512.Load(c + 2 * ldc + 32);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16); c32 = Vector512.Load(c + 3 * ldc + 32);
            c40 = Vector512.Load(c + 4 * ldc); c41 = Vector512.Load(c + 4 * ldc + 16); c42 = Vector512.Load(c + 4 * ldc + 32);
            c50 = Vector512.Load(c + 5 * ldc); c51 = Vector512.Load(c + 5 * ldc + 16); c52 = Vector512.Load(c + 5 * ldc + 32);
            c60 = Vector512.Load(c + 6 * ldc); c61 = Vector512.Load(c + 6 * ldc + 16); c62 = Vector512.Load(c + 6 * ldc + 32);
            c70 = Vector512.Load(c + 7 * ldc); c71 = Vector512.Load(c + 7 * ldc + 16); c72 = Vector512.Load(c + 7 * ldc + 32);
        }
        for (int k = 0; k < kc; k++)
        {
            Vector512<float> b0 = Vector512.Load(b); Vector512<float> b1 = Vector512.Load(b + 16); Vector512<float> b2 = Vector512.Load(b + 32);
            Vector512<float> ar = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(ar, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ar, b1, c01); c02 = Avx512F.FusedMultiplyAdd(ar, b2, c02);
            ar = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(ar, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ar, b1, c11); c12 = Avx512F.FusedMultiplyAdd(ar, b2, c12);
            ar = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(ar, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ar, b1, c21); c22 = Avx512F.FusedMultiplyAdd(ar, b2, c22);
            ar = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(ar, b0, c30); c31 = Avx512F.FusedMultiplyAdd(ar, b1, c31); c32 = Avx512F.FusedMultiplyAdd(ar, b2, c32);
            ar = Vector512.Create(a[4]);
            c40 = Avx512F.FusedMultiplyAdd(ar, b0, c40); c41 = Avx512F.FusedMultiplyAdd(ar, b1, c41); c42 = Avx512F.FusedMultiplyAdd(ar, b2, c42);
            ar = Vector512.Create(a[5]);
            c50 = Avx512F.FusedMultiplyAdd(ar, b0, c50); c51 = Avx512F.FusedMultiplyAdd(ar, b1, c51); c52 = Avx512F.FusedMultiplyAdd(ar, b2, c52);
            ar = Vector512.Create(a[6]);
            c60 = Avx512F.FusedMultiplyAdd(ar, b0, c60); c61 = Avx512F.FusedMultiplyAdd(ar, b1, c61); c62 = Avx512F.FusedMultiplyAdd(ar, b2, c62);
            ar = Vector512.Create(a[7]);
            c70 = Avx512F.FusedMultiplyAdd(ar, b0, c70); c71 = Avx512F.FusedMultiplyAdd(ar, b1, c71); c72 = Avx512F.FusedMultiplyAdd(ar, b2, c72);
            a += 8;
            b += 48;
        }
        if ((mode & Last) != 0)
        {
            if (residual != null)
            {
                c00 += Vector512.Load(residual); c01 += Vector512.Load(residual + 16); c02 += Vector512.Load(residual + 32);
                c10 += Vector512.Load(residual + ldc); c11 += Vector512.Load(residual + ldc + 16); c12 += Vector512.Load(residual + ldc + 32);
                c20 += Vector512.Load(residual + 2 * ldc); c21 += Vector512.Load(residual + 2 * ldc + 16); c22 += Vector512.Load(residual + 2 * ldc + 32);
                c30 += Vector512.Load(residual + 3 * ldc); c31 += Vector512.Load(residual + 3 * ldc + 16); c32 += Vector512.Load(residual + 3 * ldc + 32);
                c40 += Vector512.Load(residual + 4 * ldc); c41 += Vector512.Load(residual + 4 * ldc + 16); c42 += Vector512.Load(residual + 4 * ldc + 32);
                c50 += Vector512.Load(residual + 5 * ldc); c51 += Vector512.Load(residual + 5 * ldc + 16); c52 += Vector512.Load(residual + 5 * ldc + 32);
                c60 += Vector512.Load(residual + 6 * ldc); c61 += Vector512.Load(residual + 6 * ldc + 16); c62 += Vector512.Load(residual + 6 * ldc + 32);
                c70 += Vector512.Load(residual + 7 * ldc); c71 += Vector512.Load(residual + 7 * ldc + 16); c72 += Vector512.Load(residual + 7 * ldc + 32);
            }
            if ((mode & Relu) != 0)
            {
                Vector512<float> zero = Vector512<float>.Zero;
                c00 = Avx512F.Max(c00, zero); c01 = Avx512F.Max(c01, zero); c02 = Avx512F.Max(c02, zero);
                c10 = Avx512F.Max(c10, zero); c11 = Avx512F.Max(c11, zero); c12 = Avx512F.Max(c12, zero);
                c20 = Avx512F.Max(c20, zero); c21 = Avx512F.Max(c21, zero); c22 = Avx512F.Max(c22, zero);
                c30 = Avx512F.Max(c30, zero); c31 = Avx512F.Max(c31, zero); c32 = Avx512F.Max(c32, zero);
                c40 = Avx512F.Max(c40, zero); c41 = Avx512F.Max(c41, zero); c42 = Avx512F.Max(c42, zero);
                c50 = Avx512F.Max(c50, zero); c51 = Avx512F.Max(c51, zero); c52 = Avx512F.Max(c52, zero);
                c60 = Avx512F.Max(c60, zero); c61 = Avx512F.Max(c61, zero); c62 = Avx512F.Max(c62, zero);
                c70 = Avx512F.Max(c70, zero); c71 = Avx512F.Max(c71, zero); c72 = Avx512F.Max(c72, zero);
            }
        }
        c00.Store(c); c01.Store(c + 16); c02.Store(c + 32);
        c10.Store(c + ldc); c11.Store(c + ldc + 16); c12.Store(c + ldc + 32);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16); c22.Store(c + 2 * ldc + 32);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16); c32.Store(c + 3 * ldc + 32);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 16); c42.Store(c + 4 * ldc + 32);
        c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 16); c52.Store(c + 5 * ldc + 32);
        c60.Store(c + 6 * ldc); c61.Store(c + 6 * ldc + 16); c62.Store(c + 6 * ldc + 32);
        c70.Store(c + 7 * ldc); c71.Store(c + 7 * ldc + 16); c72.Store(c + 7 * ldc + 32);
    }

    /// <summary>6x(16) tile: c[6, 16] (row stride ldc) = epilogue(init + a-panel x b-panel) over kc steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Avx2Tile(int kc, float* a, float* b, float* c, nint ldc, float* bias, float* residual, int mode)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if ((mode & First) != 0)
        {
            c00 = Vector256.Create(bias[0]); c01 = c00;
            c10 = Vector256.Create(bias[1]); c11 = c10;
            c20 = Vector256.Create(bias[2]); c21 = c20;
            c30 = Vector256.Create(bias[3]); c31 = c30;
            c40 = Vector256.Create(bias[4]); c41 = c40;
            c50 = Vector256.Create(bias[5]); c51 = c50;
        }
        else
        {
            c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
            c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8);
            c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8);
            c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8);
            c40 = Vector256.Load(c + 4 * ldc); c41 = Vector256.Load(c + 4 * ldc + 8);
            c50 = Vector256.Load(c + 5 * ldc); c51 = Vector256.Load(c + 5 * ldc + 8);
        }
        for (int k = 0; k < kc; k++)
        {
            Vector256<float> b0 = Vector256.Load(b); Vector256<float> b1 = Vector256.Load(b + 8);
            Vector256<float> ar = Vector256.Create(a[0]);
            c00 = Fma.MultiplyAdd(ar, b0, c00); c01 = Fma.MultiplyAdd(ar, b1, c01);
            ar = Vector256.Create(a[1]);
            c10 = Fma.MultiplyAdd(ar, b0, c10); c11 = Fma.MultiplyAdd(ar, b1, c11);
            ar = Vector256.Create(a[2]);
            c20 = Fma.MultiplyAdd(ar, b0, c20); c21 = Fma.MultiplyAdd(ar, b1, c21);
            ar = Vector256.Create(a[3]);
            c30 = Fma.MultiplyAdd(ar, b0, c30); c31 = Fma.MultiplyAdd(ar, b1, c31);
            ar = Vector256.Create(a[4]);
            c40 = Fma.MultiplyAdd(ar, b0, c40); c41 = Fma.MultiplyAdd(ar, b1, c41);
            ar = Vector256.Create(a[5]);
            c50 = Fma.MultiplyAdd(ar, b0, c50); c51 = Fma.MultiplyAdd(ar, b1, c51);
            a += 6;
            b += 16;
        }
        if ((mode & Last) != 0)
        {
            if (residual != null)
            {
                c00 += Vector256.Load(residual); c01 += Vector256.Load(residual + 8);
                c10 += Vector256.Load(residual + ldc); c11 += Vector256.Load(residual + ldc + 8);
                c20 += Vector256.Load(residual + 2 * ldc); c21 += Vector256.Load(residual + 2 * ldc + 8);
                c30 += Vector256.Load(residual + 3 * ldc); c31 += Vector256.Load(residual + 3 * ldc + 8);
                c40 += Vector256.Load(residual + 4 * ldc); c41 += Vector256.Load(residual + 4 * ldc + 8);
                c50 += Vector256.Load(residual + 5 * ldc); c51 += Vector256.Load(residual + 5 * ldc + 8);
            }
            if ((mode & Relu) != 0)
            {
                Vector256<float> zero = Vector256<float>.Zero;
                c00 = Avx.Max(c00, zero); c01 = Avx.Max(c01, zero);
                c10 = Avx.Max(c10, zero); c11 = Avx.Max(c11, zero);
                c20 = Avx.Max(c20, zero); c21 = Avx.Max(c21, zero);
                c30 = Avx.Max(c30, zero); c31 = Avx.Max(c31, zero);
                c40 = Avx.Max(c40, zero); c41 = Avx.Max(c41, zero);
                c50 = Avx.Max(c50, zero); c51 = Avx.Max(c51, zero);
            }
        }
        c00.Store(c); c01.Store(c + 8);
        c10.Store(c + ldc); c11.Store(c + ldc + 8);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 8);
        c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 8);
    }

    /// <summary>4x(2 * Vector&lt;float&gt;.Count) tile: c[4, 2 * Vector&lt;float&gt;.Count] (row stride ldc) = epilogue(init + a-panel x b-panel) over kc steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void PortableTile(int kc, float* a, float* b, float* c, nint ldc, float* bias, float* residual, int mode)
    {
        Vector<float> c00, c01, c10, c11, c20, c21, c30, c31;
        if ((mode & First) != 0)
        {
            c00 = new Vector<float>(bias[0]); c01 = c00;
            c10 = new Vector<float>(bias[1]); c11 = c10;
            c20 = new Vector<float>(bias[2]); c21 = c20;
            c30 = new Vector<float>(bias[3]); c31 = c30;
        }
        else
        {
            c00 = Vector.Load(c); c01 = Vector.Load(c + Vector<float>.Count);
            c10 = Vector.Load(c + ldc); c11 = Vector.Load(c + ldc + Vector<float>.Count);
            c20 = Vector.Load(c + 2 * ldc); c21 = Vector.Load(c + 2 * ldc + Vector<float>.Count);
            c30 = Vector.Load(c + 3 * ldc); c31 = Vector.Load(c + 3 * ldc + Vector<float>.Count);
        }
        for (int k = 0; k < kc; k++)
        {
            Vector<float> b0 = Vector.Load(b); Vector<float> b1 = Vector.Load(b + Vector<float>.Count);
            Vector<float> ar = new Vector<float>(a[0]);
            c00 = ar * b0 + c00; c01 = ar * b1 + c01;
            ar = new Vector<float>(a[1]);
            c10 = ar * b0 + c10; c11 = ar * b1 + c11;
            ar = new Vector<float>(a[2]);
            c20 = ar * b0 + c20; c21 = ar * b1 + c21;
            ar = new Vector<float>(a[3]);
            c30 = ar * b0 + c30; c31 = ar * b1 + c31;
            a += 4;
            b += 2 * Vector<float>.Count;
        }
        if ((mode & Last) != 0)
        {
            if (residual != null)
            {
                c00 += Vector.Load(residual); c01 += Vector.Load(residual + Vector<float>.Count);
                c10 += Vector.Load(residual + ldc); c11 += Vector.Load(residual + ldc + Vector<float>.Count);
                c20 += Vector.Load(residual + 2 * ldc); c21 += Vector.Load(residual + 2 * ldc + Vector<float>.Count);
                c30 += Vector.Load(residual + 3 * ldc); c31 += Vector.Load(residual + 3 * ldc + Vector<float>.Count);
            }
            if ((mode & Relu) != 0)
            {
                Vector<float> zero = Vector<float>.Zero;
                c00 = Vector.Max(c00, zero); c01 = Vector.Max(c01, zero);
                c10 = Vector.Max(c10, zero); c11 = Vector.Max(c11, zero);
                c20 = Vector.Max(c20, zero); c21 = Vector.Max(c21, zero);
                c30 = Vector.Max(c30, zero); c31 = Vector.Max(c31, zero);
            }
        }
        c00.Store(c); c01.Store(c + Vector<float>.Count);
        c10.Store(c + ldc); c11.Store(c + ldc + Vector<float>.Count);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + Vector<float>.Count);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + Vector<float>.Count);
    }

    /// <summary>4x(48) tile: c[4, 48] (row stride ldc) = epilogue(init + a-panel x b-panel) over kc steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Avx512NarrowTile(int kc, float* a, float* b, float* c, nint ldc, float* bias, float* residual, int mode)
    {
        Vector512<float> c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32;
        if ((mode & First) != 0)
        {
            c00 = Vector512.Create(bias[0]); c01 = c00; c02 = c00;
            c10 = Vector512.Create(bias[1]); c11 = c10; c12 = c10;
            c20 = Vector512.Create(bias[2]); c21 = c20; c22 = c20;
            c30 = Vector512.Create(bias[3]); c31 = c30; c32 = c30;
        }
        else
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16); c02 = Vector512.Load(c + 32);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16); c12 = Vector512.Load(c + ldc + 32);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16); c22 = Vector512.Load(c + 2 * ldc + 32);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16); c32 = Vector512.Load(c + 3 * ldc + 32);
        }
        for (int k = 0; k < kc; k++)
        {
            Vector512<float> b0 = Vector512.Load(b); Vector512<float> b1 = Vector512.Load(b + 16); Vector512<float> b2 = Vector512.Load(b + 32);
            Vector512<float> ar = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(ar, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ar, b1, c01); c02 = Avx512F.FusedMultiplyAdd(ar, b2, c02);
            ar = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(ar, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ar, b1, c11); c12 = Avx512F.FusedMultiplyAdd(ar, b2, c12);
            ar = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(ar, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ar, b1, c21); c22 = Avx512F.FusedMultiplyAdd(ar, b2, c22);
            ar = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(ar, b0, c30); c31 = Avx512F.FusedMultiplyAdd(ar, b1, c31); c32 = Avx512F.FusedMultiplyAdd(ar, b2, c32);
            a += 4;
            b += 48;
        }
        if ((mode & Last) != 0)
        {
            if (residual != null)
            {
                c00 += Vector512.Load(residual); c01 += Vector512.Load(residual + 16); c02 += Vector512.Load(residual + 32);
                c10 += Vector512.Load(residual + ldc); c11 += Vector512.Load(residual + ldc + 16); c12 += Vector512.Load(residual + ldc + 32);
                c20 += Vector512.Load(residual + 2 * ldc); c21 += Vector512.Load(residual + 2 * ldc + 16); c22 += Vector512.Load(residual + 2 * ldc + 32);
                c30 += Vector512.Load(residual + 3 * ldc); c31 += Vector512.Load(residual + 3 * ldc + 16); c32 += Vector512.Load(residual + 3 * ldc + 32);
            }
            if ((mode & Relu) != 0)
            {
                Vector512<float> zero = Vector512<float>.Zero;
                c00 = Avx512F.Max(c00, zero); c01 = Avx512F.Max(c01, zero); c02 = Avx512F.Max(c02, zero);
                c10 = Avx512F.Max(c10, zero); c11 = Avx512F.Max(c11, zero); c12 = Avx512F.Max(c12, zero);
                c20 = Avx512F.Max(c20, zero); c21 = Avx512F.Max(c21, zero); c22 = Avx512F.Max(c22, zero);
                c30 = Avx512F.Max(c30, zero); c31 = Avx512F.Max(c31, zero); c32 = Avx512F.Max(c32, zero);
            }
        }
        c00.Store(c); c01.Store(c + 16); c02.Store(c + 32);
        c10.Store(c + ldc); c11.Store(c + ldc + 16); c12.Store(c + ldc + 32);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16); c22.Store(c + 2 * ldc + 32);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16); c32.Store(c + 3 * ldc + 32);
    }

    /// <summary>8x(16) tile: c[8, 16] (row stride ldc) = epilogue(init + a-panel x b-panel) over kc steps; b panels 16 wide (SharedInputConvolution).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Avx512Tile16(int kc, float* a, float* b, float* c, nint ldc, float* bias, float* residual, int mode)
    {
        Vector512<float> c00, c10, c20, c30, c40, c50, c60, c70;
        if ((mode & First) != 0)
        {
            c00 = Vector512.Create(bias[0]);
            c10 = Vector512.Create(bias[1]);
            c20 = Vector512.Create(bias[2]);
            c30 = Vector512.Create(bias[3]);
            c40 = Vector512.Create(bias[4]);
            c50 = Vector512.Create(bias[5]);
            c60 = Vector512.Create(bias[6]);
            c70 = Vector512.Create(bias[7]);
        }
        else
        {
            c00 = Vector512.Load(c);
            c10 = Vector512.Load(c + ldc);
            c20 = Vector512.Load(c + 2 * ldc);
            c30 = Vector512.Load(c + 3 * ldc);
            c40 = Vector512.Load(c + 4 * ldc);
            c50 = Vector512.Load(c + 5 * ldc);
            c60 = Vector512.Load(c + 6 * ldc);
            c70 = Vector512.Load(c + 7 * ldc);
        }
        for (int k = 0; k < kc; k++)
        {
            Vector512<float> b0 = Vector512.Load(b);
            Vector512<float> ar = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(ar, b0, c00);
            ar = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(ar, b0, c10);
            ar = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(ar, b0, c20);
            ar = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(ar, b0, c30);
            ar = Vector512.Create(a[4]);
            c40 = Avx512F.FusedMultiplyAdd(ar, b0, c40);
            ar = Vector512.Create(a[5]);
            c50 = Avx512F.FusedMultiplyAdd(ar, b0, c50);
            ar = Vector512.Create(a[6]);
            c60 = Avx512F.FusedMultiplyAdd(ar, b0, c60);
            ar = Vector512.Create(a[7]);
            c70 = Avx512F.FusedMultiplyAdd(ar, b0, c70);
            a += 8;
            b += 16;
        }
        if ((mode & Last) != 0)
        {
            if (residual != null)
            {
                c00 += Vector512.Load(residual);
                c10 += Vector512.Load(residual + ldc);
                c20 += Vector512.Load(residual + 2 * ldc);
                c30 += Vector512.Load(residual + 3 * ldc);
                c40 += Vector512.Load(residual + 4 * ldc);
                c50 += Vector512.Load(residual + 5 * ldc);
                c60 += Vector512.Load(residual + 6 * ldc);
                c70 += Vector512.Load(residual + 7 * ldc);
            }
            if ((mode & Relu) != 0)
            {
                Vector512<float> zero = Vector512<float>.Zero;
                c00 = Avx512F.Max(c00, zero);
                c10 = Avx512F.Max(c10, zero);
                c20 = Avx512F.Max(c20, zero);
                c30 = Avx512F.Max(c30, zero);
                c40 = Avx512F.Max(c40, zero);
                c50 = Avx512F.Max(c50, zero);
                c60 = Avx512F.Max(c60, zero);
                c70 = Avx512F.Max(c70, zero);
            }
        }
        c00.Store(c);
        c10.Store(c + ldc);
        c20.Store(c + 2 * ldc);
        c30.Store(c + 3 * ldc);
        c40.Store(c + 4 * ldc);
        c50.Store(c + 5 * ldc);
        c60.Store(c + 6 * ldc);
        c70.Store(c + 7 * ldc);
    }

    /// <summary>8x(32) tile: c[8, 32] (row stride ldc) = epilogue(init + a-panel x b-panel) over kc steps; b panels 32 wide (SharedInputConvolution).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Avx512Tile32(int kc, float* a, float* b, float* c, nint ldc, float* bias, float* residual, int mode)
    {
        Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
        if ((mode & First) != 0)
        {
            c00 = Vector512.Create(bias[0]); c01 = c00;
            c10 = Vector512.Create(bias[1]); c11 = c10;
            c20 = Vector512.Create(bias[2]); c21 = c20;
            c30 = Vector512.Create(bias[3]); c31 = c30;
            c40 = Vector512.Create(bias[4]); c41 = c40;
            c50 = Vector512.Create(bias[5]); c51 = c50;
            c60 = Vector512.Create(bias[6]); c61 = c60;
            c70 = Vector512.Create(bias[7]); c71 = c70;
        }
        else
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16);
            c40 = Vector512.Load(c + 4 * ldc); c41 = Vector512.Load(c + 4 * ldc + 16);
            c50 = Vector512.Load(c + 5 * ldc); c51 = Vector512.Load(c + 5 * ldc + 16);
            c60 = Vector512.Load(c + 6 * ldc); c61 = Vector512.Load(c + 6 * ldc + 16);
            c70 = Vector512.Load(c + 7 * ldc); c71 = Vector512.Load(c + 7 * ldc + 16);
        }
        for (int k = 0; k < kc; k++)
        {
            Vector512<float> b0 = Vector512.Load(b); Vector512<float> b1 = Vector512.Load(b + 16);
            Vector512<float> ar = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(ar, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ar, b1, c01);
            ar = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(ar, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ar, b1, c11);
            ar = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(ar, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ar, b1, c21);
            ar = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(ar, b0, c30); c31 = Avx512F.FusedMultiplyAdd(ar, b1, c31);
            ar = Vector512.Create(a[4]);
            c40 = Avx512F.FusedMultiplyAdd(ar, b0, c40); c41 = Avx512F.FusedMultiplyAdd(ar, b1, c41);
            ar = Vector512.Create(a[5]);
            c50 = Avx512F.FusedMultiplyAdd(ar, b0, c50); c51 = Avx512F.FusedMultiplyAdd(ar, b1, c51);
            ar = Vector512.Create(a[6]);
            c60 = Avx512F.FusedMultiplyAdd(ar, b0, c60); c61 = Avx512F.FusedMultiplyAdd(ar, b1, c61);
            ar = Vector512.Create(a[7]);
            c70 = Avx512F.FusedMultiplyAdd(ar, b0, c70); c71 = Avx512F.FusedMultiplyAdd(ar, b1, c71);
            a += 8;
            b += 32;
        }
        if ((mode & Last) != 0)
        {
            if (residual != null)
            {
                c00 += Vector512.Load(residual); c01 += Vector512.Load(residual + 16);
                c10 += Vector512.Load(residual + ldc); c11 += Vector512.Load(residual + ldc + 16);
                c20 += Vector512.Load(residual + 2 * ldc); c21 += Vector512.Load(residual + 2 * ldc + 16);
                c30 += Vector512.Load(residual + 3 * ldc); c31 += Vector512.Load(residual + 3 * ldc + 16);
                c40 += Vector512.Load(residual + 4 * ldc); c41 += Vector512.Load(residual + 4 * ldc + 16);
                c50 += Vector512.Load(residual + 5 * ldc); c51 += Vector512.Load(residual + 5 * ldc + 16);
                c60 += Vector512.Load(residual + 6 * ldc); c61 += Vector512.Load(residual + 6 * ldc + 16);
                c70 += Vector512.Load(residual + 7 * ldc); c71 += Vector512.Load(residual + 7 * ldc + 16);
            }
            if ((mode & Relu) != 0)
            {
                Vector512<float> zero = Vector512<float>.Zero;
                c00 = Avx512F.Max(c00, zero); c01 = Avx512F.Max(c01, zero);
                c10 = Avx512F.Max(c10, zero); c11 = Avx512F.Max(c11, zero);
                c20 = Avx512F.Max(c20, zero); c21 = Avx512F.Max(c21, zero);
                c30 = Avx512F.Max(c30, zero); c31 = Avx512F.Max(c31, zero);
                c40 = Avx512F.Max(c40, zero); c41 = Avx512F.Max(c41, zero);
                c50 = Avx512F.Max(c50, zero); c51 = Avx512F.Max(c51, zero);
                c60 = Avx512F.Max(c60, zero); c61 = Avx512F.Max(c61, zero);
                c70 = Avx512F.Max(c70, zero); c71 = Avx512F.Max(c71, zero);
            }
        }
        c00.Store(c); c01.Store(c + 16);
        c10.Store(c + ldc); c11.Store(c + ldc + 16);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 16);
        c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 16);
        c60.Store(c + 6 * ldc); c61.Store(c + 6 * ldc + 16);
        c70.Store(c + 7 * ldc); c71.Store(c + 7 * ldc + 16);
    }
}
