// WinogradWeights.Repack (U = G g G^T per output and input channel, in micro-kernel panels) against
// the transform written out directly in double: forward and transposed (backward-data) weights,
// output-channel counts that leave partial panels and lanes for the scalar tail, every panel height
// the micro-kernels use; padding rows stay zero and a second Repack rewrites in place.
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

public sealed class WinogradWeightsTests
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
    [InlineData(5, 13, 8, false)]
    [InlineData(5, 13, 8, true)]
    [InlineData(3, 7, 6, false)]
    [InlineData(3, 7, 6, true)]
    [InlineData(7, 3, 4, false)]
    [InlineData(7, 3, 4, true)]
    [InlineData(16, 16, 8, true)]
    public void Repack_EqualsTheDirectTransform(int inChannels, int outChannels, int panelRows, bool transposed)
    {
        var spec = new ConvSpec(inChannels, outChannels, 3, 1, 1, 1);
        var random = new Random(inChannels * 100 + outChannels + (transposed ? 7 : 0));
        // Forward: [out, in, 3, 3]. Transposed: the forward convolution's [in, out, 3, 3] (this one's out is its in).
        float[] weight = [.. Enumerable.Range(0, outChannels * inChannels * 9).Select(_ => (float)(random.NextDouble() * 2 - 1))];
        float[] bias = [.. Enumerable.Range(0, outChannels).Select(_ => (float)random.NextDouble())];
        var packed = new WinogradWeights(spec, panelRows);
        // A first repack from other weights: the second must overwrite every value.
        packed.Repack([.. weight.Select(v => v + 1)], [.. bias.Select(v => v + 1)], transposed);
        packed.Repack(weight, bias, transposed);

        int panels = (outChannels + panelRows - 1) / panelRows;
        Assert.Equal(panels, packed.PanelCount);
        for (int o = 0; o < panels * panelRows; o++)
            Assert.Equal(o < outChannels ? bias[o] : 0f, packed.Bias[o]);
        for (int o = 0; o < panels * panelRows; o++)
        for (int c = 0; c < inChannels; c++)
        {
            double[] u = o < outChannels ? Direct(weight, o, c, inChannels, outChannels, transposed) : new double[36];
            for (int xi = 0; xi < 36; xi++)
            {
                float got = packed.Panels[(((long)xi * panels + o / panelRows) * inChannels + c) * panelRows + o % panelRows];
                Assert.True(Math.Abs(got - u[xi]) <= 1e-6 * (Math.Abs(u[xi]) + 1e-3), $"o {o} c {c} xi {xi}: {got} vs {u[xi]}");
            }
        }
    }

    private static double[] Direct(float[] weight, int o, int c, int inChannels, int outChannels, bool transposed)
    {
        var g = new double[9];
        for (int k = 0; k < 9; k++)
            g[k] = transposed ? weight[(c * outChannels + o) * 9 + 8 - k] : weight[(o * inChannels + c) * 9 + k];
        var u = new double[36];
        for (int a = 0; a < 6; a++)
        for (int b = 0; b < 6; b++)
        for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            u[a * 6 + b] += G[a, i] * g[i * 3 + j] * G[b, j];
        return u;
    }
}
