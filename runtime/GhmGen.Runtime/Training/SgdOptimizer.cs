// torch 1.13's SGD step (torch/optim/sgd.py _single_tensor_sgd) with dampening 0, nesterov and
// maximize off, in float32, bit for bit (reference test: SgdOptimizerTests against
// Fixtures/Training/sgd_reference.json, made by tools/reference/train_optim.py from torch):
//
//   d   = g.add(p, alpha=wd)          d = fma(p, (float)wd, g)        (skipped when wd == 0)
//   buf = clone(d)                    first step with a gradient
//   buf = buf.mul_(m).add_(d)         buf = (buf * (float)m) + d      two roundings
//   p   = p.add_(buf, alpha=-lr)      p = fma(buf, (float)(-lr), p)
//
// torch's add with alpha is `self + alpha * other`, which its vectorised CPU kernels evaluate as
// one fused multiply-add (vec::fmadd; the scalar tails are GCC-contracted too). Measured on
// Debian's torch 1.13.1 CPU (AVX2 and ATEN_CPU_CAPABILITY=avx512): fused on every element, at 1, 2
// and 4 threads. ATEN_CPU_CAPABILITY=default rounds the product separately and differs in ~0.03%
// of elements. CUDA torch is expected to fuse as well (nvcc contracts by default); not measured.
// Every element is independent, so the result does not depend on SIMD width or thread count.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using GhmGen.Layers;

namespace GhmGen.Training;

/// <summary>
/// torch 1.13's <c>SGD(params, lr, momentum, weight_decay)</c> (dampening 0, no Nesterov) over a
/// fixed, ordered parameter list, as mmcv builds it from <c>model.parameters()</c>. A parameter
/// that gets no gradient in a step is not touched, and has no momentum buffer until its first
/// gradient, as in torch.
/// </summary>
public sealed class SgdOptimizer
{
    /// <summary>mmdetection's SGD momentum (docs/TRAINING.md).</summary>
    public const double MmdetectionMomentum = 0.9;

    /// <summary>mmdetection's weight decay, applied to every trained parameter (docs/TRAINING.md).</summary>
    public const double MmdetectionWeightDecay = 1e-4;

    /// <summary>Elements per parallel work item.</summary>
    private const int Chunk = 1 << 16;

    private readonly StateTensor[] _parameters;
    private readonly float[]?[] _buffers;
    private readonly Dictionary<StateTensor, int> _index = new(ReferenceEqualityComparer.Instance);

    /// <summary>Creates the optimiser; <see cref="InitialLearningRate"/> starts equal to <paramref name="learningRate"/>.</summary>
    /// <param name="parameters">
    /// The optimiser's parameters in order (this order is the index order of its state dict). To
    /// index as mmdetection does, pass every parameter of the network, frozen ones included, in
    /// state-dict order.
    /// </param>
    /// <param name="learningRate">The param group's <c>lr</c>.</param>
    /// <param name="momentum">Momentum; 0 keeps no buffers.</param>
    /// <param name="weightDecay">L2 weight decay added to every gradient.</param>
    public SgdOptimizer(IEnumerable<StateTensor> parameters, double learningRate, double momentum = MmdetectionMomentum, double weightDecay = MmdetectionWeightDecay)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!double.IsFinite(learningRate) || learningRate < 0) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "learning rate must be finite and >= 0");
        if (!double.IsFinite(momentum) || momentum < 0) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "momentum must be finite and >= 0");
        if (!double.IsFinite(weightDecay) || weightDecay < 0) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "weight decay must be finite and >= 0");
        _parameters = [.. parameters];
        var keys = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < _parameters.Length; i++)
        {
            StateTensor p = _parameters[i] ?? throw new ArgumentException("a parameter is null", nameof(parameters));
            if (p.Kind != StateKind.Parameter || p.ElementType != StateElementType.Float32)
            {
                throw new ArgumentException($"'{p.Key}' is not a float32 parameter; only parameters are optimised", nameof(parameters));
            }
            if (!keys.Add(p.Key)) throw new ArgumentException($"parameter '{p.Key}' appears twice", nameof(parameters));
            _index.Add(p, i);
        }
        _buffers = new float[]?[_parameters.Length];
        LearningRate = learningRate;
        InitialLearningRate = learningRate;
        Momentum = momentum;
        WeightDecay = weightDecay;
    }

    /// <summary>The parameters in index order.</summary>
    public IReadOnlyList<StateTensor> Parameters => _parameters;

    /// <summary>
    /// The param group's <c>lr</c> (a Python float); the step multiplies by
    /// <see cref="Float32StepScale"/>. The schedule sets it before each iteration.
    /// </summary>
    public double LearningRate
    {
        get;
        set => field = double.IsFinite(value) && value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "learning rate must be finite and >= 0");
    }

    /// <summary>mmcv's <c>initial_lr</c> (the schedule's base lr), saved in the param group so a resumed run finds it.</summary>
    public double InitialLearningRate
    {
        get;
        set => field = double.IsFinite(value) && value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "learning rate must be finite and >= 0");
    }

    /// <summary>The float32 that torch's <c>param.add_(buf, alpha=-lr)</c> multiplies by: <c>(float)(-lr)</c>.</summary>
    public float Float32StepScale => (float)-LearningRate;

    /// <summary>Momentum factor.</summary>
    public double Momentum { get; }

    /// <summary>Weight decay factor.</summary>
    public double WeightDecay { get; }

    /// <summary>Torch's <c>dampening</c>; always 0 here.</summary>
    public double Dampening => 0;

    /// <summary>Torch's <c>nesterov</c>; always false here.</summary>
    public bool Nesterov => false;

    /// <summary>Steps taken (calls of <see cref="Step"/>); not saved by torch, kept for callers.</summary>
    public long StepCount { get; private set; }

    /// <summary>Maximum threads per step; -1 uses all cores. Results do not depend on it.</summary>
    public int MaxDegreeOfParallelism { get; set; } = -1;

    /// <summary>The index of a parameter (by reference), or -1 when it is not one of <see cref="Parameters"/>.</summary>
    public int IndexOf(StateTensor parameter) => _index.TryGetValue(parameter, out int i) ? i : -1;

    /// <summary>The momentum buffer of parameter <paramref name="index"/>, or null before its first gradient.</summary>
    public float[]? MomentumBuffer(int index) => _buffers[index];

    /// <summary>
    /// Sets (or with null clears) a momentum buffer, e.g. from a resumed checkpoint; the array is
    /// kept, not copied, and must have the parameter's element count.
    /// </summary>
    public void SetMomentumBuffer(int index, float[]? buffer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _parameters.Length);
        if (buffer != null && buffer.LongLength != _parameters[index].ElementCount)
        {
            throw new ArgumentException($"momentum buffer for '{_parameters[index].Key}' has {buffer.LongLength} values; the parameter has {_parameters[index].ElementCount}", nameof(buffer));
        }
        if (buffer != null && Momentum == 0) throw new InvalidOperationException("an optimiser without momentum keeps no buffers");
        _buffers[index] = buffer;
    }

    /// <summary>
    /// One SGD step: updates every parameter that has a gradient in <paramref name="gradients"/>
    /// (parameters not listed, or listed with a null gradient, are untouched). Gradients are read,
    /// not changed.
    /// </summary>
    /// <param name="gradients">Parameters of this optimiser with their gradients; each at most once.</param>
    public void Step(IReadOnlyList<ParameterWithGradient> gradients)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        var work = new List<(int Index, float[] Gradient, bool First)>(gradients.Count);
        var seen = new HashSet<int>();
        foreach (ParameterWithGradient pair in gradients)
        {
            ArgumentNullException.ThrowIfNull(pair.Parameter, nameof(gradients));
            int index = IndexOf(pair.Parameter);
            if (index < 0) throw new ArgumentException($"'{pair.Parameter.Key}' is not a parameter of this optimiser", nameof(gradients));
            if (!seen.Add(index)) throw new ArgumentException($"'{pair.Parameter.Key}' is listed twice", nameof(gradients));
            if (pair.Gradient == null) continue;
            if (pair.Gradient.LongLength != pair.Parameter.ElementCount)
            {
                throw new ArgumentException($"gradient of '{pair.Parameter.Key}' has {pair.Gradient.LongLength} values; the parameter has {pair.Parameter.ElementCount}", nameof(gradients));
            }
            work.Add((index, pair.Gradient, _buffers[index] == null));
        }

        bool useMomentum = Momentum != 0;
        if (useMomentum)
        {
            foreach ((int index, _, bool first) in work)
            {
                if (first) _buffers[index] = new float[_parameters[index].ElementCount];
            }
        }

        var chunks = new List<(int Work, int Start, int Length)>();
        for (int w = 0; w < work.Count; w++)
        {
            int n = work[w].Gradient.Length;
            for (int s = 0; s < n; s += Chunk) chunks.Add((w, s, Math.Min(Chunk, n - s)));
        }
        var scalars = new StepScalars((float)WeightDecay, (float)Momentum, Float32StepScale, WeightDecay != 0);
        var options = new ParallelOptions { MaxDegreeOfParallelism = MaxDegreeOfParallelism };
        Parallel.For(0, chunks.Count, options, c =>
        {
            (int w, int start, int length) = chunks[c];
            (int index, float[] gradient, bool first) = work[w];
            Span<float> p = _parameters[index].Data.AsSpan(start, length);
            ReadOnlySpan<float> g = gradient.AsSpan(start, length);
            if (!useMomentum) UpdateWithoutMomentum(p, g, scalars);
            else if (first) UpdateFirst(p, g, _buffers[index].AsSpan(start, length), scalars);
            else Update(p, g, _buffers[index].AsSpan(start, length), scalars);
        });
        StepCount++;
    }

    /// <summary>The float32 constants of a step, as torch converts its Python scalars.</summary>
    private readonly record struct StepScalars(float WeightDecay, float Momentum, float NegativeLr, bool Decay);

    /// <summary>First step of a parameter: buf = d = g + wd*p; p += -lr*buf.</summary>
    private static void UpdateFirst(Span<float> p, ReadOnlySpan<float> g, Span<float> buf, StepScalars k)
    {
        ref float pr = ref p[0];
        ref float gr = ref Unsafe.AsRef(in g[0]);
        ref float br = ref buf[0];
        int n = p.Length, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> wd = Vector256.Create(k.WeightDecay), lr = Vector256.Create(k.NegativeLr);
            for (; i + Vector256<float>.Count <= n; i += Vector256<float>.Count)
            {
                Vector256<float> pv = Vector256.LoadUnsafe(ref pr, (nuint)i);
                Vector256<float> d = Vector256.LoadUnsafe(ref gr, (nuint)i);
                if (k.Decay) d = Vector256.FusedMultiplyAdd(pv, wd, d);
                d.StoreUnsafe(ref br, (nuint)i);
                Vector256.FusedMultiplyAdd(d, lr, pv).StoreUnsafe(ref pr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float pv = Unsafe.Add(ref pr, i);
            float d = Unsafe.Add(ref gr, i);
            if (k.Decay) d = MathF.FusedMultiplyAdd(pv, k.WeightDecay, d);
            Unsafe.Add(ref br, i) = d;
            Unsafe.Add(ref pr, i) = MathF.FusedMultiplyAdd(d, k.NegativeLr, pv);
        }
    }

    /// <summary>Later steps: d = g + wd*p; buf = buf*m + d; p += -lr*buf.</summary>
    private static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> buf, StepScalars k)
    {
        ref float pr = ref p[0];
        ref float gr = ref Unsafe.AsRef(in g[0]);
        ref float br = ref buf[0];
        int n = p.Length, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> wd = Vector256.Create(k.WeightDecay), m = Vector256.Create(k.Momentum), lr = Vector256.Create(k.NegativeLr);
            for (; i + Vector256<float>.Count <= n; i += Vector256<float>.Count)
            {
                Vector256<float> pv = Vector256.LoadUnsafe(ref pr, (nuint)i);
                Vector256<float> d = Vector256.LoadUnsafe(ref gr, (nuint)i);
                if (k.Decay) d = Vector256.FusedMultiplyAdd(pv, wd, d);
                Vector256<float> b = Vector256.LoadUnsafe(ref br, (nuint)i) * m + d; // two roundings, as mul_ then add_
                b.StoreUnsafe(ref br, (nuint)i);
                Vector256.FusedMultiplyAdd(b, lr, pv).StoreUnsafe(ref pr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float pv = Unsafe.Add(ref pr, i);
            float d = Unsafe.Add(ref gr, i);
            if (k.Decay) d = MathF.FusedMultiplyAdd(pv, k.WeightDecay, d);
            float scaled = Unsafe.Add(ref br, i) * k.Momentum;
            float b = scaled + d;
            Unsafe.Add(ref br, i) = b;
            Unsafe.Add(ref pr, i) = MathF.FusedMultiplyAdd(b, k.NegativeLr, pv);
        }
    }

    /// <summary>Momentum 0: d = g + wd*p; p += -lr*d.</summary>
    private static void UpdateWithoutMomentum(Span<float> p, ReadOnlySpan<float> g, StepScalars k)
    {
        for (int i = 0; i < p.Length; i++)
        {
            float d = k.Decay ? MathF.FusedMultiplyAdd(p[i], k.WeightDecay, g[i]) : g[i];
            p[i] = MathF.FusedMultiplyAdd(d, k.NegativeLr, p[i]);
        }
    }
}
