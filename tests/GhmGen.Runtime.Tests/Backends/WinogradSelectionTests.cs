using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

/// <summary>
/// Which 3x3 stride-1 convolutions CpuBackend runs through Winograd by default: enough 4x4 tiles and at least
/// <c>CpuBackend.WinogradMinimumChannels</c> input channels (fewer: the direct GEMM, whose result is then
/// exact to float32 rounding of the direct sum); the test override of the tile count still forces it. Winograd's
/// GEMMs run 16, 32 or 48 tiles wide, whichever pads an image's tiles least: each width against the direct sum.
/// </summary>
public class WinogradSelectionTests
{
    [Theory]
    [InlineData(32, 40, 48, false)]  // the demo detector's layer1: too few channels
    [InlineData(64, 40, 48, true)]   // R-50's layer1 width
    [InlineData(64, 8, 8, false)]    // too few tiles (4 of 4x4)
    public void Default_Selection(int channels, int h, int w, bool winograd)
    {
        using var cpu = new CpuBackend(2) { WinogradWeightsPerCall = true };
        long passes = Run(cpu, channels, h, w);
        Assert.Equal(winograd ? 1 : 0, passes);
    }

    [Theory]
    [InlineData(16, 20, 1, false)]  // 20 tiles: under a 48-wide block per thread (49 on 2 threads)
    [InlineData(16, 20, 2, false)]  // 40 tiles: still under (the weight gradient's threshold is lower: below)
    [InlineData(16, 16, 8, true)]   // batch 8 x 512x512's P5 and layer4: 8 x 16 tiles in 16-wide blocks
    [InlineData(12, 12, 8, false)]  // 9 tiles per image: under the narrowest block
    public void Default_Selection_OfBatches_OnAvx512(int h, int w, int n, bool winograd)
    {
        if (!GemmKernel.IsSupported(GemmKernelKind.Avx512)) return; // the per-image minimum is the AVX-512 kernel's narrowest block
        using var cpu = new CpuBackend(2) { WinogradWeightsPerCall = true };
        Assert.Equal(winograd ? 1 : 0, Run(cpu, 64, h, w, n));
    }

    [Theory]
    [InlineData(64, 16, 20, 2, true)]    // R-50 at 512x640, batch 2: P5, 40 tiles
    [InlineData(64, 8, 10, 2, false)]    // P6: 12 tiles
    [InlineData(64, 16, 20, 1, false)]   // 20 tiles
    [InlineData(512, 16, 20, 2, false)]  // layer4's 512 channels (two passes): from 64 tiles
    [InlineData(512, 16, 32, 2, true)]   // 64 tiles
    public void Default_WeightGradientSelection(int channels, int h, int w, int n, bool winograd)
    {
        if (!GemmKernel.IsSupported(GemmKernelKind.Avx512)) return; // the Winograd weight gradient runs on the AVX-512 kernel only
        using var cpu = new CpuBackend(2);
        var spec = new ConvSpec(channels, 16, 3, 1, 1, 1);
        var random = new Random(h * w + n);
        TensorView x = CpuBackendTests.Tensor(cpu, CpuBackendTests.RandomValues(random, n * channels * h * w), n, channels, h, w);
        TensorView dy = CpuBackendTests.Tensor(cpu, CpuBackendTests.RandomValues(random, n * 16 * h * w), n, 16, h, w);
        var dw = new TensorView(cpu.Allocate(spec.WeightCount), 0, 16, channels, 3, 3);
        cpu.Conv2dBackwardWeights(spec, x, dy, dw, null, accumulate: false);
        Assert.Equal(winograd ? 1 : 0, cpu.WinogradWeightGradientCalls);
    }

    [Fact]
    public void TileOverride_ForcesWinograd_OnFewChannels()
    {
        using var cpu = new CpuBackend(2) { WinogradWeightsPerCall = true, WinogradMinimumTiles = 0 };
        Assert.Equal(1, Run(cpu, 32, 40, 48));
    }

    [Theory]
    [InlineData(40, 40)]  // 100 tiles: 7 panels of 16 (3 of 48 would pad 44)
    [InlineData(32, 32)]  // 64 tiles: 2 of 32
    [InlineData(48, 32)]  // 96 tiles: 2 of 48
    [InlineData(20, 60)]  // 75 tiles: 5 of 16
    public void Winograd_EveryTileWidth_MatchesTheDirectSum(int h, int w)
    {
        using var cpu = new CpuBackend(2) { WinogradWeightsPerCall = true, WinogradMinimumTiles = 0 };
        Assert.Equal(1, Run(cpu, 64, h, w));
    }

    // One convolution; returns the per-call Winograd weight transforms it ran, after checking its result
    // against the direct sum (tolerance: Winograd's rounding, a few times the direct GEMM's).
    private static long Run(CpuBackend cpu, int channels, int h, int w, int n = 1)
    {
        var spec = new ConvSpec(channels, channels, 3, 1, 1, 1);
        var random = new Random(channels + h);
        float[] weight = CpuBackendTests.RandomValues(random, (int)spec.WeightCount), bias = CpuBackendTests.RandomValues(random, channels);
        float[] x = CpuBackendTests.RandomValues(random, n * channels * h * w);
        using IPreparedConv conv = cpu.PrepareConv(spec, weight, bias);
        TensorView xv = CpuBackendTests.Tensor(cpu, x, n, channels, h, w);
        var yv = new TensorView(cpu.Allocate(n * channels * h * w), 0, n, channels, h, w);
        long before = cpu.WinogradWeightPasses;
        cpu.Conv2d(conv, xv, yv, null, relu: false);
        long passes = cpu.WinogradWeightPasses - before;
        float[] y = CpuBackendTests.Read(cpu, yv);
        (double[] want, double[] magnitude) = SharedInputConvolutionTests.Naive(spec, n, h, w, x, weight, bias, null, relu: false);
        for (int i = 0; i < y.Length; i++)
            Assert.True(Math.Abs(want[i] - y[i]) <= 1e-4 * magnitude[i] + 1e-6, $"[{i}] {y[i]} vs {want[i]}");
        return passes;
    }
}
