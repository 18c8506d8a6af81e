using GhmGen.Backends;
using GhmGen.Layers;

namespace GhmGen.Runtime.Tests.Layers;

/// <summary>
/// BatchNormFolding.UnfoldGradients against float64 finite differences: for a loss that is any
/// linear function of the folded weights, L = sum(cW * W') + sum(cb * b'), the folded gradients
/// are cW and cb, and the unfolded ones must be dL/dW, dL/db, dL/dgamma, dL/dbeta.
/// </summary>
public sealed class BatchNormFoldingTests
{
    private const int Out = 3, PerOut = 5;
    private const double Eps = 1e-5;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void UnfoldGradients_EqualsFiniteDifferencesOfTheFoldedLoss(bool withBias)
    {
        var random = new Random(withBias ? 1 : 2);
        float[] R(int n, double lo, double hi) => Enumerable.Range(0, n).Select(_ => (float)(lo + random.NextDouble() * (hi - lo))).ToArray();
        float[] w = R(Out * PerOut, -1, 1), b = withBias ? R(Out, -1, 1) : [], gamma = R(Out, 0.5, 1.5), beta = R(Out, -1, 1);
        float[] mean = R(Out, -0.5, 0.5), variance = R(Out, 0.2, 2);
        float[] cw = R(Out * PerOut, -1, 1), cb = R(Out, -1, 1); // dL/dW', dL/db'

        var dw = new float[w.Length];
        var db = new float[b.Length];
        var dgamma = new float[Out];
        var dbeta = new float[Out];
        BatchNormFolding.UnfoldGradients(cw, cb, w, b, gamma, mean, variance, dw, db, dgamma, dbeta, Eps);

        double[] W = w.Select(v => (double)v).ToArray(), Bs = b.Select(v => (double)v).ToArray();
        double[] G = gamma.Select(v => (double)v).ToArray(), Be = beta.Select(v => (double)v).ToArray();
        double Loss()
        {
            double loss = 0;
            for (int o = 0; o < Out; o++)
            {
                double a = G[o] / Math.Sqrt(variance[o] + Eps);
                for (int k = 0; k < PerOut; k++) loss += cw[o * PerOut + k] * W[o * PerOut + k] * a;
                loss += cb[o] * (a * ((withBias ? Bs[o] : 0) - mean[o]) + Be[o]);
            }
            return loss;
        }
        void Check(double[] p, float[] analytic, string name)
        {
            for (int i = 0; i < p.Length; i++)
            {
                const double h = 1e-6;
                double keep = p[i];
                p[i] = keep + h;
                double plus = Loss();
                p[i] = keep - h;
                double minus = Loss();
                p[i] = keep;
                double fd = (plus - minus) / (2 * h);
                Assert.True(Math.Abs(analytic[i] - fd) <= 1e-5 * (1 + Math.Abs(fd)), $"d{name}[{i}]: {analytic[i]} vs finite difference {fd}");
            }
        }
        Check(W, dw, "weight");
        if (withBias) Check(Bs, db, "bias");
        Check(G, dgamma, "gamma");
        Check(Be, dbeta, "beta");
    }

    [Fact]
    public void UnfoldGradients_LeavesUnwantedGradientsOut()
    {
        float[] w = [1, 2, 3, 4], gamma = [2, 1], mean = [0.5f, -0.5f], variance = [1, 3], cw = [1, 1, 1, 1], cb = [1, -1];
        var dgamma = new float[2];
        // Only gamma wanted (a frozen convolution under a trained batch norm).
        BatchNormFolding.UnfoldGradients(cw, cb, w, [], gamma, mean, variance, [], [], dgamma, [], Eps);
        Assert.Equal((float)((1 + 2 + 1 * (0 - 0.5)) / Math.Sqrt(1 + Eps)), dgamma[0], 6);
        Assert.Equal((float)((3 + 4 - 1 * (0 + 0.5)) / Math.Sqrt(3 + Eps)), dgamma[1], 6);
        // Only the weight wanted (a trained convolution under a frozen batch norm): no folded bias gradient needed.
        var dw = new float[4];
        BatchNormFolding.UnfoldGradients(cw, [], w, [], gamma, mean, variance, dw, [], [], [], Eps);
        Assert.Equal((float)(2 / Math.Sqrt(1 + Eps)), dw[0], 6);
        Assert.Equal((float)(1 / Math.Sqrt(3 + Eps)), dw[3], 6);
        Assert.Throws<ArgumentException>(() => BatchNormFolding.UnfoldGradients(cw, [], w, [], gamma, mean, variance, [], [], dgamma, [], Eps));
    }

    [Theory]
    [InlineData(true, true)]   // conv bias + BN
    [InlineData(false, true)]  // ResNet's: no bias, BN
    [InlineData(true, false)]  // the head's: bias, no BN
    public void PrepareTrained_ReadsTheLayersOnDemand_AsPrepareFolds(bool convBias, bool withBatchNorm)
    {
        // On the CPU backend PrepareTrained keeps no copy: after the host weights change, Update only marks them
        // changed, and the next call folds the layers again. Its outputs equal those of a convolution prepared
        // afresh from the same layers with Prepare, bitwise, before and after the change; the reference backend
        // has no weight sources, so there PrepareTrained is Prepare.
        var conv = new Conv2d("c", new ConvSpec(16, 24, 3, 1, 1, 1), bias: convBias);
        BatchNorm2d? bn = withBatchNorm ? new BatchNorm2d("bn", 24) : null;
        var random = new Random(11);
        void Randomize()
        {
            var tensors = new List<StateTensor> { conv.Weight };
            if (conv.Bias is { } b) tensors.Add(b);
            if (bn is not null) tensors.AddRange([bn.Weight, bn.Bias, bn.RunningMean]);
            foreach (StateTensor t in tensors)
                for (int i = 0; i < t.Data.Length; i++) t.Data[i] = (float)(random.NextDouble() - 0.5);
            if (bn is not null)
                for (int i = 0; i < bn.RunningVar.Data.Length; i++) bn.RunningVar.Data[i] = 0.5f + (float)random.NextDouble();
        }
        Randomize();
        using var cpu = new GhmGen.Backends.Cpu.CpuBackend(2);
        float[]? scratch = null;
        IPreparedConv trained = ConvPreparation.PrepareTrained(cpu, conv, bn, ref scratch);
        Assert.True(cpu.PreparedBytes(trained).Panels < 4 * conv.Spec.WeightCount / 8); // no packed copy of the weights
        float[] input = Enumerable.Range(0, 2 * 16 * 7 * 9).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] Forward(IBackend backend, IPreparedConv prepared)
        {
            var x = new TensorView(backend.Allocate(input.Length), 0, 2, 16, 7, 9);
            var y = new TensorView(backend.Allocate(2 * 24 * 7 * 9), 0, 2, 24, 7, 9);
            backend.Upload(input, x);
            backend.Conv2d(prepared, x, y, null, relu: false);
            float[] result = new float[y.ElementCount];
            backend.Download(y, result);
            return result;
        }
        for (int step = 0; step < 2; step++)
        {
            using (IPreparedConv fresh = ConvPreparation.Prepare(cpu, conv, bn))
                Assert.Equal(Forward(cpu, fresh), Forward(cpu, trained));
            Randomize(); // an optimizer step
            ConvPreparation.Update(cpu, trained, conv, bn, ref scratch);
        }
        trained.Dispose();

        using var reference = new ReferenceBackend();
        float[]? referenceScratch = null;
        using IPreparedConv onReference = ConvPreparation.PrepareTrained(reference, conv, bn, ref referenceScratch);
        using IPreparedConv prepared = ConvPreparation.Prepare(reference, conv, bn);
        Assert.Equal(Forward(reference, prepared), Forward(reference, onReference));
    }

    [Fact]
    public void TrainedConv_CollectsUnfoldedGradients_AndRefoldsUpdatedWeights()
    {
        var conv = new Conv2d("c", new ConvSpec(2, 2, 1, 1, 0, 1), bias: true);
        var bn = new BatchNorm2d("bn", 2);
        var random = new Random(3);
        foreach (StateTensor t in new[] { conv.Weight, conv.Bias!, bn.Weight, bn.Bias, bn.RunningMean })
            for (int i = 0; i < t.Data.Length; i++) t.Data[i] = (float)(random.NextDouble() - 0.5);
        bn.RunningVar.Data[0] = 0.7f;
        bn.RunningVar.Data[1] = 1.3f;
        using var backend = new ReferenceBackend();
        IPreparedConv prepared = ConvPreparation.Prepare(backend, conv, bn);
        DeviceBuffer gradients = backend.Allocate(6);
        var trained = new TrainedConv(conv, bn, prepared, trainConv: true, trainBatchNorm: true,
            new TensorView(gradients, 0, 2, 2, 1, 1), new TensorView(gradients, 4, 1, 2, 1, 1));
        float[] folded = [0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f];
        backend.Upload(folded.AsSpan(0, 4), trained.WeightGradient);
        backend.Upload(folded.AsSpan(4, 2), trained.BiasGradient!.Value);
        float[] scratch = new float[trained.ScratchLength];
        trained.CollectGradients(backend, scratch);

        var dw = new float[4];
        var db = new float[2];
        var dgamma = new float[2];
        var dbeta = new float[2];
        BatchNormFolding.UnfoldGradients(folded.AsSpan(0, 4), folded.AsSpan(4, 2), conv.Weight.Data, conv.Bias!.Data, bn.Weight.Data, bn.RunningMean.Data, bn.RunningVar.Data, dw, db, dgamma, dbeta);
        Assert.Equal(dw, trained.Weight!.Data);
        Assert.Equal(db, trained.Bias!.Data);
        Assert.Equal(dgamma, trained.BatchNormWeight!.Data);
        Assert.Equal(dbeta, trained.BatchNormBias!.Data);

        // After an optimizer step on the host, Refold gives the same convolution as preparing afresh.
        conv.Weight.Data[0] += 1;
        bn.Weight.Data[1] *= 2;
        trained.Refold(backend, scratch);
        IPreparedConv fresh = ConvPreparation.Prepare(backend, conv, bn);
        DeviceBuffer io = backend.Allocate(2 * 2 * 3);
        var x = new TensorView(io, 0, 1, 2, 1, 3);
        var y1 = new TensorView(io, 6, 1, 2, 1, 3);
        backend.Upload([1, 2, 3, -1, 0.5f, 2], x);
        backend.Conv2d(trained.Prepared, x, y1, null, relu: false);
        float[] a = new float[6], bFresh = new float[6];
        backend.Download(y1, a);
        backend.Conv2d(fresh, x, y1, null, relu: false);
        backend.Download(y1, bFresh);
        Assert.Equal(bFresh, a);
    }

    [Theory]
    [InlineData(true, true, true)]   // conv with bias + BN, both trained: weight and beta arrays in place, dgamma and conv bias from them
    [InlineData(true, false, true)]  // no bias, both trained (ResNet's convolutions)
    [InlineData(false, false, true)] // frozen conv under a trained BN: the folded weight gradient needs a buffer of its own
    [InlineData(true, true, false)]  // no batch norm: the folded gradients are the gradients
    public void TrainedConv_OnHostArrays_UnfoldsInPlace_AsOutOfPlace(bool trainConv, bool convBias, bool withNorm)
    {
        var conv = new Conv2d("c", new ConvSpec(2, 3, 3, 1, 1, 1), bias: convBias); // 2 in, 3 out, 3x3
        BatchNorm2d? bn = withNorm ? new BatchNorm2d("bn", 3) : null;
        var random = new Random(11);
        IEnumerable<StateTensor> tensors = new[] { conv.Weight, conv.Bias }.Concat(bn is null ? [] : [bn.Weight, bn.Bias, bn.RunningMean]).OfType<StateTensor>();
        foreach (StateTensor t in tensors)
            for (int i = 0; i < t.Data.Length; i++) t.Data[i] = (float)(random.NextDouble() - 0.5);
        if (bn is not null) bn.RunningVar.Data.AsSpan().Fill(0.9f);
        using var backend = new ReferenceBackend();
        IPreparedConv prepared = ConvPreparation.Prepare(backend, conv, bn);
        using var trained = new TrainedConv(conv, bn, prepared, trainConv, trainBatchNorm: withNorm, backend);
        // Where the backend has the folded gradients: the host arrays themselves when it can.
        if (trainConv) Assert.Same(trained.Weight!.Data, ((HostBuffer)trained.WeightGradient.Buffer).Array);
        else Assert.Equal(0, trained.WeightGradient.Offset);
        float[] folded = [.. Enumerable.Range(0, 54 + 3).Select(i => (float)Math.Sin(i + 1))];
        backend.Upload(folded.AsSpan(0, 54), trained.WeightGradient);
        if (trained.BiasGradient is { } bg) backend.Upload(folded.AsSpan(54, 3), bg);
        trained.CollectGradients(backend, new float[trained.ScratchLength]);

        var dw = new float[trainConv ? 54 : 0];
        var db = new float[trainConv && convBias ? 3 : 0];
        if (bn is null)
        {
            folded.AsSpan(0, 54).CopyTo(dw);
            folded.AsSpan(54, db.Length).CopyTo(db);
        }
        else
        {
            var dgamma = new float[3];
            var dbeta = new float[3];
            BatchNormFolding.UnfoldGradients(folded.AsSpan(0, 54), folded.AsSpan(54, 3), conv.Weight.Data, convBias ? conv.Bias!.Data : default,
                bn.Weight.Data, bn.RunningMean.Data, bn.RunningVar.Data, dw, db, dgamma, dbeta);
            Assert.Equal(dgamma, trained.BatchNormWeight!.Data);
            Assert.Equal(dbeta, trained.BatchNormBias!.Data);
        }
        if (trainConv) Assert.Equal(dw, trained.Weight!.Data);
        if (trainConv && convBias) Assert.Equal(db, trained.Bias!.Data);
    }
}
