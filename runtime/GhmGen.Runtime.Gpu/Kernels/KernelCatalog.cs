using System.Reflection;
using ILGPU;

namespace GhmGen.Backends.Gpu.Kernels;

/// <summary>One kernel method and how it is launched (for the PTX compile checks).</summary>
/// <param name="Name">The C# method name, e.g. <c>Conv2d</c>.</param>
/// <param name="Method">The static kernel method.</param>
/// <param name="ExplicitlyGrouped">True when launched with an explicit group size (shared memory, barriers).</param>
internal sealed record KernelEntry(string Name, MethodInfo Method, bool ExplicitlyGrouped);

/// <summary>Every kernel of this assembly, so tests can compile each one to PTX.</summary>
internal static class KernelCatalog
{
    public static IReadOnlyList<KernelEntry> All { get; } =
    [
        Explicit((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvLaunch>)ConvKernels.Conv2d),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>>(TensorKernels.Relu),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>>(TensorKernels.Sigmoid),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(TensorKernels.Add),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>, PoolLaunch>(TensorKernels.MaxPool2d),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>, UpsampleLaunch>(TensorKernels.UpsampleNearestAdd),
    ];

    private static KernelEntry Explicit(Delegate kernel) => new(kernel.Method.Name, kernel.Method, true);

    private static KernelEntry Implicit<T1, T2, T3>(Action<T1, T2, T3> kernel) => new(kernel.Method.Name, kernel.Method, false);

    private static KernelEntry Implicit<T1, T2, T3, T4>(Action<T1, T2, T3, T4> kernel) => new(kernel.Method.Name, kernel.Method, false);

    private static KernelEntry Implicit<T1, T2, T3, T4, T5>(Action<T1, T2, T3, T4, T5> kernel) => new(kernel.Method.Name, kernel.Method, false);
}
