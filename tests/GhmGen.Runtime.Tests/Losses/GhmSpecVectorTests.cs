using GhmGen.Losses;

namespace GhmGen.Runtime.Tests.Losses;

/// <summary>The GHM-C and GHM-R test vectors of docs/MODEL.md §6 (float64 reference values).</summary>
public class GhmSpecVectorTests
{
    private static readonly float[] Logits = [2, -1, 0, -3, -0.5f, 0.3f, 4, -2, 1, 1, 1, 1];
    private static readonly float[] OneHot = [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
    private static readonly float[] ClassWeights = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0];

    private static readonly float[] Deltas = [0.1f, -0.2f, 0.05f, 0, 0.8f, 0, -0.4f, 0.02f, 3, -7, 0.5f, 0.01f];
    private static readonly float[] BoxWeights = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0];

    [Fact]
    public void GhmcWithoutMomentumGivesTheSpecLossAndGradientOnEveryCall()
    {
        var loss = new GhmcLoss(momentum: 0);
        var grad = new float[12];
        for (int call = 0; call < 2; call++)
        {
            float value = loss.Compute(Logits, OneHot, ClassWeights, grad);
            Assert.Equal(0.3612152, value, 1e-6);
            double[] expected = [-0.0085145, 0.0384202, 0.0714286, 0.0067751, 0.0539344, 0.0820632, -0.0025695, 0.0085145, 0, 0, 0, 0];
            for (int i = 0; i < 12; i++) Assert.Equal(expected[i], grad[i], 1e-6);
        }
        Assert.All(loss.AccSum, a => Assert.Equal(0f, a));
    }

    [Fact]
    public void GhmcWithMomentumCarriesItsStateAcrossCalls()
    {
        var loss = new GhmcLoss();
        var grad = new float[12];
        Assert.Equal(1.4448609, loss.Compute(Logits, OneHot, ClassWeights, grad), 1e-6);
        Assert.Equal(0.8256348, loss.Compute(Logits, OneHot, ClassWeights, grad), 1e-6);
    }

    [Fact]
    public void GhmcUpdatesABoundCheckpointBufferInPlace()
    {
        var buffer = new float[30];
        var loss = new GhmcLoss(accSum: buffer);
        loss.Compute(Logits, OneHot, ClassWeights, new float[12]);
        Assert.Same(buffer, loss.AccSum);
        // 8 valid elements: every non-empty bin gets 0.25 * count on the first call.
        Assert.Equal(8 * 0.25f, buffer.Sum(), 6);
        // A second loss bound to the saved state continues where the first stopped.
        var resumed = new GhmcLoss(accSum: (float[])buffer.Clone());
        Assert.Equal(0.8256348, resumed.Compute(Logits, OneHot, ClassWeights, new float[12]), 1e-6);
    }

    [Fact]
    public void GhmrWithoutMomentumGivesTheSpecLoss()
    {
        var loss = new GhmrLoss(momentum: 0);
        Assert.Equal(0.9993339, loss.Compute(Deltas, new float[12], BoxWeights, new float[12]), 1e-6);
        Assert.Equal(0.9993339, loss.Compute(Deltas, new float[12], BoxWeights, new float[12]), 1e-6);
    }

    [Fact]
    public void GhmrWithMomentumCarriesItsStateAcrossCalls()
    {
        var loss = new GhmrLoss();
        var grad = new float[12];
        Assert.Equal(3.3311126, loss.Compute(Deltas, new float[12], BoxWeights, grad), 1e-6);
        Assert.Equal(1.9594781, loss.Compute(Deltas, new float[12], BoxWeights, grad), 1e-6);
        Assert.All(grad.AsSpan(8).ToArray(), g => Assert.Equal(0f, g));
    }

    [Fact]
    public void EdgesMatchMmdetectionBuffers()
    {
        var c = new GhmcLoss();
        Assert.Equal(31, c.Edges.Length);
        Assert.Equal(1f / 30f, c.Edges[1]);
        Assert.Equal(1.000001f, c.Edges[30]);
        var r = new GhmrLoss();
        Assert.Equal(11, r.Edges.Length);
        Assert.Equal(0.3f, r.Edges[3]);
        Assert.Equal(1000f, r.Edges[10]);
    }

    [Fact]
    public void ALevelWithoutPositivesGivesZeroGhmrAndKeepsTheState()
    {
        var loss = new GhmrLoss();
        loss.AccSum[2] = 5f;
        var grad = new float[8];
        Assert.Equal(0f, loss.Compute(new float[8] { 1, 2, 3, 4, 5, 6, 7, 8 }, new float[8], new float[8], grad));
        Assert.Equal(5f, loss.AccSum[2]);
        Assert.All(grad, g => Assert.Equal(0f, g));
    }

    [Fact]
    public void BadInputGetsAClearError()
    {
        var e = Assert.Throws<ArgumentException>(() => new GhmcLoss(accSum: new float[10]));
        Assert.Contains("accSum", e.Message);
        e = Assert.Throws<ArgumentException>(() => new GhmcLoss().Compute(Logits, OneHot.AsSpan(1).ToArray(), ClassWeights, new float[12]));
        Assert.Contains("same length", e.Message);
        e = Assert.Throws<ArgumentException>(() => new GhmcLoss().Compute(Logits, [.. Logits], ClassWeights, new float[12]));
        Assert.Contains("binary targets", e.Message);
    }
}
