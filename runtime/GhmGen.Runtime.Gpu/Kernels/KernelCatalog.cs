using System.Reflection;
using ILGPU;

namespace GhmGen.Backends.Gpu.Kernels;

/// <summary>One kernel method and how it is launched (for the PTX compile checks).</summary>
/// <param name="Name">The C# method name, e.g. <c>Conv2d</c>.</param>
/// <param name="Method">The static kernel method.</param>
/// <param name="ExplicitlyGrouped">True when launched with an explicit group size.</param>
/// <param name="UsesSharedMemory">True when it stages data in shared memory behind group barriers.</param>
internal sealed record KernelEntry(string Name, MethodInfo Method, bool ExplicitlyGrouped, bool UsesSharedMemory);

/// <summary>Every kernel of this assembly, so tests can compile each one to PTX.</summary>
internal static class KernelCatalog
{
    public static IReadOnlyList<KernelEntry> All { get; } =
    [
        Explicit((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvLaunch>)ConvKernels.Conv2d, sharedMemory: true),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>>(TensorKernels.Relu),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>>(TensorKernels.Sigmoid),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(TensorKernels.Add),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>, PoolLaunch>(TensorKernels.MaxPool2d),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>, UpsampleLaunch>(TensorKernels.UpsampleNearestAdd),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGradLaunch>(BackwardKernels.ConvBackwardData),
        Explicit((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGradLaunch>)BackwardKernels.ConvBackwardWeights, sharedMemory: false),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(BackwardKernels.ReluBackward),
        Implicit((Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, PoolLaunch, int>)BackwardKernels.MaxPool2dBackward),
        Implicit<Index1D, ArrayView<float>, ArrayView<float>, UpsampleLaunch, int>(BackwardKernels.UpsampleNearestBackward),
        Implicit((Action<Index1D, ArrayView<float>>)BackwardKernels.Zero),
        Explicit((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormLaunch>)BatchNormKernels.BatchNormForward, sharedMemory: false),
        Explicit((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormLaunch>)BatchNormKernels.BatchNormBackward, sharedMemory: false),
        Explicit((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, int, float>)GhmLossKernels.ClassificationHistogram, sharedMemory: true),
        Explicit((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float>)GhmLossKernels.ClassificationLoss, sharedMemory: false),
        Explicit((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, float, float>)GhmLossKernels.RegressionHistogram, sharedMemory: true),
        Explicit((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float, float>)GhmLossKernels.RegressionLoss, sharedMemory: false),
        Implicit<Index1D, ArrayView<float>, ArrayView<ulong>, ArrayView<int>, CandidateLaunch>(DetectionKernels.SelectCandidates),
        Implicit<Index1D, ArrayView<ulong>, int, int>(DetectionKernels.BitonicSortStep),
        Implicit((Action<Index1D, ArrayView<ulong>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, DecodeLaunch>)DetectionKernels.DecodeBoxes),
        Explicit((Action<ArrayView<float>, ArrayView<int>, ArrayView<ulong>, int, float>)DetectionKernels.NmsMask, sharedMemory: true),
    ];

    private static KernelEntry Explicit(Delegate kernel, bool sharedMemory) => new(kernel.Method.Name, kernel.Method, true, sharedMemory);

    private static KernelEntry Implicit(Delegate kernel) => new(kernel.Method.Name, kernel.Method, false, false);

    private static KernelEntry Implicit<T1, T2, T3>(Action<T1, T2, T3> kernel) => new(kernel.Method.Name, kernel.Method, false, false);

    private static KernelEntry Implicit<T1, T2, T3, T4>(Action<T1, T2, T3, T4> kernel) => new(kernel.Method.Name, kernel.Method, false, false);

    private static KernelEntry Implicit<T1, T2, T3, T4, T5>(Action<T1, T2, T3, T4, T5> kernel) => new(kernel.Method.Name, kernel.Method, false, false);
}
