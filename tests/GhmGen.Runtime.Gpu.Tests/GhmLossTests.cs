using GhmGen.Backends;
using GhmGen.Backends.Gpu;

namespace GhmGen.Runtime.Gpu.Tests;

/// <summary>
/// GHM-C and GHM-R on the device against docs/MODEL.md §6's float64 test vectors and against a naive
/// loop-over-bins implementation (mmdetection's formulation) written in double in this file.
/// </summary>
[Collection(CpuAcceleratorCollection.Name)]
public sealed class GhmLossTests(CpuAcceleratorFixture fixture)
{
    private readonly IlgpuBackend _gpu = fixture.Gpu;

    private static readonly float[] SpecLogits = [2, -1, 0, -3, -0.5f, 0.3f, 4, -2, 1, 1, 1, 1];
    private static readonly float[] SpecTargets = [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
    private static readonly float[] SpecLabelWeights = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0];

    [Fact]
    public void ClassificationWithoutMomentumMatchesSpecVector()
    {
        using var losses = new IlgpuGhmLosses(_gpu, new float[30], new float[10], classificationMomentum: 0f);
        var gradient = new float[12];

        float first = Classification(losses, SpecLogits, SpecTargets, SpecLabelWeights, gradient);
        float second = Classification(losses, SpecLogits, SpecTargets, SpecLabelWeights, gradient);

        Assert.Equal(0.3612152, first, 1e-6);
        Assert.Equal(0.3612152, second, 1e-6);  // no state with momentum 0
        double[] expected = [-0.0085145, 0.0384202, 0.0714286, 0.0067751, 0.0539344, 0.0820632, -0.0025695, 0.0085145, 0, 0, 0, 0];
        for (int i = 0; i < 12; i++) Assert.Equal(expected[i], gradient[i], 1e-6);
    }

    [Fact]
    public void ClassificationWithMomentumMatchesSpecVectorOverTwoCalls()
    {
        var accSum = new float[30];
        using var losses = new IlgpuGhmLosses(_gpu, accSum, new float[10], classificationMomentum: 0.75f);
        var gradient = new float[12];

        Assert.Equal(1.4448609, Classification(losses, SpecLogits, SpecTargets, SpecLabelWeights, gradient), 1e-6);
        Assert.Contains(accSum, v => v > 0f);  // the caller's array carries the state
        Assert.Equal(0.8256348, Classification(losses, SpecLogits, SpecTargets, SpecLabelWeights, gradient), 1e-6);
    }

    // d = p - y = [[0.1,-0.2,0.05,0],[0.8,0,-0.4,0.02]] plus one row with weight 0.
    private static readonly float[] SpecDeltas = [0.1f, -0.2f, 0.05f, 0f, 0.8f, 0f, -0.4f, 0.02f, 5f, -3f, 1f, 2f];
    private static readonly float[] SpecRegressionWeights = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0];

    [Fact]
    public void RegressionMatchesSpecVectors()
    {
        var zeros = new float[12];
        using (var stateless = new IlgpuGhmLosses(_gpu, new float[30], new float[10], regressionMomentum: 0f))
        {
            Assert.Equal(0.9993339, Regression(stateless, SpecDeltas, zeros, SpecRegressionWeights, new float[12]), 1e-6);
        }

        using var losses = new IlgpuGhmLosses(_gpu, new float[30], new float[10], regressionMomentum: 0.7f);
        Assert.Equal(3.3311126, Regression(losses, SpecDeltas, zeros, SpecRegressionWeights, new float[12]), 1e-6);
        Assert.Equal(1.9594781, Regression(losses, SpecDeltas, zeros, SpecRegressionWeights, new float[12]), 1e-6);
    }

    [Fact]
    public void RegressionWithoutPositivesIsZero()
    {
        using var losses = new IlgpuGhmLosses(_gpu, new float[30], new float[10]);
        var gradient = new float[12];
        Assert.Equal(0f, Regression(losses, SpecDeltas, new float[12], new float[12], gradient));
        Assert.All(gradient, g => Assert.Equal(0f, g));
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(0.75f)]
    public void ClassificationMatchesNaiveLoopOverBins(float momentum)
    {
        // 600 rows x 5 classes: more elements than one group so the grid-stride loop and the
        // per-group shared histograms are exercised.
        var random = new Random(11);
        int n = 600, classes = 5;
        float[] x = TestTensors.Random(random, n * classes, 6f);
        var t = new float[n * classes];
        var w = new float[n * classes];
        for (int r = 0; r < n; r++)
        {
            int kind = random.Next(4);  // 0 ignored, 1 negative, 2-3 positive
            for (int c = 0; c < classes; c++) w[r * classes + c] = kind == 0 ? 0f : 1f;
            if (kind >= 2) t[r * classes + random.Next(classes)] = 1f;
        }
        var accSum = new float[30];
        var naiveAcc = new double[30];
        using var losses = new IlgpuGhmLosses(_gpu, accSum, new float[10], classificationMomentum: momentum);
        var gradient = new float[n * classes];

        for (int call = 0; call < 2; call++)
        {
            float loss = Classification(losses, x, t, w, gradient);
            (double naiveLoss, double[] naiveGradient) = NaiveGhmc(x, t, w, naiveAcc, momentum);
            Assert.Equal(naiveLoss, loss, naiveLoss * 1e-5);
            for (int i = 0; i < gradient.Length; i++) Assert.Equal(naiveGradient[i], gradient[i], 1e-7);
            for (int i = 0; i < 30; i++) Assert.Equal(naiveAcc[i], accSum[i], naiveAcc[i] * 1e-6);
            for (int i = 0; i < x.Length; i++) x[i] *= 0.5f;  // a second batch with other bins
        }
    }

    [Fact]
    public void RegressionMatchesNaiveLoopOverBins()
    {
        var random = new Random(12);
        int n = 300;
        float[] p = TestTensors.Random(random, n * 4, 0.3f), y = TestTensors.Random(random, n * 4, 0.3f);
        var w = new float[n * 4];
        for (int r = 0; r < n; r++)
            if (random.Next(3) == 0) for (int k = 0; k < 4; k++) w[r * 4 + k] = 1f;
        var accSum = new float[10];
        var naiveAcc = new double[10];
        using var losses = new IlgpuGhmLosses(_gpu, new float[30], accSum, regressionMomentum: 0.7f);
        var gradient = new float[n * 4];

        for (int call = 0; call < 2; call++)
        {
            float loss = Regression(losses, p, y, w, gradient);
            (double naiveLoss, double[] naiveGradient) = NaiveGhmr(p, y, w, naiveAcc, 0.7);
            Assert.Equal(naiveLoss, loss, naiveLoss * 1e-5);
            for (int i = 0; i < gradient.Length; i++) Assert.Equal(naiveGradient[i], gradient[i], 1e-6);
            for (int i = 0; i < p.Length; i++) p[i] *= 1.7f;
        }
    }

    private float Classification(IlgpuGhmLosses losses, float[] x, float[] t, float[] w, float[] gradient)
    {
        TensorView gx = Put(x), gt = Put(t), gw = Put(w), gg = Put(new float[x.Length]);
        float loss = losses.Classification(gx, gt, gw, gg);
        _gpu.Download(gg, gradient);
        return loss;
    }

    private float Regression(IlgpuGhmLosses losses, float[] p, float[] y, float[] w, float[] gradient)
    {
        TensorView gp = Put(p), gy = Put(y), gw = Put(w), gg = Put(new float[p.Length]);
        float loss = losses.Regression(gp, gy, gw, gg);
        _gpu.Download(gg, gradient);
        return loss;
    }

    private TensorView Put(float[] values) => TestTensors.Put(_gpu, values.Length / 4, 4, 1, 1, values);

    /// <summary>mmdetection's GHMC forward, loop over bins, in double (edges in float32 as torch).</summary>
    private static (double Loss, double[] Gradient) NaiveGhmc(float[] x, float[] t, float[] w, double[] acc, double momentum)
    {
        const int bins = 30;
        var edges = new double[bins + 1];
        for (int k = 0; k <= bins; k++) edges[k] = (float)k / bins;
        edges[bins] = (float)(1f + 1e-6f);
        var g = new double[x.Length];
        var sig = new double[x.Length];
        int valid = 0;
        for (int i = 0; i < x.Length; i++)
        {
            sig[i] = 1 / (1 + Math.Exp(-x[i]));
            g[i] = Math.Abs(sig[i] - t[i]);
            if (w[i] > 0) valid++;
        }
        double tot = Math.Max(valid, 1);
        var weights = new double[x.Length];
        int n = 0;
        for (int b = 0; b < bins; b++)
        {
            var inBin = Enumerable.Range(0, x.Length).Where(i => w[i] > 0 && g[i] >= edges[b] && g[i] < edges[b + 1]).ToList();
            if (inBin.Count == 0) continue;
            double binWeight;
            if (momentum > 0)
            {
                acc[b] = momentum * acc[b] + (1 - momentum) * inBin.Count;
                binWeight = tot / acc[b];
            }
            else
            {
                binWeight = tot / inBin.Count;
            }
            foreach (int i in inBin) weights[i] = binWeight;
            n++;
        }
        if (n > 0) for (int i = 0; i < weights.Length; i++) weights[i] /= n;
        double loss = 0;
        var gradient = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            loss += weights[i] * (Math.Max(x[i], 0) - x[i] * t[i] + Math.Log(1 + Math.Exp(-Math.Abs(x[i]))));
            gradient[i] = weights[i] * (sig[i] - t[i]) / tot;
        }
        return (loss / tot, gradient);
    }

    /// <summary>mmdetection's GHMR forward (mu 0.02, loss weight 10), loop over bins, in double.</summary>
    private static (double Loss, double[] Gradient) NaiveGhmr(float[] p, float[] y, float[] w, double[] acc, double momentum)
    {
        const int bins = 10;
        const double mu = 0.02f, lossWeight = 10;
        var edges = new double[bins + 1];
        for (int k = 0; k <= bins; k++) edges[k] = (float)k / bins;
        edges[bins] = 1000;
        var d = new double[p.Length];
        var g = new double[p.Length];
        double weightSum = 0;
        for (int i = 0; i < p.Length; i++)
        {
            d[i] = (double)p[i] - y[i];
            g[i] = Math.Abs(d[i]) / Math.Sqrt(d[i] * d[i] + mu * mu);
            weightSum += w[i];
        }
        double tot = Math.Max(weightSum, 1);
        var weights = new double[p.Length];
        int n = 0;
        for (int b = 0; b < bins; b++)
        {
            var inBin = Enumerable.Range(0, p.Length).Where(i => w[i] > 0 && g[i] >= edges[b] && g[i] < edges[b + 1]).ToList();
            if (inBin.Count == 0) continue;
            n++;
            acc[b] = momentum * acc[b] + (1 - momentum) * inBin.Count;
            foreach (int i in inBin) weights[i] = tot / acc[b];
        }
        if (n > 0) for (int i = 0; i < weights.Length; i++) weights[i] /= n;
        double loss = 0;
        var gradient = new double[p.Length];
        for (int i = 0; i < p.Length; i++)
        {
            double root = Math.Sqrt(d[i] * d[i] + mu * mu);
            loss += weights[i] * (root - mu);
            gradient[i] = weights[i] * d[i] / root / tot * lossWeight;
        }
        return (loss / tot * lossWeight, gradient);
    }
}
