using GhmGen.Backends;
using GhmGen.Backends.Cpu;
#if GHM_GPU
using GhmGen.Backends.Gpu;
#endif

namespace GhmGen.Cli;

/// <summary>Turns <c>--device auto|cpu|cuda</c> into a backend.</summary>
internal static class Devices
{
    /// <summary>The accepted values of <c>--device</c>.</summary>
    public static readonly string[] Names = ["auto", "cpu", "cuda"];

    /// <summary>
    /// Creates the backend for <paramref name="device"/>: <c>cpu</c>, <c>cuda</c> (first CUDA
    /// device), or <c>auto</c> (CUDA when there is one, else the CPU).
    /// <paramref name="threads"/> applies to the CPU backend (0 = all cores). Throws
    /// <see cref="UsageException"/> when <c>cuda</c> is asked for and this build or machine has none.
    /// The CPU backend keeps one packed copy of each convolution's weights (and, in training, of its
    /// backward-data form) and makes the Winograd forms per call (<see cref="CpuBackend.WinogradWeightsPerCall"/>):
    /// in training the stored forms would be rebuilt after every optimizer step anyway.
    /// </summary>
    public static IBackend Create(string device, int threads)
    {
        CpuBackend Cpu() => new(threads) { WinogradWeightsPerCall = true };
        switch (device)
        {
            case "cpu":
                return Cpu();
            case "cuda":
#if GHM_GPU
                try
                {
                    return IlgpuBackend.Create(IlgpuDevice.Cuda);
                }
                catch (InvalidOperationException e)
                {
                    throw new UsageException($"--device cuda: {e.Message}", e);
                }
#else
                throw new UsageException(
                    "--device cuda needs the JIT build of ghm (dotnet run --project apps/GhmGen.Cli, or dotnet publish without PublishAot): " +
                    "this NativeAOT binary leaves out the ILGPU backend, which generates GPU code at run time");
#endif
            case "auto":
#if GHM_GPU
                if (IlgpuBackend.TryCreateCuda(out IlgpuBackend? gpu)) return gpu;
#endif
                return Cpu();
            default:
                throw new UsageException($"--device '{device}' is not one of {string.Join(", ", Names)}");
        }
    }
}
