using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Layers;

namespace GhmGen.Models.Tests.Forward;

/// <summary>
/// The whole R-50 detector with the Winograd weights made at each call (what <c>ghm detect</c>,
/// <c>ghm test</c> and <c>ghm bench</c> run) against the same network on direct convolution only
/// (the GEMM path, which PyTorchForwardTests checks against PyTorch). At 256x256 the 3x3 stride-1
/// convolutions of layer1, layer2, the FPN's P3 and the head's P3 level have enough tiles to take
/// Winograd (the PyTorch fixtures are too small for it). Tolerance as in PyTorchForwardTests:
/// 1e-4 x each output's max |value|; Winograd's own rounding is ~1e-6 of it there.
/// </summary>
public class WinogradForwardTests
{
    [Fact]
    public void PerCallWinograd_EqualsDirectConvolution()
    {
        const int Height = 256, Width = 256;
        ModelInfo info = ModelRegistry.Get("retinanet-ghm-r50-fpn");
        INetwork network = info.Create();
        SeededWeights.Fill(network);
        float[] input = new float[3 * Height * Width];
        SeededWeights.FillInput(input);

        float[][] Run(CpuBackend backend)
        {
            using IPreparedNetwork prepared = info.Prepare(network, backend);
            using IForwardSession session = prepared.CreateSession(1, Height, Width);
            session.Forward(input);
            return [.. session.Outputs.Select(o =>
            {
                float[] values = new float[o.Tensor.ElementCount];
                backend.Download(o.Tensor, values);
                return values;
            })];
        }

        using var perCall = new CpuBackend(2) { WinogradWeightsPerCall = true };
        using var direct = new CpuBackend(2, winograd: false);
        float[][] got = Run(perCall), expected = Run(direct);
        Assert.True(perCall.WinogradWeightPasses > 0, "no convolution took the per-call Winograd path");
        for (int i = 0; i < expected.Length; i++)
        {
            double maxAbs = expected[i].Max(Math.Abs), worst = 0;
            for (int j = 0; j < expected[i].Length; j++) worst = Math.Max(worst, Math.Abs(got[i][j] - expected[i][j]));
            Assert.True(worst <= 1e-4 * maxAbs, $"output {i}: max |diff| {worst:G4} exceeds 1e-4 x max |value| {maxAbs:G4}");
        }
    }
}
