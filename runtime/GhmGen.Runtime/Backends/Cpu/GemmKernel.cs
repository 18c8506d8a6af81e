// Which GEMM micro-kernel the CPU backend uses, and its register-tile shape (MR output channels x
// NR output pixels). Chosen once per backend from what the processor supports; tests force each
// variant in turn (tests/GhmGen.Runtime.Tests/Backends/CpuBackendTests.cs).
using System.Numerics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>The instruction set of the convolution micro-kernel.</summary>
public enum GemmKernelKind
{
    /// <summary>Pick the fastest one the processor supports.</summary>
    Auto,

    /// <summary>AVX-512F, 8x48 tile.</summary>
    Avx512,

    /// <summary>AVX2 + FMA3, 6x16 tile.</summary>
    Avx2,

    /// <summary><see cref="Vector{T}"/> multiply-add, 4 x (2 vectors) tile.</summary>
    Portable,
}

/// <summary>A micro-kernel and its tile shape.</summary>
internal sealed unsafe class GemmKernel
{
    private GemmKernel(GemmKernelKind kind, int rows, int columns,
        delegate*<int, float*, float*, float*, nint, float*, float*, int, void> tile, GemmKernel? narrow = null)
    {
        Kind = kind;
        Rows = rows;
        Columns = columns;
        Tile = tile;
        Narrow = narrow ?? this;
    }

    /// <summary>
    /// The same instruction set with fewer rows (AVX-512: 4x48), for convolutions with at most 4
    /// output channels per group, where the full tile would be half padding; itself otherwise.
    /// </summary>
    public GemmKernel Narrow { get; }

    /// <summary>The instruction set.</summary>
    public GemmKernelKind Kind { get; }

    /// <summary>MR: output channels per tile (weight panels are packed in steps of this).</summary>
    public int Rows { get; }

    /// <summary>NR: output pixels per tile (input panels are packed in steps of this).</summary>
    public int Columns { get; }

    /// <summary>The tile function (see <see cref="GemmMicroKernels"/>).</summary>
    public delegate*<int, float*, float*, float*, nint, float*, float*, int, void> Tile { get; }

    /// <summary>Whether <paramref name="kind"/> can run on this processor.</summary>
    public static bool IsSupported(GemmKernelKind kind) => kind switch
    {
        GemmKernelKind.Auto or GemmKernelKind.Portable => true,
        GemmKernelKind.Avx512 => Avx512F.IsSupported && Vector512.IsHardwareAccelerated,
        GemmKernelKind.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        _ => false,
    };

    /// <summary>The kernel for <paramref name="kind"/> (Auto: the best supported).</summary>
    public static GemmKernel Create(GemmKernelKind kind)
    {
        if (kind == GemmKernelKind.Auto)
            kind = IsSupported(GemmKernelKind.Avx512) ? GemmKernelKind.Avx512
                : IsSupported(GemmKernelKind.Avx2) ? GemmKernelKind.Avx2 : GemmKernelKind.Portable;
        if (!IsSupported(kind))
            throw new PlatformNotSupportedException($"GEMM kernel {kind} is not supported by this processor");
        return kind switch
        {
            GemmKernelKind.Avx512 => new GemmKernel(kind, 8, 48, &GemmMicroKernels.Avx512Tile,
                new GemmKernel(kind, 4, 48, &GemmMicroKernels.Avx512NarrowTile)),
            GemmKernelKind.Avx2 => new GemmKernel(kind, 6, 16, &GemmMicroKernels.Avx2Tile),
            _ => new GemmKernel(GemmKernelKind.Portable, 4, 2 * Vector<float>.Count, &GemmMicroKernels.PortableTile),
        };
    }
}
