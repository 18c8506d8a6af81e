using System.Runtime.Intrinsics;
using GhmGen.Detection;
using GhmGen.Losses;

namespace GhmGen.Runtime.Tests.Losses;

/// <summary>
/// The one-pass, SIMD, multi-threaded GHM losses against mmdetection's per-bin loop written
/// plainly here (double precision, float32 state as PyTorch keeps it).
/// </summary>
public class GhmNaiveTests
{
    // mmdetection's GHMC/GHMR loop: for each bin, select its valid elements, update acc_sum, set weights.
    private static (double Loss, double[] Grad) NaiveLoop(double[] g, double[] lossElement, double[] dLoss, bool[] valid, double tot,
        float[] edges, float[] accSum, double momentum, double lossWeight)
    {
        int bins = edges.Length - 1;
        var weights = new double[g.Length];
        int n = 0;
        for (int b = 0; b < bins; b++)
        {
            var inds = Enumerable.Range(0, g.Length).Where(i => valid[i] && (float)g[i] >= edges[b] && (float)g[i] < edges[b + 1]).ToArray();
            if (inds.Length == 0) continue;
            double w;
            if (momentum > 0)
            {
                accSum[b] = (float)momentum * accSum[b] + (float)((1 - momentum) * inds.Length);
                w = tot / accSum[b];
            }
            else
            {
                w = tot / inds.Length;
            }
            foreach (int i in inds) weights[i] = w;
            n++;
        }
        if (n > 0) for (int i = 0; i < weights.Length; i++) weights[i] /= n;
        double loss = 0;
        var grad = new double[g.Length];
        for (int i = 0; i < g.Length; i++)
        {
            loss += weights[i] * lossElement[i];
            grad[i] = weights[i] * dLoss[i] / tot * lossWeight;
        }
        return (loss / tot * lossWeight, grad);
    }

    private static (double Loss, double[] Grad) NaiveGhmc(float[] x, float[] t, float[] w, float[] accSum, double momentum)
    {
        var edges = new GhmcLoss().Edges.ToArray();
        int m = x.Length;
        var g = new double[m];
        var bce = new double[m];
        var d = new double[m];
        var valid = new bool[m];
        for (int i = 0; i < m; i++)
        {
            double s = 1 / (1 + Math.Exp(-(double)x[i]));
            d[i] = s - t[i];
            g[i] = Math.Abs(d[i]);
            bce[i] = Math.Max(x[i], 0) - (double)x[i] * t[i] + Math.Log(1 + Math.Exp(-Math.Abs((double)x[i])));
            valid[i] = w[i] > 0;
        }
        return NaiveLoop(g, bce, d, valid, Math.Max(valid.Count(v => v), 1), edges, accSum, momentum, 1.0);
    }

    private static (double Loss, double[] Grad) NaiveGhmr(float[] p, float[] y, float[] w, float[] accSum, double momentum)
    {
        var edges = new GhmrLoss().Edges.ToArray();
        int m = p.Length;
        var g = new double[m];
        var asl1 = new double[m];
        var dLoss = new double[m];
        var valid = new bool[m];
        for (int i = 0; i < m; i++)
        {
            double diff = (double)p[i] - y[i];
            double root = Math.Sqrt(diff * diff + 0.02 * 0.02);
            asl1[i] = root - 0.02;
            dLoss[i] = diff / root;
            g[i] = Math.Abs(dLoss[i]);
            valid[i] = w[i] > 0;
        }
        return NaiveLoop(g, asl1, dLoss, valid, Math.Max(w.Sum(v => (double)v), 1), edges, accSum, momentum, 10.0);
    }

    // Random data kept 1e-5 away from bin edges, so float/double rounding cannot move an element across one.
    private static (float[] X, float[] T, float[] W) RandomClassification(int count, int seed, float[] edges)
    {
        var rng = new Random(seed);
        var x = new float[count];
        var t = new float[count];
        var w = new float[count];
        for (int i = 0; i < count; i++)
        {
            t[i] = rng.NextDouble() < 0.1 ? 1 : 0;
            w[i] = rng.NextDouble() < 0.9 ? 1 : 0;
            x[i] = (float)(rng.NextDouble() * 14 - 9);
            double g = Math.Abs(1 / (1 + Math.Exp(-(double)x[i])) - t[i]);
            if (edges.Any(e => Math.Abs(e - g) < 1e-5)) x[i] = -4f;
        }
        return (x, t, w);
    }

    private static void AssertClose(double expectedLoss, double[] expectedGrad, float loss, float[] grad)
    {
        Assert.True(Math.Abs(expectedLoss - loss) <= 1e-5 * Math.Abs(expectedLoss), $"loss: expected {expectedLoss:R}, got {loss:R}");
        double max = expectedGrad.Max(Math.Abs);
        for (int i = 0; i < grad.Length; i++)
            Assert.True(Math.Abs(expectedGrad[i] - grad[i]) <= 1e-4 * max, $"grad[{i}]: expected {expectedGrad[i]:R}, got {grad[i]:R}");
    }

    [Theory]
    [InlineData(1, 0.75)]
    [InlineData(13, 0.75)]    // shorter than one SIMD vector plus a tail
    [InlineData(4_003, 0.0)]
    [InlineData(150_011, 0.75)] // several chunks and a ragged end
    public void DenseGhmcMatchesThePerBinLoopOverTwoCalls(int count, double momentum)
    {
        var loss = new GhmcLoss(momentum: momentum);
        var naiveState = new float[30];
        for (int call = 0; call < 2; call++)
        {
            var (x, t, w) = RandomClassification(count, 100 * call + count, loss.Edges.ToArray());
            var grad = new float[count];
            float value = loss.Compute(x, t, w, grad);
            var (expectedLoss, expectedGrad) = NaiveGhmc(x, t, w, naiveState, momentum);
            AssertClose(expectedLoss, expectedGrad, value, grad);
            for (int b = 0; b < 30; b++) Assert.Equal(naiveState[b], loss.AccSum[b], 5);
        }
    }

    [Theory]
    [InlineData(7, 0.7)]
    [InlineData(70_001, 0.7)]
    [InlineData(9_999, 0.0)]
    public void DenseGhmrMatchesThePerBinLoopOverTwoCalls(int count, double momentum)
    {
        var loss = new GhmrLoss(momentum: momentum);
        var naiveState = new float[10];
        var rng = new Random(count);
        for (int call = 0; call < 2; call++)
        {
            var p = new float[count];
            var y = new float[count];
            var w = new float[count];
            for (int i = 0; i < count; i++)
            {
                p[i] = (float)(rng.NextDouble() * 2 - 1);
                y[i] = (float)(rng.NextDouble() * 0.4 - 0.2);
                w[i] = rng.NextDouble() < 0.3 ? 1 : 0;
                double d = (double)p[i] - y[i];
                double g = Math.Abs(d) / Math.Sqrt(d * d + 0.0004);
                if (loss.Edges.ToArray().Any(e => Math.Abs(e - g) < 1e-5)) p[i] = y[i] + 0.011f;
            }
            var grad = new float[count];
            float value = loss.Compute(p, y, w, grad);
            var (expectedLoss, expectedGrad) = NaiveGhmr(p, y, w, naiveState, momentum);
            AssertClose(expectedLoss, expectedGrad, value, grad);
            for (int b = 0; b < 10; b++) Assert.Equal(naiveState[b], loss.AccSum[b], 4);
        }
    }

    private static LevelTargets RandomLevel(int images, int cells, int classes, int seed)
    {
        var level = new LevelTargets(images, 9, cells, classes);
        var rng = new Random(seed);
        for (int i = 0; i < level.LabelCodes.Length; i++)
        {
            double u = rng.NextDouble();
            level.LabelCodes[i] = u < 0.05 ? rng.Next(classes) : u < 0.15 ? -1 : classes;
        }
        return level;
    }

    [Fact]
    public void NchwLevelEqualsTheDenseFormOnPermutedData()
    {
        const int images = 2, cells = 37, classes = 80, anchors = 9;
        LevelTargets level = RandomLevel(images, cells, classes, 5);
        var (x, _, _) = RandomClassification((int)level.ClassOutputLength, 6, new GhmcLoss().Edges.ToArray());
        // mmdetection's view: cls_score.permute(0, 2, 3, 1).reshape(-1, C), one-hot labels.
        int rows = images * cells * anchors;
        var dx = new float[rows * classes];
        var dt = new float[rows * classes];
        var dw = new float[rows * classes];
        for (int n = 0; n < images; n++)
            for (int p = 0; p < cells; p++)
                for (int a = 0; a < anchors; a++)
                {
                    int row = (n * cells + p) * anchors + a;
                    int code = level.LabelCodes[(n * anchors + a) * cells + p];
                    for (int c = 0; c < classes; c++)
                    {
                        dx[row * classes + c] = x[((n * anchors * classes) + a * classes + c) * cells + p];
                        dt[row * classes + c] = code == c ? 1 : 0;
                        dw[row * classes + c] = code >= 0 ? 1 : 0;
                    }
                }
        var nchwLoss = new GhmcLoss();
        var denseLoss = new GhmcLoss();
        var nchwGrad = new float[x.Length];
        var denseGrad = new float[x.Length];
        for (int call = 0; call < 2; call++)
        {
            float a1 = nchwLoss.ComputeLevel(x, level, nchwGrad);
            float a2 = denseLoss.Compute(dx, dt, dw, denseGrad);
            Assert.Equal(a2, a1, 1e-6f * Math.Abs(a2));
            for (int n = 0; n < images; n++)
                for (int p = 0; p < cells; p++)
                    for (int a = 0; a < anchors; a++)
                        for (int c = 0; c < classes; c++)
                            Assert.Equal(denseGrad[(((n * cells + p) * anchors + a) * classes) + c],
                                nchwGrad[((n * anchors * classes) + a * classes + c) * cells + p], 1e-9f);
            Assert.Equal(denseLoss.AccSum, nchwLoss.AccSum);
        }
    }

    [Fact]
    public void ResultsDoNotDependOnTheThreadCount()
    {
        LevelTargets level = RandomLevel(2, 1000, 80, 9);
        var (x, _, _) = RandomClassification((int)level.ClassOutputLength, 10, new GhmcLoss().Edges.ToArray());
        var serial = new GhmcLoss { MaxDegreeOfParallelism = 1 };
        var parallel = new GhmcLoss { MaxDegreeOfParallelism = 8 };
        var g1 = new float[x.Length];
        var g2 = new float[x.Length];
        for (int call = 0; call < 2; call++)
        {
            Assert.Equal(serial.ComputeLevel(x, level, g1), parallel.ComputeLevel(x, level, g2));
            Assert.Equal(g1, g2);
            Assert.Equal(serial.AccSum, parallel.AccSum);
        }
    }
}

/// <summary>The vector exp and log approximations inside GHM-C's first pass, against System.Math.</summary>
public class GhmMathTests
{
    [Fact]
    public void ExpOfNonPositiveArgumentsIsWithinTwoUlp()
    {
        for (double a = -87; a <= 0; a += 0.0137)
        {
            var v = GhmBinning.ExpNonPositive(System.Runtime.Intrinsics.Vector256.Create((float)a));
            double expected = Math.Exp((float)a);
            Assert.True(Math.Abs(v.GetElement(0) - expected) <= 2.5e-7 * expected, $"exp({a}) = {expected:R}, got {v.GetElement(0):R}");
        }
    }

    [Fact]
    public void LogBetweenOneAndTwoIsWithinTwoUlp()
    {
        for (double y = 1; y <= 2; y += 0.0001)
        {
            var v = GhmBinning.LogOneToTwo(System.Runtime.Intrinsics.Vector256.Create((float)y));
            double expected = Math.Log((float)y);
            Assert.True(Math.Abs(v.GetElement(0) - expected) <= 1.2e-7 * Math.Max(expected, 1e-3), $"log({y}) = {expected:R}, got {v.GetElement(0):R}");
        }
    }
}

/// <summary>The table-free vector bin lookup against the plain edge test.</summary>
public class GhmBinLookupTests
{
    [Fact]
    public unsafe void UniformBinEqualsTheEdgeTestAtAndAroundEveryEdge()
    {
        foreach (float[] edges in new[] { new GhmcLoss().Edges.ToArray(), new GhmrLoss().Edges.ToArray() })
        {
            Assert.True(GhmBinning.HasUniformEdges(edges));
            int bins = edges.Length - 1;
            var values = new List<float> { 0f, 1f, float.Epsilon };
            for (int k = 0; k < bins; k++)
            {
                float e = edges[k];
                values.AddRange([e, MathF.BitIncrement(e), MathF.BitDecrement(e), e + 0.01f]);
            }
            values.RemoveAll(v => v < 0 || v > 1);
            fixed (float* edgePtr = edges)
            {
                foreach (float g in values)
                {
                    int expected = -1;
                    for (int b = 0; b < bins; b++) if (g >= edges[b] && g < edges[b + 1]) expected = b;
                    int actual = GhmBinning.UniformBin(Vector256.Create(g), Vector256.Create((float)bins), Vector256.Create(bins - 1)).ToScalar();
                    Assert.True(expected == actual, $"g = {g:R} with {bins} bins: expected bin {expected}, got {actual}");
                    Assert.Equal(expected, GhmBinning.BinOf(g, edgePtr, bins));
                }
            }
        }
    }
}
