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
/// gradient, as in torch. Not thread-safe: use an instance from one thread at a time;
/// <see cref="Step"/> itself runs on up to <see cref="TrainingOptimizer.MaxDegreeOfParallelism"/>
/// threads, and its results do not depend on that number.
/// </summary>
public sealed class SgdOptimizer : TrainingOptimizer
{
    /// <summary>mmdetection's SGD momentum (docs/TRAINING.md).</summary>
    public const double MmdetectionMomentum = 0.9;

    /// <summary>mmdetection's weight decay, applied to every trained parameter (docs/TRAINING.md).</summary>
    public const double MmdetectionWeightDecay = 1e-4;

    private readonly float[]?[] _buffers;

    /// <summary>Creates the optimiser; <see cref="TrainingOptimizer.InitialLearningRate"/> starts equal to <paramref name="learningRate"/>.</summary>
    /// <param name="parameters">
    /// The optimiser's parameters in order (this order is the index order of its state dict). To
    /// index as mmdetection does, pass every parameter of the network, frozen ones included, in
    /// state-dict order.
    /// </param>
    /// <param name="learningRate">The param group's <c>lr</c>.</param>
    /// <param name="momentum">Momentum; 0 keeps no buffers.</param>
    /// <param name="weightDecay">L2 weight decay added to every gradient.</param>
    public SgdOptimizer(IEnumerable<StateTensor> parameters, double learningRate, double momentum = MmdetectionMomentum, double weightDecay = MmdetectionWeightDecay)
        : base(parameters, learningRate, weightDecay)
    {
        if (!double.IsFinite(momentum) || momentum < 0) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "momentum must be finite and >= 0");
        _buffers = new float[]?[Parameters.Count];
        Momentum = momentum;
    }

    /// <inheritdoc/>
    public override TrainingOptimizerKind Kind => TrainingOptimizerKind.Sgd;

    /// <summary>The float32 that torch's <c>param.add_(buf, alpha=-lr)</c> multiplies by: <c>(float)(-lr)</c>.</summary>
    public float Float32StepScale => (float)-LearningRate;

    /// <summary>Momentum factor.</summary>
    public double Momentum { get; }

    /// <summary>Torch's <c>dampening</c>; always 0 here.</summary>
    public double Dampening => 0;

    /// <summary>Torch's <c>nesterov</c>; always false here.</summary>
    public bool Nesterov => false;

    /// <summary>The momentum buffer of parameter <paramref name="index"/>, or null before its first gradient.</summary>
    public float[]? MomentumBuffer(int index) => _buffers[index];

    /// <summary>
    /// Sets (or with null clears) a momentum buffer, e.g. from a resumed checkpoint; the array is
    /// kept, not copied, and must have the parameter's element count.
    /// </summary>
    public void SetMomentumBuffer(int index, float[]? buffer)
    {
        CheckIndex(index);
        if (buffer != null) CheckStateArray(index, buffer, "momentum buffer", nameof(buffer));
        if (buffer != null && Momentum == 0) throw new InvalidOperationException("an optimiser without momentum keeps no buffers");
        _buffers[index] = buffer;
    }

    /// <summary>
    /// One SGD step: updates every parameter that has a gradient in <paramref name="gradients"/>
    /// (parameters not listed, or listed with a null gradient, are untouched). Gradients are read,
    /// not changed.
    /// </summary>
    /// <param name="gradients">Parameters of this optimiser with their gradients; each at most once.</param>
    public override void Step(IReadOnlyList<ParameterWithGradient> gradients)
    {
        List<(int Index, float[] Gradient)> withGradients = WithGradients(gradients);
        var work = new List<(int Index, float[] Gradient, bool First)>(withGradients.Count);
        foreach ((int index, float[] gradient) in withGradients) work.Add((index, gradient, _buffers[index] == null));

        bool useMomentum = Momentum != 0;
        if (useMomentum)
        {
            foreach ((int index, _, bool first) in work)
            {
                if (first) _buffers[index] = new float[Parameters[index].ElementCount];
            }
        }

        var scalars = new StepScalars((float)WeightDecay, (float)Momentum, Float32StepScale, WeightDecay != 0);
        ForEachChunk([.. work.Select(w => w.Gradient.Length)], (w, start, length) =>
        {
            (int index, float[] gradient, bool first) = work[w];
            Span<float> p = Parameters[index].Data.AsSpan(start, length);
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
