// WinogradWeights.Repack (run on every UpdateConv, i.e. after each optimizer step) against the plain
// triple loop it replaced: u[a, b] = sum_i sum_j G[a, i] * g[i, j] * G[b, j] in double, rounded to float,
// scattered into the [xi][panel][c][r] panels. Bitwise, for forward and transposed (backward-data)
// weights, for shapes with a partial last panel and with output channels left after the groups of
// four that the vector path takes.
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

public sealed class WinogradRepackTests
{
    private static readonly double[,] G =
    {
        { 1 / 4.0, 0, 0 },
        { -1 / 6.0, -1 / 6.0, -1 / 6.0 },
        { -1 / 6.0, 1 / 6.0, -1 / 6.0 },
        { 1 / 24.0, 1 / 12.0, 1 / 6.0 },
        { 1 / 24.0, -1 / 12.0, 1 / 6.0 },
        { 0, 0, 1 },
    };

    [Theory]
    [InlineData(3, 5, 8, false)]
    [InlineData(3, 5, 8, true)]
    [InlineData(16, 20, 8, false)]
    [InlineData(20, 16, 16, true)]
    [InlineData(64, 38, 16, false)]
    [InlineData(38, 64, 8, true)]
    public void Repack_equals_the_plain_triple_loop_bitwise(int inChannels, int outChannels, int panelRows, bool transposed)
    {
        var spec = new ConvSpec(inChannels, outChannels, 3, 1, 1, 1);
        var random = new Random(inChannels * 1000 + outChannels);
        var weight = new float[spec.WeightCount];
        for (int i = 0; i < weight.Length; i++) weight[i] = (float)((random.NextDouble() - 0.5) * Math.Pow(2, random.Next(-8, 8)));
        var bias = new float[outChannels];
        for (int i = 0; i < bias.Length; i++) bias[i] = (float)random.NextDouble();

        var packed = new WinogradWeights(spec, panelRows);
        packed.Repack(weight, bias, transposed);

        var expected = new float[packed.Panels.Length];
        Span<double> u = stackalloc double[36];
        Span<float> g = stackalloc float[9];
        for (int o = 0; o < outChannels; o++)
        {
            int panel = o / panelRows, r = o % panelRows;
            for (int c = 0; c < inChannels; c++)
            {
                if (transposed)
                    for (int t = 0; t < 9; t++) g[t] = weight[(c * outChannels + o) * 9 + 8 - t];
                else
                    weight.AsSpan((o * inChannels + c) * 9, 9).CopyTo(g);
                for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++)
                {
                    double sum = 0;
                    for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++)
                        sum += G[a, i] * g[i * 3 + j] * G[b, j];
                    u[a * 6 + b] = sum;
                }
                for (int xi = 0; xi < 36; xi++)
                    expected[(((long)xi * packed.PanelCount + panel) * inChannels + c) * panelRows + r] = (float)u[xi];
            }
        }
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(packed.Panels[i]),
                $"panel value {i}: {packed.Panels[i]:R}, the plain loop gives {expected[i]:R}");
        for (int o = 0; o < outChannels; o++) Assert.Equal(bias[o], packed.Bias[o]);
    }

    [Theory]
    [InlineData(16, 38, 8, false, 8)]
    [InlineData(16, 38, 8, true, 16)]
    [InlineData(12, 100, 16, false, 48)]
    public void RepackRows_in_panel_aligned_ranges_equals_Repack_bitwise(int inChannels, int outChannels, int panelRows, bool transposed, int rowsPerRange)
    {
        var spec = new ConvSpec(inChannels, outChannels, 3, 1, 1, 1);
        var random = new Random(outChannels * 7 + rowsPerRange);
        var weight = new float[spec.WeightCount];
        for (int i = 0; i < weight.Length; i++) weight[i] = (float)(random.NextDouble() - 0.5);
        var bias = new float[outChannels];
        for (int i = 0; i < bias.Length; i++) bias[i] = (float)random.NextDouble();
        var whole = new WinogradWeights(spec, panelRows);
        whole.Repack(weight, bias, transposed);
        var ranges = new WinogradWeights(spec, panelRows);
        // Back to front, so no range can lean on one written before it.
        for (int first = (outChannels - 1) / rowsPerRange * rowsPerRange; first >= 0; first -= rowsPerRange)
            ranges.RepackRows(weight, bias, transposed, first, Math.Min(outChannels, first + rowsPerRange));
        Assert.Equal(whole.Panels.Select(BitConverter.SingleToInt32Bits), ranges.Panels.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(whole.Bias, ranges.Bias);
        Assert.Throws<ArgumentOutOfRangeException>(() => ranges.RepackRows(weight, bias, transposed, panelRows / 2, outChannels));
    }
}
