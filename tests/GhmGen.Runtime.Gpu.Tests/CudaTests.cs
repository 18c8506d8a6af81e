using GhmGen.Backends;
using GhmGen.Backends.Gpu;

namespace GhmGen.Runtime.Gpu.Tests;

/// <summary>A fact that runs only where ILGPU finds a CUDA device (skipped, and reported so, elsewhere).</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when there is no CUDA device.</summary>
    public CudaFactAttribute()
    {
        if (!IlgpuBackend.IsCudaAvailable) Skip = "no CUDA device on this machine";
    }
}

/// <summary>Device selection, and the same op checks on a real CUDA device where there is one.</summary>
public sealed class CudaTests
{
    [Fact]
    public void CudaAvailabilityAndCreationAgree()
    {
        bool available = IlgpuBackend.IsCudaAvailable;
        bool created = IlgpuBackend.TryCreateCuda(out IlgpuBackend? backend);
        using (backend)
        {
            Assert.Equal(available, created);
            Assert.Equal(created, backend is not null);
            if (backend is not null) Assert.Equal("cuda", backend.Name);
        }
        if (!available)
        {
            var e = Assert.Throws<InvalidOperationException>(() => IlgpuBackend.Create(IlgpuDevice.Cuda));
            Assert.Contains("no CUDA device", e.Message);
        }
    }

    [CudaFact]
    public void ConvolutionsAndElementwiseOpsAgreeWithReferenceOnCuda()
    {
        using IlgpuBackend cuda = IlgpuBackend.Create(IlgpuDevice.Cuda);
        var reference = new ReferenceBackend();
        var random = new Random(5);
        // Shapes of the real network's awkward cases, small: 7x7/2 stem, grouped 3x3/2, 1x1.
        ConvSpec[] specs = [new(3, 16, 7, 2, 3, 1), new(64, 64, 3, 2, 1, 32), new(64, 40, 1, 1, 0, 1)];
        foreach (ConvSpec spec in specs)
        {
            float[] weight = TestTensors.Random(random, spec.WeightCount, 0.2f);
            float[] bias = TestTensors.Random(random, spec.OutChannels);
            float[] input = TestTensors.Random(random, 2L * spec.InChannels * 37 * 45);
            int oh = spec.OutputSize(37), ow = spec.OutputSize(45);
            float[] residual = TestTensors.Random(random, 2L * spec.OutChannels * oh * ow);

            float[] Run(IBackend b)
            {
                using IPreparedConv conv = b.PrepareConv(spec, weight, bias);
                TensorView x = TestTensors.Put(b, 2, spec.InChannels, 37, 45, input);
                TensorView r = TestTensors.Put(b, 2, spec.OutChannels, oh, ow, residual);
                TensorView y = new(b.Allocate(r.ElementCount), 0, 2, spec.OutChannels, oh, ow);
                b.Conv2d(conv, x, y, r, relu: true);
                b.Sigmoid(y, y);
                return TestTensors.Get(b, y);
            }

            // The GPU contracts multiply-adds into FMAs and has its own exp: 1e-4.
            TestTensors.Close(Run(reference), Run(cuda), 1e-4f, 1e-4f);
        }
    }

    [CudaFact]
    public void BackwardOpsAgreeWithReferenceOnCuda()
    {
        using IlgpuBackend cuda = IlgpuBackend.Create(IlgpuDevice.Cuda);
        var reference = new ReferenceBackend();
        var random = new Random(6);
        ConvSpec[] specs = [new(3, 16, 7, 2, 3, 1), new(64, 64, 3, 2, 1, 32), new(64, 40, 1, 1, 0, 1)];
        foreach (ConvSpec spec in specs)
        {
            float[] weight = TestTensors.Random(random, spec.WeightCount, 0.2f);
            float[] input = TestTensors.Random(random, 2L * spec.InChannels * 37 * 45);
            int oh = spec.OutputSize(37), ow = spec.OutputSize(45);
            float[] gradient = TestTensors.Random(random, 2L * spec.OutChannels * oh * ow);
            float[] start = TestTensors.Random(random, spec.WeightCount + spec.OutChannels + input.Length);

            float[] Run(ITrainingBackend b)
            {
                using IPreparedConv conv = b.PrepareConv(spec, weight, []);
                TensorView x = TestTensors.Put(b, 2, spec.InChannels, 37, 45, input);
                TensorView dy = TestTensors.Put(b, 2, spec.OutChannels, oh, ow, gradient);
                TensorView dx = TestTensors.Put(b, 2, spec.InChannels, 37, 45, start[..input.Length]);
                TensorView dw = TestTensors.Put(b, 1, 1, 1, (int)spec.WeightCount, start[..(int)spec.WeightCount]);
                TensorView db = TestTensors.Put(b, 1, 1, 1, spec.OutChannels, start[..spec.OutChannels]);
                b.Conv2dBackwardData(conv, dy, dx, accumulate: true);
                b.Conv2dBackwardWeights(spec, x, dy, dw, db, accumulate: true);
                return [.. TestTensors.Get(b, dx), .. TestTensors.Get(b, dw), .. TestTensors.Get(b, db)];
            }

            // Float sums of up to 2 * 19 * 23 products (FMA-contracted) against double sums.
            TestTensors.Close(Run(reference), Run(cuda), 1e-4f, 1e-4f);
        }

        float[] pooled = TestTensors.Random(random, 2 * 8 * 37 * 45);
        float[] poolGradient = TestTensors.Random(random, 2 * 8 * 19 * 23);
        float[] upper = TestTensors.Random(random, 2 * 8 * 13 * 17);

        (float[] Pool, float[] Upsample) RunOthers(ITrainingBackend b)
        {
            TensorView x = TestTensors.Put(b, 2, 8, 37, 45, pooled);
            TensorView dy = TestTensors.Put(b, 2, 8, 19, 23, poolGradient);
            TensorView dx = new(b.Allocate(x.ElementCount), 0, 2, 8, 37, 45);
            b.MaxPool2dBackward(x, dy, dx, 3, 2, 1, accumulate: false);
            TensorView dUpper = TestTensors.Put(b, 2, 8, 13, 17, upper);
            b.UpsampleNearestBackward(dx, dUpper, accumulate: true);  // 13x17 <- 37x45
            return (TestTensors.Get(b, dx), TestTensors.Get(b, dUpper));
        }

        var (refPool, refUpsample) = RunOthers(reference);
        var (cudaPool, cudaUpsample) = RunOthers(cuda);
        TestTensors.Close(refPool, cudaPool, 1e-6f, 1e-6f);
        TestTensors.Close(refUpsample, cudaUpsample, 1e-5f, 1e-5f);
    }

    [CudaFact]
    public void BatchNormWithBatchStatisticsAgreesWithReferenceOnCuda()
    {
        using IlgpuBackend cuda = IlgpuBackend.Create(IlgpuDevice.Cuda);
        var reference = new ReferenceBackend();
        var random = new Random(7);
        const int n = 2, c = 40, h = 37, w = 45;
        float[] x = TestTensors.Random(random, n * c * h * w, 3f), weight = TestTensors.Random(random, c), bias = TestTensors.Random(random, c);
        float[] residual = TestTensors.Random(random, x.Length), dyValues = TestTensors.Random(random, x.Length), start = TestTensors.Random(random, 2 * c);

        float[] Run(ITrainingBackend b)
        {
            TensorView tx = TestTensors.Put(b, n, c, h, w, x), tw = TestTensors.Put(b, 1, c, 1, 1, weight), tb = TestTensors.Put(b, 1, c, 1, 1, bias);
            TensorView tr = TestTensors.Put(b, n, c, h, w, residual), y = TestTensors.Put(b, n, c, h, w, new float[x.Length]);
            TensorView mean = TestTensors.Put(b, 1, c, 1, 1, new float[c]), variance = TestTensors.Put(b, 1, c, 1, 1, new float[c]);
            b.BatchNormTraining(tx, tw, tb, tr, relu: true, y, mean, variance, 1e-5);
            TensorView dy = TestTensors.Put(b, n, c, h, w, dyValues), dx = TestTensors.Put(b, n, c, h, w, new float[x.Length]);
            TensorView dw = TestTensors.Put(b, 1, c, 1, 1, start[..c]), db = TestTensors.Put(b, 1, c, 1, 1, start[c..]);
            b.BatchNormTrainingBackward(tx, dy, tw, mean, variance, 1e-5, dx, dw, db, accumulate: true);
            return [.. TestTensors.Get(b, y), .. TestTensors.Get(b, mean), .. TestTensors.Get(b, variance), .. TestTensors.Get(b, dx), .. TestTensors.Get(b, dw), .. TestTensors.Get(b, db)];
        }

        // Double sums on both sides; float normalisation with FMA contraction on the GPU.
        TestTensors.Close(Run(reference), Run(cuda), 1e-4f, 1e-4f);
    }
}
