// Deterministic "seeded" state for the RetinaNet-GHM networks: every value is a pure function of
// (checkpoint key, row-major element index), bit-identical to tools/reference/seeded_weights.py,
// so forward-pass fixtures made by PyTorch can be checked without committing weight files.
//
//   h = splitmix64(fnv1a64(utf8(key)) + index)      (uint64, wrapping)
//   u = (h >> 40) * 2^-24                            (exact, in [0, 1))
//   v = (float)(low + (high - low) * u)              (double arithmetic in this order, one cast)
//
// Reference test: tests/GhmGen.Runtime.Tests/Layers/SeededWeightsTests.cs (values made by numpy).
using System.Text;

namespace GhmGen.Layers;

/// <summary>Fills state tensors and network inputs with seeded values shared with the PyTorch reference.</summary>
public static class SeededWeights
{
    /// <summary>The key whose hash seeds the network input (uniform in [-2, 2]).</summary>
    public const string InputKey = "input";

    /// <summary>Gain of backbone conv weights: U(-s, s) with s = sqrt(gain * 3 / fan_in).</summary>
    public const double BackboneConvGain = 1.0;

    /// <summary>Gain of FPN and head conv weights (He uniform).</summary>
    public const double NeckHeadConvGain = 2.0;

    /// <summary>Centre of <c>bbox_head.retina_cls.bias</c>: -log(99), the focal/GHM prior.</summary>
    public const double RetinaClsPriorBias = -4.59512;

    private const ulong FnvOffsetBasis = 0xCBF29CE484222325UL;
    private const ulong FnvPrime = 0x100000001B3UL;

    /// <summary>Fills every state tensor of <paramref name="network"/> with its seeded value.</summary>
    public static void Fill(INetwork network)
    {
        ArgumentNullException.ThrowIfNull(network);
        foreach (StateTensor tensor in network.State) Fill(tensor);
    }

    /// <summary>Fills one state tensor with its seeded value; the rule follows its <see cref="StateTensor.Role"/>.</summary>
    /// <exception cref="ArgumentException">A float parameter that no layer type owns, or a wrong element type.</exception>
    public static void Fill(StateTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        SeededRole role = RoleOf(tensor);
        switch (role)
        {
            case SeededRole.StepCounter:
                RequireType(tensor, StateElementType.Int64, role);
                tensor.Int64Data.AsSpan().Clear();
                return;
            case SeededRole.GhmcEdges:
                RequireType(tensor, StateElementType.Float32, role);
                FillGhmcEdges(tensor.Data);
                return;
            case SeededRole.GhmrEdges:
                RequireType(tensor, StateElementType.Float32, role);
                FillGhmrEdges(tensor.Data);
                return;
            case SeededRole.GhmAccumulatedSum or SeededRole.ZeroBuffer:
                tensor.Data.AsSpan().Clear();
                tensor.Int64Data.AsSpan().Clear();
                return;
        }

        RequireType(tensor, StateElementType.Float32, role);
        (double low, double high) = role switch
        {
            SeededRole.BatchNormRunningMean => (-0.1, 0.1),
            SeededRole.BatchNormRunningVariance => (0.5, 1.5),
            SeededRole.BatchNormWeight => (0.5, 1.0),
            SeededRole.BatchNormBias => (-0.1, 0.1),
            SeededRole.ConvWeight => ConvWeightRange(tensor.Key, tensor.Shape),
            SeededRole.RetinaClsBias => (RetinaClsPriorBias - 0.05, RetinaClsPriorBias + 0.05),
            SeededRole.ConvBias => (-0.05, 0.05),
            _ => throw new InvalidOperationException($"Seeded role {role} has no range."),
        };
        FillUniform(tensor.Key, tensor.Data, low, high);
    }

    /// <summary>Fills a network input (row-major NCHW) with the seeded U(-2, 2) values of key <c>input</c>.</summary>
    public static void FillInput(Span<float> destination) => FillUniform(InputKey, destination, -2.0, 2.0);

    /// <summary>
    /// Writes <c>(float)(low + (high - low) * u(key, i))</c> for i = 0..length-1, where u is the
    /// hash-derived uniform in [0, 1).
    /// </summary>
    public static void FillUniform(string key, Span<float> destination, double low, double high)
    {
        ArgumentNullException.ThrowIfNull(key);
        ulong seed = Fnv1a64(key);
        double span = high - low;
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = (float)(low + span * Unit(seed + (ulong)i));
        }
    }

    /// <summary>The hash-derived uniform in [0, 1) for element <paramref name="index"/> of <paramref name="key"/>.</summary>
    public static double Uniform01(string key, long index)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        return Unit(Fnv1a64(key) + (ulong)index);
    }

    /// <summary>64-bit FNV-1a of the key's UTF-8 bytes.</summary>
    public static ulong Fnv1a64(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        ulong h = FnvOffsetBasis;
        foreach (byte b in Encoding.UTF8.GetBytes(key))
        {
            h ^= b;
            h = unchecked(h * FnvPrime);
        }

        return h;
    }

    /// <summary>The splitmix64 finaliser (Steele, Lea, Flood 2014) of a counter.</summary>
    public static ulong SplitMix64(ulong x)
    {
        unchecked
        {
            ulong z = x + 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }

    /// <summary>
    /// Which seeded rule fills a state tensor. The layer type decides (<see cref="StateTensor.Role"/>);
    /// key names only pick values within a role: the GHM edges among buffers, the classification
    /// prior among convolution biases, and the backbone's gain among convolution weights.
    /// </summary>
    public static SeededRole RoleOf(StateTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        string key = tensor.Key;
        return tensor.Role switch
        {
            StateRole.ConvWeight => SeededRole.ConvWeight,
            StateRole.ConvBias => key.EndsWith("retina_cls.bias", StringComparison.Ordinal) ? SeededRole.RetinaClsBias : SeededRole.ConvBias,
            StateRole.BatchNormWeight => SeededRole.BatchNormWeight,
            StateRole.BatchNormBias => SeededRole.BatchNormBias,
            StateRole.BatchNormRunningMean => SeededRole.BatchNormRunningMean,
            StateRole.BatchNormRunningVar => SeededRole.BatchNormRunningVariance,
            StateRole.BatchNormBatchesTracked => SeededRole.StepCounter,
            StateRole.Buffer when key.EndsWith("loss_cls.edges", StringComparison.Ordinal) => SeededRole.GhmcEdges,
            StateRole.Buffer when key.EndsWith("loss_bbox.edges", StringComparison.Ordinal) => SeededRole.GhmrEdges,
            StateRole.Buffer when key.EndsWith(".acc_sum", StringComparison.Ordinal) => SeededRole.GhmAccumulatedSum,
            StateRole.Buffer when tensor.Kind == StateKind.Buffer => SeededRole.ZeroBuffer,
            _ => throw new ArgumentException(
                $"Seeded weights: '{key}' is a parameter that no convolution or batch norm owns; seed it yourself.", nameof(tensor)),
        };
    }

    private static (double Low, double High) ConvWeightRange(string key, IReadOnlyList<int> shape)
    {
        // shape [out, in/groups, kh, kw]
        int fanIn = shape[1] * shape[2] * shape[3];
        double gain = key.StartsWith("backbone.", StringComparison.Ordinal) ? BackboneConvGain : NeckHeadConvGain;
        double s = Math.Sqrt(gain * 3.0 / fanIn);
        return (-s, s);
    }

    // Same float32 arithmetic as mmdetection's GHMC: arange(bins + 1).float() / bins; edges[-1] += 1e-6.
    private static void FillGhmcEdges(float[] edges)
    {
        int bins = edges.Length - 1;
        for (int k = 0; k <= bins; k++) edges[k] = k / (float)bins;
        edges[bins] += 1e-6f;
    }

    // mmdetection's GHMR: arange(bins + 1).float() / bins; edges[-1] = 1e3.
    private static void FillGhmrEdges(float[] edges)
    {
        int bins = edges.Length - 1;
        for (int k = 0; k <= bins; k++) edges[k] = k / (float)bins;
        edges[bins] = 1000f;
    }

    private static double Unit(ulong counter) => (SplitMix64(counter) >> 40) * (1.0 / (1 << 24));

    private static void RequireType(StateTensor tensor, StateElementType expected, SeededRole role)
    {
        if (tensor.ElementType != expected)
        {
            throw new ArgumentException(
                $"Seeded weights: state key '{tensor.Key}' ({role}) must be {expected}, not {tensor.ElementType}.",
                nameof(tensor));
        }
    }
}

/// <summary>The rule <see cref="SeededWeights"/> applies to a state key.</summary>
public enum SeededRole
{
    /// <summary>BN <c>num_batches_tracked</c>: int64 zero.</summary>
    StepCounter,

    /// <summary><c>bbox_head.loss_cls.edges</c>: k/30, last + 1e-6.</summary>
    GhmcEdges,

    /// <summary><c>bbox_head.loss_bbox.edges</c>: k/10, last = 1000.</summary>
    GhmrEdges,

    /// <summary>GHM <c>acc_sum</c>: zero.</summary>
    GhmAccumulatedSum,

    /// <summary>BN running mean: U(-0.1, 0.1).</summary>
    BatchNormRunningMean,

    /// <summary>BN running variance: U(0.5, 1.5).</summary>
    BatchNormRunningVariance,

    /// <summary>BN scale: U(0.5, 1.0).</summary>
    BatchNormWeight,

    /// <summary>BN shift: U(-0.1, 0.1).</summary>
    BatchNormBias,

    /// <summary>4-d conv weight: U(-s, s), s = sqrt(gain * 3 / fan_in).</summary>
    ConvWeight,

    /// <summary><c>bbox_head.retina_cls.bias</c>: -4.59512 +/- 0.05.</summary>
    RetinaClsBias,

    /// <summary>Any other conv bias: U(-0.05, 0.05).</summary>
    ConvBias,

    /// <summary>Any other declared buffer: zero.</summary>
    ZeroBuffer,
}
