using GhmGen.Backends.Gpu.Kernels;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace GhmGen.Runtime.Gpu.Tests;

/// <summary>
/// Every kernel compiles to PTX for Ampere (sm_80) and Hopper (sm_90) without a GPU: ILGPU's
/// PTXBackend is constructed directly with a CudaCapabilityContext instead of from a device.
/// </summary>
/// <remarks>
/// ILGPU 1.5.3 writes <c>.target</c> from <c>CudaCapabilityContext.TargetArchitecture</c>, which
/// its constructor clamps to the newest architecture whose capabilities ILGPU distinguishes
/// (sm_80; its setter is internal). So a backend built for SM_90 emits <c>.target sm_80</c>
/// code; the CUDA driver JIT-compiles that PTX for the sm_90 device (PTX is forward
/// compatible). The tests pin that behaviour down, so an ILGPU upgrade that changes it shows up.
/// </remarks>
public sealed class PtxCompileTests
{
    public static TheoryData<string, int> KernelsAndArchitectures()
    {
        var data = new TheoryData<string, int>();
        foreach (KernelEntry kernel in KernelCatalog.All)
        {
            data.Add(kernel.Name, 80);
            data.Add(kernel.Name, 90);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(KernelsAndArchitectures))]
    public void KernelCompilesToPtx(string kernelName, int smVersion)
    {
        KernelEntry kernel = KernelCatalog.All.Single(k => k.Name == kernelName);
        CudaArchitecture architecture = smVersion == 80 ? CudaArchitecture.SM_80 : CudaArchitecture.SM_90;
        // PTX ISA 7.8 (CUDA 11.8) is the first that knows sm_90; it also covers sm_80.
        using Context context = Context.Create(b => b.Cuda().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(architecture), architecture, CudaInstructionSet.ISA_78, nvvmAPI: null);
        EntryPointDescription entry = kernel.ExplicitlyGrouped
            ? EntryPointDescription.FromExplicitlyGroupedKernel(kernel.Method)
            : EntryPointDescription.FromImplicitlyGroupedKernel(kernel.Method);

        var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);

        string ptx = compiled.PTXAssembly;
        Assert.Equal(architecture, backend.Architecture);
        Assert.Contains(".version 7.8\n", ptx);
        Assert.Contains(".target sm_80\n", ptx);  // see the remarks: sm_90 is capped to sm_80 PTX
        Assert.Contains($".visible .entry Kernel_{kernel.Name}(", ptx);
        if (kernel.UsesSharedMemory)
        {
            Assert.Contains(".shared ", ptx);
            Assert.Contains("bar.sync", ptx);  // staged data is synchronised across the group
        }
    }

    [Fact]
    public void SharedMemoryConvolutionUsesSharedTiles()
    {
        KernelEntry conv = KernelCatalog.All.Single(k => k.Name == nameof(ConvKernels.Conv2d));
        using Context context = Context.Create(b => b.Cuda().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80, CudaInstructionSet.ISA_78, nvvmAPI: null);

        string ptx = ((PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(conv.Method), KernelSpecialization.Empty)).PTXAssembly;

        // Two 32x16 float tiles = 2 x 2048 bytes of shared memory.
        Assert.Equal(2, ptx.Split(".shared .align 4 .b8").Length - 1);
        Assert.Contains("[2048]", ptx);
        Assert.Contains("ld.shared.f32", ptx);
    }

    [Fact]
    public void WeightGradientReducesWithWarpShuffles()
    {
        KernelEntry kernel = KernelCatalog.All.Single(k => k.Name == nameof(BackwardKernels.ConvBackwardWeights));
        using Context context = Context.Create(b => b.Cuda().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80, CudaInstructionSet.ISA_78, nvvmAPI: null);

        string ptx = ((PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(kernel.Method), KernelSpecialization.Empty)).PTXAssembly;

        // One warp per gradient element: lanes combine through shuffles, with no atomics.
        Assert.Contains("shfl.sync.down", ptx);
        Assert.DoesNotContain("atom.global", ptx);
        Assert.DoesNotContain("red.global", ptx);
    }

    [Theory]
    [InlineData(nameof(BatchNormKernels.BatchNormForward))]
    [InlineData(nameof(BatchNormKernels.BatchNormBackward))]
    public void BatchNormReducesWithButterflyShufflesInDouble(string kernelName)
    {
        KernelEntry kernel = KernelCatalog.All.Single(k => k.Name == kernelName);
        using Context context = Context.Create(b => b.Cuda().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_78, nvvmAPI: null);

        string ptx = ((PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(kernel.Method), KernelSpecialization.Empty)).PTXAssembly;

        // One warp per channel: double sums combined by shuffle-xor (every lane gets the same total), no atomics.
        Assert.Contains("shfl.sync.bfly", ptx);
        Assert.Contains("add.f64", ptx);
        Assert.DoesNotContain("atom.global", ptx);
        Assert.DoesNotContain("red.global", ptx);
    }
}
