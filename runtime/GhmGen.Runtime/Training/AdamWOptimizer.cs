// torch 1.13's AdamW step (torch/optim/adamw.py _single_tensor_adamw, the CPU default: foreach,
// amsgrad, maximize and capturable off) in float32, bit for bit (reference test: AdamWOptimizerTests
// against Fixtures/Training/adamw_reference.json, made by tools/reference/train_optim.py from torch).
// Per parameter with a gradient, with torch's Python scalars (float64) rounded to float32 where a
// tensor op takes them:
//
//   step_t += 1                                 step = step + 1f (a float32 0-dim tensor in torch)
//   param.mul_(1 - lr*wd)                       p = p * (float)(1 - lr*wd)
//   exp_avg.mul_(b1).add_(g, alpha=1-b1)        m = fma(g, (float)(1-b1), m * (float)b1)
//   exp_avg_sq.mul_(b2)                         v = fma((float)(1-b2) * g, g, v * (float)b2)
//             .addcmul_(g, g, value=1-b2)
//   bc1 = 1 - b1**step; bc2 = 1 - b2**step      float64, Math.Pow as Python's float ** (C pow)
//   step_size = lr / bc1                        float64
//   denom = (exp_avg_sq.sqrt()                  d = sqrt(v) / (float)sqrt(bc2) + (float)eps
//            / math.sqrt(bc2)).add_(eps)            (a true division, then an add)
//   param.addcdiv_(exp_avg, denom,              p = p + ((float)(-step_size) * m) / d
//                  value=-step_size)                (three roundings: product, quotient, sum)
//
// Which products torch fuses, measured on Debian's torch 1.13 CPU build (AVX2 and
// ATEN_CPU_CAPABILITY=avx512, 1 and 2 threads, a million elements plus tails of 1, 7 and 15) by
// comparing each op with candidate float32 evaluations (counts of differing elements in ~1e6):
//   - add_ with alpha is `self + alpha * other` as one FMA (vec::fmadd, as SgdOptimizer documents);
//     unfused differs in 31% of elements.
//   - addcmul_ is written `self + value * t1 * t2`: the vector code multiplies value * t1 (rounded)
//     and GCC contracts the multiply by t2 with the add into an FMA (the scalar tails too). Unfused
//     differs in 21%, fma(value, t1*t2, self) in 27%.
//   - addcdiv_ is `self + value * t1 / t2`: product, quotient and sum each rounded (nothing to
//     contract across a division); other orders differ in 1.7-2.9%.
//   - the division by sqrt(bc2) is a true division by the float32 scalar (a multiply by its
//     reciprocal differs in 86%); sqrt, mul_ by a scalar and add_ of eps are single IEEE ops.
// ATEN_CPU_CAPABILITY=default (no SIMD kernels) fuses nothing, so there add_ and addcmul_ round
// every product and differ from this; CUDA torch is expected to fuse as AVX2 does (nvcc contracts
// by default) but has not been measured. b1**step is C's pow() in Python and Math.Pow here (the
// same libm on Linux); step is an exact small integer, so bc1 and bc2 agree wherever pow is
// accurate to half an ulp. Every element is independent, so the result does not depend on SIMD
// width or thread count. The fixture matches all of the above with no element different.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using GhmGen.Layers;

namespace GhmGen.Training;

/// <summary>The AdamW state of one parameter: torch's <c>state[p]</c> (<c>step</c>, <c>exp_avg</c>, <c>exp_avg_sq</c>).</summary>
/// <param name="Step">Steps this parameter has taken (torch keeps it as a float32 tensor); at least 1.</param>
/// <param name="ExpAvg">First moment (<c>exp_avg</c>), one value per parameter element.</param>
/// <param name="ExpAvgSq">Second moment (<c>exp_avg_sq</c>), one value per parameter element.</param>
public sealed record AdamWParameterState(float Step, float[] ExpAvg, float[] ExpAvgSq);

/// <summary>
/// torch 1.13's <c>AdamW(params, lr, betas, eps, weight_decay, amsgrad=False)</c> over a fixed,
/// ordered parameter list, as mmcv builds it from <c>model.parameters()</c> for
/// <c>optimizer=dict(type='AdamW', ...)</c>. A parameter that gets no gradient in a step is not
/// touched (not even decayed), and has no state (step count and moments) until its first gradient,
/// as in torch. Not thread-safe: use an instance from one thread at a time; <see cref="Step"/>
/// itself runs on up to <see cref="TrainingOptimizer.MaxDegreeOfParallelism"/> threads, and its
/// results do not depend on that number.
/// </summary>
public sealed class AdamWOptimizer : TrainingOptimizer
{
    /// <summary>torch's default <c>betas[0]</c>.</summary>
    public const double DefaultBeta1 = 0.9;

    /// <summary>torch's default <c>betas[1]</c>.</summary>
    public const double DefaultBeta2 = 0.999;

    /// <summary>torch's default <c>eps</c>.</summary>
    public const double DefaultEpsilon = 1e-8;

    /// <summary>torch's default <c>weight_decay</c> for AdamW.</summary>
    public const double DefaultWeightDecay = 1e-2;

    private readonly float[] _steps;
    private readonly float[]?[] _expAvg;
    private readonly float[]?[] _expAvgSq;

    /// <summary>Creates the optimiser; <see cref="TrainingOptimizer.InitialLearningRate"/> starts equal to <paramref name="learningRate"/>.</summary>
    /// <param name="parameters">
    /// The optimiser's parameters in order (this order is the index order of its state dict). To
    /// index as mmdetection does, pass every parameter of the network, frozen ones included, in
    /// state-dict order.
    /// </param>
    /// <param name="learningRate">The param group's <c>lr</c>.</param>
    /// <param name="weightDecay">Decoupled weight decay: each step multiplies a parameter by <c>1 - lr * weightDecay</c>.</param>
    /// <param name="beta1">Decay of the first moment, in [0, 1).</param>
    /// <param name="beta2">Decay of the second moment, in [0, 1).</param>
    /// <param name="epsilon">torch's <c>eps</c>, added to the denominator; at least 0.</param>
    public AdamWOptimizer(IEnumerable<StateTensor> parameters, double learningRate, double weightDecay = DefaultWeightDecay,
        double beta1 = DefaultBeta1, double beta2 = DefaultBeta2, double epsilon = DefaultEpsilon)
        : base(parameters, learningRate, weightDecay)
    {
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "beta1 must be in [0, 1)");
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "beta2 must be in [0, 1)");
        if (!double.IsFinite(epsilon) || epsilon < 0) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "epsilon must be finite and >= 0");
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        _steps = new float[Parameters.Count];
        _expAvg = new float[]?[Parameters.Count];
        _expAvgSq = new float[]?[Parameters.Count];
    }

    /// <inheritdoc/>
    public override TrainingOptimizerKind Kind => TrainingOptimizerKind.AdamW;

    /// <summary>torch's <c>betas[0]</c>: decay of the first moment.</summary>
    public double Beta1 { get; }

    /// <summary>torch's <c>betas[1]</c>: decay of the second moment.</summary>
    public double Beta2 { get; }

    /// <summary>torch's <c>eps</c>.</summary>
    public double Epsilon { get; }

    /// <summary>torch's <c>amsgrad</c>; always false here.</summary>
    public bool AmsGrad => false;

    /// <summary>
    /// The state of parameter <paramref name="index"/>, or null before its first gradient. The
    /// moment arrays are the optimiser's own (the next step changes them), not copies.
    /// </summary>
    public AdamWParameterState? State(int index)
    {
        CheckIndex(index);
        return _expAvg[index] is { } m ? new AdamWParameterState(_steps[index], m, _expAvgSq[index]!) : null;
    }

    /// <summary>
    /// Sets (or with null clears) the state of parameter <paramref name="index"/>, e.g. from a
    /// resumed checkpoint; the arrays are kept, not copied, and must have the parameter's element count.
    /// </summary>
    public void SetState(int index, AdamWParameterState? state)
    {
        CheckIndex(index);
        if (state is null)
        {
            _steps[index] = 0;
            _expAvg[index] = _expAvgSq[index] = null;
            return;
        }
        ArgumentNullException.ThrowIfNull(state.ExpAvg, nameof(state));
        ArgumentNullException.ThrowIfNull(state.ExpAvgSq, nameof(state));
        if (!float.IsFinite(state.Step) || state.Step < 1) throw new ArgumentOutOfRangeException(nameof(state), state.Step, "the step count must be finite and at least 1");
        CheckStateArray(index, state.ExpAvg, "exp_avg", nameof(state));
        CheckStateArray(index, state.ExpAvgSq, "exp_avg_sq", nameof(state));
        if (ReferenceEquals(state.ExpAvg, state.ExpAvgSq)) throw new ArgumentException("exp_avg and exp_avg_sq must be different arrays", nameof(state));
        _steps[index] = state.Step;
        _expAvg[index] = state.ExpAvg;
        _expAvgSq[index] = state.ExpAvgSq;
    }

    /// <summary>
    /// One AdamW step: updates every parameter that has a gradient in <paramref name="gradients"/>
    /// (parameters not listed, or listed with a null gradient, are untouched). Gradients are read,
    /// not changed.
    /// </summary>
    /// <param name="gradients">Parameters of this optimiser with their gradients; each at most once.</param>
    public override void Step(IReadOnlyList<ParameterWithGradient> gradients)
    {
        List<(int Index, float[] Gradient)> work = WithGradients(gradients);
        double lr = LearningRate;
        var scalars = new StepScalars[work.Count];
        for (int w = 0; w < work.Count; w++)
        {
            int index = work[w].Index;
            if (_expAvg[index] == null)
            {
                _expAvg[index] = new float[Parameters[index].ElementCount];
                _expAvgSq[index] = new float[Parameters[index].ElementCount];
                _steps[index] = 0;
            }
            _steps[index] += 1f; // step_t += 1 on a float32 tensor
            double step = _steps[index]; // step_t.item()
            double biasCorrection1 = 1 - Math.Pow(Beta1, step);
            double biasCorrection2 = 1 - Math.Pow(Beta2, step);
            double stepSize = lr / biasCorrection1;
            scalars[w] = new StepScalars(
                Decay: (float)(1 - lr * WeightDecay),
                Beta1: (float)Beta1, OneMinusBeta1: (float)(1 - Beta1),
                Beta2: (float)Beta2, OneMinusBeta2: (float)(1 - Beta2),
                BiasCorrection2Sqrt: (float)Math.Sqrt(biasCorrection2),
                Epsilon: (float)Epsilon,
                NegativeStepSize: (float)-stepSize);
        }

        ForEachChunk([.. work.Select(w => w.Gradient.Length)], (w, start, length) =>
        {
            (int index, float[] gradient) = work[w];
            Update(Parameters[index].Data.AsSpan(start, length), gradient.AsSpan(start, length),
                _expAvg[index].AsSpan(start, length), _expAvgSq[index].AsSpan(start, length), scalars[w]);
        });
        StepCount++;
    }

    /// <summary>The float32 constants of one parameter's step, as torch converts its Python scalars.</summary>
    private readonly record struct StepScalars(float Decay, float Beta1, float OneMinusBeta1, float Beta2, float OneMinusBeta2,
        float BiasCorrection2Sqrt, float Epsilon, float NegativeStepSize);

    /// <summary>The element-wise update of the file header, over one chunk.</summary>
    private static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, StepScalars k)
    {
        ref float pr = ref p[0];
        ref float gr = ref Unsafe.AsRef(in g[0]);
        ref float mr = ref m[0];
        ref float vr = ref v[0];
        int n = p.Length, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> decay = Vector256.Create(k.Decay);
            Vector256<float> b1 = Vector256.Create(k.Beta1), a1 = Vector256.Create(k.OneMinusBeta1);
            Vector256<float> b2 = Vector256.Create(k.Beta2), a2 = Vector256.Create(k.OneMinusBeta2);
            Vector256<float> bc2 = Vector256.Create(k.BiasCorrection2Sqrt), eps = Vector256.Create(k.Epsilon);
            Vector256<float> step = Vector256.Create(k.NegativeStepSize);
            for (; i + Vector256<float>.Count <= n; i += Vector256<float>.Count)
            {
                Vector256<float> gv = Vector256.LoadUnsafe(ref gr, (nuint)i);
                Vector256<float> pv = Vector256.LoadUnsafe(ref pr, (nuint)i) * decay;
                Vector256<float> mv = Vector256.FusedMultiplyAdd(gv, a1, Vector256.LoadUnsafe(ref mr, (nuint)i) * b1);
                Vector256<float> vv = Vector256.FusedMultiplyAdd(a2 * gv, gv, Vector256.LoadUnsafe(ref vr, (nuint)i) * b2);
                Vector256<float> denom = (Vector256.Sqrt(vv) / bc2) + eps;
                mv.StoreUnsafe(ref mr, (nuint)i);
                vv.StoreUnsafe(ref vr, (nuint)i);
                (pv + ((step * mv) / denom)).StoreUnsafe(ref pr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float gv = Unsafe.Add(ref gr, i);
            float pv = Unsafe.Add(ref pr, i) * k.Decay;
            float mv = MathF.FusedMultiplyAdd(gv, k.OneMinusBeta1, Unsafe.Add(ref mr, i) * k.Beta1);
            float scaled = k.OneMinusBeta2 * gv;
            float vv = MathF.FusedMultiplyAdd(scaled, gv, Unsafe.Add(ref vr, i) * k.Beta2);
            float quotient = MathF.Sqrt(vv) / k.BiasCorrection2Sqrt;
            float denom = quotient + k.Epsilon;
            float product = k.NegativeStepSize * mv;
            float update = product / denom;
            Unsafe.Add(ref mr, i) = mv;
            Unsafe.Add(ref vr, i) = vv;
            Unsafe.Add(ref pr, i) = pv + update;
        }
    }
}
