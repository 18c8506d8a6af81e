using GhmGen.Backends;

namespace GhmGen.Runtime.Gpu.Tests;

/// <summary>
/// Every ITrainingBackend op of the ILGPU backend (Kernels/BackwardKernels.cs) against
/// ReferenceBackend on the CPU accelerator, on tiny shapes. Every tensor sits a few elements into
/// a larger buffer, so the kernels' offsets are checked too.
/// </summary>
[Collection(CpuAcceleratorCollection.Name)]
public sealed class BackwardOpTests(CpuAcceleratorFixture fixture)
{
    private const int Batch = 2;

    private readonly ITrainingBackend _gpu = fixture.Gpu;
    private readonly ITrainingBackend _ref = fixture.Reference;

    // in, out, kernel, stride, padding, groups, H, W, accumulate, bias
    public static TheoryData<int, int, int, int, int, int, int, int, bool, bool> ConvCases { get; } = new()
    {
        { 3, 5, 3, 1, 1, 1, 5, 7, false, true },
        { 4, 6, 3, 2, 1, 2, 5, 7, true, true },
        { 8, 8, 1, 1, 0, 1, 5, 7, true, false },
        { 4, 8, 1, 2, 0, 1, 7, 5, false, true },     // the 1x1/2 shortcut: odd rows are never read
        { 8, 4, 3, 2, 1, 4, 7, 5, false, true },
        { 3, 6, 7, 2, 3, 1, 9, 11, true, true },     // the 7x7/2 stem
        { 6, 4, 3, 2, 0, 2, 6, 8, true, false },     // no padding: the last row and column are never read
        { 64, 64, 3, 2, 1, 32, 5, 6, true, false },  // ResNeXt's 32 groups, 2 channels each
        { 32, 32, 3, 1, 1, 32, 4, 5, false, true },  // one channel per group
    };

    [Theory]
    [MemberData(nameof(ConvCases))]
    public void ConvBackwardDataMatchesReference(int cin, int cout, int k, int stride, int pad, int groups, int h, int w, bool accumulate, bool bias)
    {
        var random = new Random(cin * 1000 + cout * 10 + k + stride);
        var spec = new ConvSpec(cin, cout, k, stride, pad, groups);
        int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
        float[] weight = TestTensors.Random(random, spec.WeightCount);
        float[] biasValues = bias ? TestTensors.Random(random, cout) : [];
        float[] dyValues = TestTensors.Random(random, (long)Batch * cout * oh * ow);
        float[] dxStart = TestTensors.Random(random, (long)Batch * cin * h * w);

        float[] Run(ITrainingBackend b)
        {
            using IPreparedConv conv = b.PrepareConv(spec, weight, biasValues);
            TensorView dy = PutAt(b, 3, Batch, cout, oh, ow, dyValues);
            TensorView dx = PutAt(b, 5, Batch, cin, h, w, dxStart);
            b.Conv2dBackwardData(conv, dy, dx, accumulate);
            return TestTensors.Get(b, dx);
        }

        // Float sums (GPU) against double sums rounded once (reference), of at most
        // out/groups * k * k products of values in [-1, 1].
        TestTensors.Close(Run(_ref), Run(_gpu));
    }

    [Theory]
    [MemberData(nameof(ConvCases))]
    public void ConvBackwardWeightsMatchesReference(int cin, int cout, int k, int stride, int pad, int groups, int h, int w, bool accumulate, bool bias)
    {
        var random = new Random(cin * 1000 + cout * 10 + k + stride + 1);
        var spec = new ConvSpec(cin, cout, k, stride, pad, groups);
        int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
        float[] xValues = TestTensors.Random(random, (long)Batch * cin * h * w);
        float[] dyValues = TestTensors.Random(random, (long)Batch * cout * oh * ow);
        float[] dwStart = TestTensors.Random(random, spec.WeightCount);
        float[] dbStart = TestTensors.Random(random, cout);

        (float[] Weight, float[]? Bias) Run(ITrainingBackend b)
        {
            TensorView x = PutAt(b, 1, Batch, cin, h, w, xValues);
            TensorView dy = PutAt(b, 4, Batch, cout, oh, ow, dyValues);
            TensorView dw = PutAt(b, 2, cout, cin / groups, k, k, dwStart);
            TensorView? db = bias ? PutAt(b, 6, 1, cout, 1, 1, dbStart) : null;
            b.Conv2dBackwardWeights(spec, x, dy, dw, db, accumulate);
            return (TestTensors.Get(b, dw), db is { } d ? TestTensors.Get(b, d) : null);
        }

        var (refWeight, refBias) = Run(_ref);
        var (gpuWeight, gpuBias) = Run(_gpu);
        // Sums of N*OH*OW <= 70 products of values in [-1, 1], in float (GPU) and double (reference).
        TestTensors.Close(refWeight, gpuWeight);
        if (bias) TestTensors.Close(refBias!, gpuBias!);
        else Assert.Null(gpuBias);
    }

    [Fact]
    public void ConvBackwardIsDeterministic()
    {
        var random = new Random(11);
        var spec = new ConvSpec(8, 6, 3, 2, 1, 2);
        float[] weight = TestTensors.Random(random, spec.WeightCount);
        float[] xValues = TestTensors.Random(random, Batch * 8 * 9 * 7);
        float[] dyValues = TestTensors.Random(random, Batch * 6 * 5 * 4);

        float[] Run()
        {
            using IPreparedConv conv = _gpu.PrepareConv(spec, weight, []);
            TensorView x = TestTensors.Put(_gpu, Batch, 8, 9, 7, xValues);
            TensorView dy = TestTensors.Put(_gpu, Batch, 6, 5, 4, dyValues);
            TensorView dx = new(_gpu.Allocate(x.ElementCount), 0, Batch, 8, 9, 7);
            TensorView dw = new(_gpu.Allocate(spec.WeightCount), 0, 6, 4, 3, 3);
            TensorView db = new(_gpu.Allocate(6), 0, 1, 6, 1, 1);
            _gpu.Conv2dBackwardData(conv, dy, dx, accumulate: false);
            _gpu.Conv2dBackwardWeights(spec, x, dy, dw, db, accumulate: false);
            return [.. TestTensors.Get(_gpu, dx), .. TestTensors.Get(_gpu, dw), .. TestTensors.Get(_gpu, db)];
        }

        Assert.Equal(Run(), Run());  // bit for bit: no atomics, fixed reduction order
    }

    [Fact]
    public void ConvBackwardWeightsOfAnEmptyBatchIsZero()
    {
        var spec = new ConvSpec(2, 3, 3, 1, 1, 1);
        DeviceBuffer buffer = _gpu.Allocate(1);
        var x = new TensorView(buffer, 0, 0, 2, 4, 4);
        var dy = new TensorView(buffer, 0, 0, 3, 4, 4);
        TensorView dw = TestTensors.Put(_gpu, 3, 2, 3, 3, TestTensors.Random(new Random(1), spec.WeightCount));
        TensorView db = TestTensors.Put(_gpu, 1, 3, 1, 1, [1f, 2f, 3f]);
        _gpu.Conv2dBackwardWeights(spec, x, dy, dw, db, accumulate: true);
        Assert.Equal(new[] { 1f, 2f, 3f }, TestTensors.Get(_gpu, db));
        _gpu.Conv2dBackwardWeights(spec, x, dy, dw, db, accumulate: false);
        Assert.All(TestTensors.Get(_gpu, dw), v => Assert.Equal(0f, v));
        Assert.Equal(new[] { 0f, 0f, 0f }, TestTensors.Get(_gpu, db));
    }

    [Theory]
    // kernel, stride, padding, H, W, accumulate, ties
    [InlineData(3, 2, 1, 7, 9, false, false)]  // the stem's pool, odd sizes
    [InlineData(3, 2, 1, 6, 8, true, true)]
    [InlineData(2, 2, 0, 5, 7, false, true)]   // the last row and column are in no window
    [InlineData(3, 1, 1, 4, 5, true, false)]
    [InlineData(3, 1, 1, 5, 4, false, true)]   // windows overlap by two: up to nine winners per element
    public void MaxPoolBackwardMatchesReference(int kernel, int stride, int padding, int h, int w, bool accumulate, bool ties)
    {
        var random = new Random(kernel * 100 + stride * 10 + h);
        int oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;
        float[] input = ties
            ? [.. Enumerable.Range(0, Batch * 3 * h * w).Select(_ => (float)random.Next(-1, 2))]  // -1, 0 or 1: ties in most windows
            : TestTensors.Random(random, Batch * 3 * h * w);
        float[] dyValues = TestTensors.Random(random, Batch * 3 * oh * ow);
        float[] dxStart = TestTensors.Random(random, Batch * 3 * h * w);

        float[] expected = RunMaxPool(_ref, input, dyValues, dxStart, kernel, stride, padding, h, w, accumulate);
        float[] actual = RunMaxPool(_gpu, input, dyValues, dxStart, kernel, stride, padding, h, w, accumulate);
        // A wrong winner is off by a whole dy value; sums of up to nine differ only in rounding.
        TestTensors.Close(expected, actual, 1e-6f, 1e-6f);
    }

    [Fact]
    public void MaxPoolBackwardFollowsPyTorchOnNaNAndPlateaus()
    {
        const int h = 5, w = 6;
        float[] input = new float[Batch * 3 * h * w];  // all zero: the first valid element wins
        input[7] = float.NaN;                             // a NaN wins every window it is in ...
        input[14] = float.NaN;                            // ... the last NaN when there are two
        input[40] = float.PositiveInfinity;
        float[] dyValues = TestTensors.Random(new Random(9), Batch * 3 * 3 * 3);
        float[] dxStart = new float[input.Length];

        float[] expected = RunMaxPool(_ref, input, dyValues, dxStart, 3, 2, 1, h, w, accumulate: false);
        float[] actual = RunMaxPool(_gpu, input, dyValues, dxStart, 3, 2, 1, h, w, accumulate: false);
        Assert.NotEqual(0f, expected[14]);
        TestTensors.Close(expected, actual, 1e-6f, 1e-6f);
    }

    [Theory]
    // upper H, W -> lower H, W, accumulate
    [InlineData(5, 5, 13, 13, false)]   // 5 -> 13: two or three lower cells per upper cell
    [InlineData(3, 5, 7, 13, true)]
    [InlineData(1, 2, 3, 82, false)]    // float scale: x = 41 maps to column 0, so 42 + 40 cells
    [InlineData(2, 2, 82, 3, true)]     // the same ratio along the rows
    [InlineData(13, 17, 25, 34, false)] // P5 -> P4 of an odd input
    [InlineData(4, 4, 4, 4, true)]      // identity
    [InlineData(5, 4, 3, 2, false)]     // lower smaller than upper: some upper cells get nothing
    public void UpsampleNearestBackwardMatchesReference(int uh, int uw, int lh, int lw, bool accumulate)
    {
        var random = new Random(uh * 1000 + uw * 100 + lh + lw);
        float[] dLowerValues = TestTensors.Random(random, Batch * 3 * lh * lw);
        float[] dUpperStart = TestTensors.Random(random, Batch * 3 * uh * uw);

        float[] Run(ITrainingBackend b)
        {
            TensorView dLower = PutAt(b, 2, Batch, 3, lh, lw, dLowerValues);
            TensorView dUpper = PutAt(b, 7, Batch, 3, uh, uw, dUpperStart);
            b.UpsampleNearestBackward(dLower, dUpper, accumulate);
            return TestTensors.Get(b, dUpper);
        }

        // Sums of up to 42 values in [-1, 1]: float (GPU) against double (reference).
        TestTensors.Close(Run(_ref), Run(_gpu));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReluBackwardMatchesReference(bool inPlace)
    {
        var random = new Random(inPlace ? 3 : 4);
        float[] y = [.. TestTensors.Random(random, Batch * 3 * 5 * 7).Select(v => v < 0 ? 0f : v)];  // a ReLU output: many exact zeros
        y[1] = -0f;
        float[] dyValues = TestTensors.Random(random, y.Length);

        float[] Run(ITrainingBackend b)
        {
            TensorView ty = PutAt(b, 1, Batch, 3, 5, 7, y);
            TensorView dy = PutAt(b, 3, Batch, 3, 5, 7, dyValues);
            TensorView dx = inPlace ? dy : PutAt(b, 2, Batch, 3, 5, 7, TestTensors.Random(random, y.Length));
            b.ReluBackward(ty, dy, dx);
            return TestTensors.Get(b, dx);
        }

        Assert.Equal(Run(_ref), Run(_gpu));  // selects values: exact
    }

    [Fact]
    public void ZeroClearsOnlyItsView()
    {
        float[] values = [.. Enumerable.Range(1, 40).Select(i => (float)i)];
        TensorView all = TestTensors.Put(_gpu, 1, 1, 1, 40, values);
        _gpu.Zero(new TensorView(all.Buffer, 7, 2, 3, 2, 2));

        float[] after = TestTensors.Get(_gpu, all);
        for (int i = 0; i < 40; i++) Assert.Equal(i >= 7 && i < 31 ? 0f : values[i], after[i]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void UpdateConvReplacesTheWeightsInPlace(bool bias)
    {
        var random = new Random(bias ? 21 : 22);
        var spec = new ConvSpec(4, 6, 3, 2, 1, 2);
        float[] oldWeight = TestTensors.Random(random, spec.WeightCount), newWeight = TestTensors.Random(random, spec.WeightCount);
        float[] oldBias = bias ? TestTensors.Random(random, 6) : [], newBias = bias ? TestTensors.Random(random, 6) : [];
        float[] input = TestTensors.Random(random, Batch * 4 * 5 * 7);

        float[] Run(ITrainingBackend b, bool update)
        {
            using IPreparedConv conv = b.PrepareConv(spec, update ? oldWeight : newWeight, update ? oldBias : newBias);
            TensorView x = TestTensors.Put(b, Batch, 4, 5, 7, input);
            TensorView y = new(b.Allocate(Batch * 6 * 3 * 4), 0, Batch, 6, 3, 4);
            if (update)
            {
                b.Conv2d(conv, x, y, null, relu: false);  // queued with the old weights
                b.UpdateConv(conv, newWeight, newBias);
            }
            b.Conv2d(conv, x, y, null, relu: false);
            return TestTensors.Get(b, y);
        }

        float[] expected = Run(_ref, update: false);
        TestTensors.Close(expected, Run(_gpu, update: true));
        TestTensors.Close(expected, Run(_ref, update: true), 0f, 0f);
    }

    [Fact]
    public void UpdateConvRejectsWeightsOfAnotherShape()
    {
        var spec = new ConvSpec(2, 3, 1, 1, 0, 1);
        using IPreparedConv conv = _gpu.PrepareConv(spec, new float[6], new float[3]);
        Assert.Throws<ArgumentException>(() => _gpu.UpdateConv(conv, new float[5], new float[3]));
        Assert.Throws<ArgumentException>(() => _gpu.UpdateConv(conv, new float[6], []));
        using IPreparedConv foreign = _ref.PrepareConv(spec, new float[6], new float[3]);
        var e = Assert.Throws<ArgumentException>(() => _gpu.UpdateConv(foreign, new float[6], new float[3]));
        Assert.Contains("ILGPU", e.Message);
    }

    private static float[] RunMaxPool(ITrainingBackend b, float[] input, float[] dyValues, float[] dxStart,
        int kernel, int stride, int padding, int h, int w, bool accumulate)
    {
        int oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;
        TensorView x = PutAt(b, 3, Batch, 3, h, w, input);
        TensorView dy = PutAt(b, 1, Batch, 3, oh, ow, dyValues);
        TensorView dx = PutAt(b, 4, Batch, 3, h, w, dxStart);
        b.MaxPool2dBackward(x, dy, dx, kernel, stride, padding, accumulate);
        return TestTensors.Get(b, dx);
    }

    // N, C, H, W, residual and ReLU (forward), accumulate (backward): batch 1 and 2, channel counts
    // below and above a warp's lanes, planes with fewer values than lanes, 1x1 planes.
    public static TheoryData<int, int, int, int, bool, bool> BatchNormCases { get; } = new()
    {
        { 1, 3, 5, 7, false, false },
        { 2, 11, 4, 9, true, true },
        { 2, 13, 1, 1, false, true },
        { 2, 70, 3, 2, true, false },  // more channels than one group's warps
        { 1, 1, 17, 19, false, false },
    };

    [Theory]
    [MemberData(nameof(BatchNormCases))]
    public void BatchNormTrainingMatchesReference(int n, int c, int h, int w, bool residual, bool relu)
    {
        var random = new Random(n * 100 + c * 10 + h + w);
        float[] x = [.. TestTensors.Random(random, (long)n * c * h * w).Select((v, i) => v * (1 + i / (h * w) % c) + 0.5f * (i / (h * w) % c))];
        float[] weight = TestTensors.Random(random, c), bias = TestTensors.Random(random, c);
        float[] r = TestTensors.Random(random, x.Length), dyValues = TestTensors.Random(random, x.Length);
        float[] dwStart = TestTensors.Random(random, c), dbStart = TestTensors.Random(random, c);

        float[][] Run(ITrainingBackend b)
        {
            TensorView tx = PutAt(b, 3, n, c, h, w, x), tw = PutAt(b, 1, 1, c, 1, 1, weight), tb = PutAt(b, 2, 1, c, 1, 1, bias);
            TensorView? tr = residual ? PutAt(b, 5, n, c, h, w, r) : null;
            TensorView y = PutAt(b, 4, n, c, h, w, new float[x.Length]), mean = PutAt(b, 1, 1, c, 1, 1, new float[c]), variance = PutAt(b, 2, 1, c, 1, 1, new float[c]);
            b.BatchNormTraining(tx, tw, tb, tr, relu, y, mean, variance, 1e-5);
            TensorView dy = PutAt(b, 3, n, c, h, w, dyValues), dx = PutAt(b, 2, n, c, h, w, new float[x.Length]);
            TensorView dw = PutAt(b, 1, 1, c, 1, 1, dwStart), db = PutAt(b, 3, 1, c, 1, 1, dbStart);
            b.BatchNormTrainingBackward(tx, dy, tw, mean, variance, 1e-5, dx, dw, db, accumulate: residual);
            float[][] result = [TestTensors.Get(b, y), TestTensors.Get(b, mean), TestTensors.Get(b, variance), TestTensors.Get(b, dx), TestTensors.Get(b, dw), TestTensors.Get(b, db)];
            // Parameter gradients only: dx left alone.
            b.BatchNormTrainingBackward(tx, dy, tw, mean, variance, 1e-5, null, dw, db, accumulate: false);
            Assert.Equal(result[3], TestTensors.Get(b, dx));
            return result;
        }

        // Double sums on both sides; the GPU's float normalisation (x * a + b) and input gradient
        // round a few times: 1e-5 relative (and absolute, for values near 0).
        float[][] expected = Run(_ref), actual = Run(_gpu);
        for (int i = 0; i < expected.Length; i++) TestTensors.Close(expected[i], actual[i], 2e-5f, 2e-5f);
        // The same launch twice gives the same bits (no atomics; a fixed shuffle tree).
        float[][] again = Run(_gpu);
        for (int i = 0; i < actual.Length; i++) Assert.Equal(actual[i], again[i]);
    }

    // A tensor that starts `offset` elements into a buffer with room to spare after it.
    private static TensorView PutAt(IBackend backend, int offset, int n, int c, int h, int w, float[] values)
    {
        var t = new TensorView(backend.Allocate(offset + (long)n * c * h * w + 3), offset, n, c, h, w);
        backend.Upload(values, t);
        return t;
    }
}
