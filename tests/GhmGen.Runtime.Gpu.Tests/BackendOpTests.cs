using GhmGen.Backends;

namespace GhmGen.Runtime.Gpu.Tests;

/// <summary>Every IBackend op of the ILGPU backend against ReferenceBackend, on small shapes.</summary>
[Collection(CpuAcceleratorCollection.Name)]
public sealed class BackendOpTests(CpuAcceleratorFixture fixture)
{
    private readonly IBackend _gpu = fixture.Gpu;
    private readonly IBackend _ref = fixture.Reference;

    [Theory]
    // in, out, kernel, stride, padding, groups, batch, H, W, bias, residual, relu
    [InlineData(3, 5, 3, 1, 1, 1, 1, 5, 7, true, false, false)]
    [InlineData(4, 6, 3, 2, 1, 2, 2, 5, 7, true, false, true)]
    [InlineData(8, 8, 1, 1, 0, 1, 1, 5, 7, false, true, true)]
    [InlineData(8, 4, 3, 2, 1, 4, 1, 7, 5, false, false, false)]
    [InlineData(2, 40, 7, 2, 3, 1, 1, 9, 11, true, true, false)]
    [InlineData(36, 34, 3, 1, 1, 2, 1, 4, 9, true, true, true)]
    public void Conv2dMatchesReference(int cin, int cout, int k, int stride, int pad, int groups,
        int batch, int h, int w, bool bias, bool residual, bool relu)
    {
        var random = new Random(cin * 1000 + cout * 10 + k);
        var spec = new ConvSpec(cin, cout, k, stride, pad, groups);
        float[] weight = TestTensors.Random(random, spec.WeightCount);
        float[] biasValues = bias ? TestTensors.Random(random, cout) : [];
        float[] input = TestTensors.Random(random, (long)batch * cin * h * w);
        int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
        float[] residualValues = TestTensors.Random(random, (long)batch * cout * oh * ow);

        float[] Run(IBackend b)
        {
            using IPreparedConv conv = b.PrepareConv(spec, weight, biasValues);
            TensorView x = TestTensors.Put(b, batch, cin, h, w, input);
            TensorView y = new(b.Allocate((long)batch * cout * oh * ow), 0, batch, cout, oh, ow);
            TensorView? r = residual ? TestTensors.Put(b, batch, cout, oh, ow, residualValues) : null;
            b.Conv2d(conv, x, y, r, relu);
            return TestTensors.Get(b, y);
        }

        TestTensors.Close(Run(_ref), Run(_gpu));
    }

    [Fact]
    public void Conv2dReadsAndWritesAtTensorOffsets()
    {
        var random = new Random(7);
        var spec = new ConvSpec(2, 3, 3, 1, 1, 1);
        float[] weight = TestTensors.Random(random, spec.WeightCount);
        float[] input = TestTensors.Random(random, 2 * 5 * 7);

        float[] Run(IBackend b)
        {
            using IPreparedConv conv = b.PrepareConv(spec, weight, []);
            DeviceBuffer arena = b.Allocate(1000);
            var x = new TensorView(arena, 13, 1, 2, 5, 7);
            var y = new TensorView(arena, 500, 1, 3, 5, 7);
            b.Upload(input, x);
            b.Conv2d(conv, x, y, null, false);
            return TestTensors.Get(b, y);
        }

        TestTensors.Close(Run(_ref), Run(_gpu));
    }

    [Theory]
    [InlineData(3, 2, 1, 5, 7)]
    [InlineData(2, 2, 0, 6, 6)]
    [InlineData(3, 1, 1, 4, 5)]
    public void MaxPoolMatchesReference(int kernel, int stride, int padding, int h, int w)
    {
        float[] input = TestTensors.Random(new Random(kernel * 10 + stride), 2 * 3 * h * w);
        int oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;

        float[] Run(IBackend b)
        {
            TensorView x = TestTensors.Put(b, 2, 3, h, w, input);
            TensorView y = new(b.Allocate(2 * 3 * oh * ow), 0, 2, 3, oh, ow);
            b.MaxPool2d(x, y, kernel, stride, padding);
            return TestTensors.Get(b, y);
        }

        // Max-pool selects values: exact.
        TestTensors.Close(Run(_ref), Run(_gpu), 0f, 0f);
    }

    [Theory]
    [InlineData(3, 4, 5, 7)]   // odd sizes: floor(dst * in / out) is not a plain halving
    [InlineData(2, 3, 4, 6)]
    [InlineData(4, 4, 4, 4)]
    [InlineData(1, 2, 3, 82)] // PyTorch's float scale maps x = 41 to 0, not 41 * 2 / 82 = 1
    public void UpsampleNearestAddMatchesReference(int uh, int uw, int lh, int lw)
    {
        var random = new Random(uh * 100 + lw);
        float[] upper = TestTensors.Random(random, 2 * 3 * uh * uw);
        float[] lower = TestTensors.Random(random, 2 * 3 * lh * lw);

        float[] Run(IBackend b)
        {
            TensorView u = TestTensors.Put(b, 2, 3, uh, uw, upper);
            TensorView l = TestTensors.Put(b, 2, 3, lh, lw, lower);
            b.UpsampleNearestAdd(u, l);
            return TestTensors.Get(b, l);
        }

        // One float add per element, same operands: exact.
        TestTensors.Close(Run(_ref), Run(_gpu), 0f, 0f);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AddMatchesReference(bool relu)
    {
        var random = new Random(relu ? 1 : 2);
        float[] a = TestTensors.Random(random, 2 * 3 * 5 * 7), b = TestTensors.Random(random, 2 * 3 * 5 * 7);

        float[] Run(IBackend be)
        {
            TensorView ta = TestTensors.Put(be, 2, 3, 5, 7, a), tb = TestTensors.Put(be, 2, 3, 5, 7, b);
            be.Add(ta, tb, ta, relu);  // y aliases a
            return TestTensors.Get(be, ta);
        }

        TestTensors.Close(Run(_ref), Run(_gpu), 0f, 0f);
    }

    [Fact]
    public void ReluAndSigmoidMatchReference()
    {
        float[] x = TestTensors.Random(new Random(3), 3 * 5 * 7, 8f);

        (float[] Relu, float[] Sigmoid) Run(IBackend b)
        {
            TensorView t = TestTensors.Put(b, 1, 3, 5, 7, x);
            TensorView r = new(b.Allocate(t.ElementCount), 0, 1, 3, 5, 7);
            b.Relu(t, r);
            b.Sigmoid(t, t);  // in place
            return (TestTensors.Get(b, r), TestTensors.Get(b, t));
        }

        var (refRelu, refSigmoid) = Run(_ref);
        var (gpuRelu, gpuSigmoid) = Run(_gpu);
        TestTensors.Close(refRelu, gpuRelu, 0f, 0f);
        // XMath.Exp and MathF.Exp may differ in the last bits.
        TestTensors.Close(refSigmoid, gpuSigmoid, 1e-6f, 1e-7f);
    }

    [Fact]
    public void CopyMatchesReference()
    {
        float[] x = TestTensors.Random(new Random(4), 2 * 3 * 5 * 7, 8f);

        float[] Run(IBackend b)
        {
            TensorView t = TestTensors.Put(b, 2, 3, 5, 7, x);
            TensorView c = new(b.Allocate(t.ElementCount + 5), 5, 2, 3, 5, 7);
            b.Copy(t, c);
            return TestTensors.Get(b, c);
        }

        Assert.Equal(x, Run(_ref));
        Assert.Equal(x, Run(_gpu));
    }

    [Fact]
    public void RejectsTensorsFromAnotherBackend()
    {
        TensorView host = new(_ref.Allocate(4), 0, 1, 1, 2, 2);
        TensorView device = new(_gpu.Allocate(4), 0, 1, 1, 2, 2);
        var e = Assert.Throws<ArgumentException>(() => _gpu.Add(host, device, device, false));
        Assert.Contains("ILGPU", e.Message);
    }
}
