// ReferenceBackend against values computed by hand (the plain loops every fast backend is
// compared with must themselves be right).
using GhmGen.Backends;

namespace GhmGen.Runtime.Tests.Backends;

public sealed class ReferenceBackendTests
{
    private readonly ReferenceBackend backend = new();

    [Fact]
    public void Conv2dWithPaddingStrideAndBias()
    {
        // 3x3 input 1..9, 3x3 kernel of ones, pad 1, stride 2: each output sums the 2x2 corner
        // block that the window covers inside the image.
        var spec = new ConvSpec(1, 1, Kernel: 3, Stride: 2, Padding: 1, Groups: 1);
        float[] y = Conv(spec, [1, 2, 3, 4, 5, 6, 7, 8, 9], 1, 3, 3, Enumerable.Repeat(1f, 9).ToArray(), [0.5f], null, relu: false, 2, 2);
        Assert.Equal([1 + 2 + 4 + 5 + 0.5f, 2 + 3 + 5 + 6 + 0.5f, 4 + 5 + 7 + 8 + 0.5f, 5 + 6 + 8 + 9 + 0.5f], y);
    }

    [Fact]
    public void Conv2dKernelTapsAreNotFlipped()
    {
        // Cross-correlation (PyTorch): weight[ky, kx] multiplies x[oy + ky, ox + kx].
        var spec = new ConvSpec(1, 1, Kernel: 2, Stride: 1, Padding: 0, Groups: 1);
        float[] y = Conv(spec, [1, 2, 3, 4, 5, 6], 1, 2, 3, [1, 10, 100, 1000], [], null, relu: false, 1, 2);
        Assert.Equal([1 * 1 + 2 * 10 + 4 * 100 + 5 * 1000, 2 * 1 + 3 * 10 + 5 * 100 + 6 * 1000], y);
    }

    [Fact]
    public void Conv2dGroupsResidualAndRelu()
    {
        // 4 channels in 2 groups of 2; 1x1 kernel; out channel o sees only its group's inputs.
        // x channels (one pixel): 1, 2, 3, 4. Group 0 outputs: [1*1 + 2*1, 1*2 - 2*3] = [3, -4];
        // group 1 outputs: [3*(-1) + 4*0, 3*1 + 4*1] = [-3, 7]. Residual [1, 1, 1, -10], then ReLU.
        var spec = new ConvSpec(4, 4, Kernel: 1, Stride: 1, Padding: 0, Groups: 2);
        float[] w = [1, 1, 2, -3, -1, 0, 1, 1];
        float[] y = Conv(spec, [1, 2, 3, 4], 4, 1, 1, w, [], [1, 1, 1, -10], relu: true, 1, 1);
        Assert.Equal([4, 0, 0, 0], y);
        float[] noRelu = Conv(spec, [1, 2, 3, 4], 4, 1, 1, w, [], [1, 1, 1, -10], relu: false, 1, 1);
        Assert.Equal([4, -3, -2, -3], noRelu);
    }

    [Fact]
    public void MaxPoolPaddingIsMinusInfinity()
    {
        // All inputs negative: zero padding would win; PyTorch pads with -infinity.
        // 3x3 window, stride 2, pad 1 on a 3x3 image -> 2x2 output.
        float[] x = [-1, -2, -3, -4, -5, -6, -7, -8, -9];
        TensorView xv = Tensor(x, 1, 1, 3, 3), yv = Tensor(new float[4], 1, 1, 2, 2);
        backend.MaxPool2d(xv, yv, 3, 2, 1);
        Assert.Equal([-1f, -2f, -4f, -5f], Read(yv));
    }

    [Fact]
    public void UpsampleNearestAddMapsIndicesLikePyTorch()
    {
        // 3x5 -> 7x10: source row floor(y * 3 / 7) = 0,0,0,1,1,2,2; source column floor(x * 5 / 10) = x / 2.
        int[] rows = [0, 0, 0, 1, 1, 2, 2];
        float[] upper = Enumerable.Range(0, 15).Select(i => (float)i).ToArray();
        float[] lower = Enumerable.Repeat(1000f, 70).ToArray();
        TensorView uv = Tensor(upper, 1, 1, 3, 5), lv = Tensor(lower, 1, 1, 7, 10);
        backend.UpsampleNearestAdd(uv, lv);
        float[] got = Read(lv);
        for (int y = 0; y < 7; y++)
        for (int x = 0; x < 10; x++)
            Assert.Equal(1000f + rows[y] * 5 + x / 2, got[y * 10 + x]);
    }

    [Fact]
    public void ElementwiseOps()
    {
        TensorView a = Tensor([1, -2, 3], 1, 3, 1, 1), b = Tensor([1, 1, -5], 1, 3, 1, 1), y = Tensor(new float[3], 1, 3, 1, 1);
        backend.Add(a, b, y, relu: false);
        Assert.Equal([2f, -1f, -2f], Read(y));
        backend.Add(a, b, y, relu: true);
        Assert.Equal([2f, 0f, 0f], Read(y));
        backend.Relu(a, y);
        Assert.Equal([1f, 0f, 3f], Read(y));
        TensorView s = Tensor([0, 2, -2], 1, 3, 1, 1);
        backend.Sigmoid(s, y);
        float[] sig = Read(y);
        Assert.Equal(0.5f, sig[0]);
        Assert.Equal(0.880797f, sig[1], 5e-6f);
        Assert.Equal(0.119203f, sig[2], 5e-6f);
    }

    private float[] Conv(ConvSpec spec, float[] x, int c, int h, int w, float[] weight, float[] bias, float[]? residual, bool relu, int oh, int ow)
    {
        using IPreparedConv conv = backend.PrepareConv(spec, weight, bias);
        TensorView y = Tensor(new float[spec.OutChannels * oh * ow], 1, spec.OutChannels, oh, ow);
        TensorView? r = residual is null ? null : Tensor(residual, 1, spec.OutChannels, oh, ow);
        backend.Conv2d(conv, Tensor(x, 1, c, h, w), y, r, relu);
        return Read(y);
    }

    private TensorView Tensor(float[] values, int n, int c, int h, int w)
    {
        var t = new TensorView(backend.Allocate(values.Length), 0, n, c, h, w);
        backend.Upload(values, t);
        return t;
    }

    private float[] Read(TensorView t)
    {
        var values = new float[t.ElementCount];
        backend.Download(t, values);
        return values;
    }
}
