// Gradient-norm clipping as torch 1.13's clip_grad_norm_(parameters, max_norm, norm_type=2)
// computes it on the CPU, bit for bit (reference test: GradientClippingTests, fixture made by
// tools/reference/train_optim.py from torch itself).
//
//   norms_i    = torch.norm(g_i, 2)                         float32, one per gradient tensor
//   total_norm = torch.norm(torch.stack(norms), 2)          float32
//   clip_coef  = max_norm / (total_norm + 1e-6)             = reciprocal(total_norm + 1e-6f) * (float)max_norm
//   g_i       *= clamp(clip_coef, max=1.0)                  float32, in place
//
// torch.norm of a contiguous float32 tensor on the CPU (aten norm_kernel_tensor_iterator_impl,
// vectorised last-dim path, CPU capability AVX2) is one sequential pass with 8 float32 lane
// accumulators, acc = fma(x, x, acc), then lanes 0..7 summed left to right, then the n % 8 tail
// elements fused into lane 0's sum in order, then sqrtf. It does not depend on the thread count.
// That float32 accumulation is not exact: per-tensor norms of the ~38M R-50 gradients are off
// the exact value by ~1e3 ulps (~1e-4 relative) and the total by ~1e2 ulps (measured against a
// float64 sum). Reproducing it keeps our grad_norm equal to PyTorch's CPU result for equal
// gradients (Debian torch 1.13.1, default capability AVX2: 65 of 65 sampled lengths bitwise).
// torch with ATEN_CPU_CAPABILITY=avx512 sums 16 lanes instead and gives other floats; CUDA torch
// (a tree reduction) was not measured.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace GhmGen.Training;

/// <summary>torch 1.13's <c>clip_grad_norm_</c> (L2) over a list of gradients, reproduced bit for bit.</summary>
public static class GradientClipping
{
    /// <summary>mmdetection's <c>optimizer_config.grad_clip.max_norm</c> for GHM (docs/TRAINING.md).</summary>
    public const double MmdetectionMaxNorm = 35;

    /// <summary>torch's <c>1e-6</c> added to the total norm before dividing.</summary>
    public const float NormEpsilon = 1e-6f;

    /// <summary>Lane count of torch's float32 norm accumulator (AVX2: 256 bits).</summary>
    public const int NormLanes = 8;

    /// <summary>Elements per work item when scaling gradients in parallel.</summary>
    private const int ScaleChunk = 1 << 16;

    /// <summary>
    /// Clips the gradients in place to a total L2 norm of <paramref name="maxNorm"/> and returns the
    /// total norm <b>before</b> clipping (what mmcv logs as <c>grad_norm</c>). Null gradients are
    /// skipped (torch's <c>p.grad is None</c>). As in torch, a non-finite total norm makes the
    /// coefficient NaN (or 0), and the gradients are multiplied by it.
    /// </summary>
    /// <param name="parameters">Parameters with their gradients, in the optimiser's order (the order matters for the float32 sum).</param>
    /// <param name="maxNorm">Largest total norm kept; mmdetection's GHM recipe uses 35.</param>
    /// <param name="maxDegreeOfParallelism">Threads to use; -1 uses all cores. The result does not depend on it.</param>
    public static float ClipGradNorm(IReadOnlyList<ParameterWithGradient> parameters, double maxNorm = MmdetectionMaxNorm, int maxDegreeOfParallelism = -1)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        return ClipGradNorm(Gradients(parameters), maxNorm, maxDegreeOfParallelism);
    }

    /// <summary>
    /// <see cref="ClipGradNorm(IReadOnlyList{ParameterWithGradient}, double, int)"/> on bare gradient
    /// arrays; null entries are skipped.
    /// </summary>
    public static float ClipGradNorm(IReadOnlyList<float[]?> gradients, double maxNorm = MmdetectionMaxNorm, int maxDegreeOfParallelism = -1)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        float[][] present = [.. gradients.Where(g => g != null)!];
        if (present.Length == 0) return 0f; // torch returns tensor(0.) and touches nothing
        float total = TotalNorm(present, maxDegreeOfParallelism);
        float coefficient = ClipCoefficient(total, maxNorm);
        // torch multiplies by the clamped coefficient even when it is 1; x * 1 == x, so skip it.
        if (coefficient != 1f) Scale(present, coefficient, maxDegreeOfParallelism);
        return total;
    }

    /// <summary>
    /// torch's total norm <c>norm(stack([norm(g, 2) for g in grads]), 2)</c> in float32; null
    /// entries are skipped; 0 when there are none.
    /// </summary>
    public static float TotalNorm(IReadOnlyList<float[]?> gradients, int maxDegreeOfParallelism = -1)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        float[][] present = [.. gradients.Where(g => g != null)!];
        var norms = new float[present.Length];
        var options = new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism };
        // Each tensor's norm is one sequential pass (as in torch), so the tensors are the work items.
        Parallel.For(0, present.Length, options, i => norms[i] = L2Norm(present[i]));
        return L2Norm(norms);
    }

    /// <summary>
    /// <c>torch.norm(x, 2)</c> of a contiguous float32 tensor as torch 1.13 computes it on the
    /// CPU (see the file header): 8 fused float32 lane sums, lanes added in order, then the tail.
    /// </summary>
    public static float L2Norm(ReadOnlySpan<float> values)
    {
        int body = values.Length - values.Length % NormLanes;
        float sum;
        ref float start = ref MemoryMarshal.GetReference(values);
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> acc = Vector256<float>.Zero;
            for (int i = 0; i < body; i += NormLanes)
            {
                Vector256<float> x = Vector256.LoadUnsafe(ref start, (nuint)i);
                acc = Vector256.FusedMultiplyAdd(x, x, acc);
            }
            sum = acc.GetElement(0);
            for (int j = 1; j < NormLanes; j++) sum += acc.GetElement(j);
        }
        else
        {
            Span<float> lanes = stackalloc float[NormLanes];
            lanes.Clear();
            for (int i = 0; i < body; i += NormLanes)
            {
                for (int j = 0; j < NormLanes; j++)
                {
                    float x = Unsafe.Add(ref start, i + j);
                    lanes[j] = MathF.FusedMultiplyAdd(x, x, lanes[j]);
                }
            }
            sum = lanes[0];
            for (int j = 1; j < NormLanes; j++) sum += lanes[j];
        }
        for (int i = body; i < values.Length; i++)
        {
            float x = Unsafe.Add(ref start, i);
            sum = MathF.FusedMultiplyAdd(x, x, sum);
        }
        return MathF.Sqrt(sum);
    }

    /// <summary>
    /// torch's <c>clamp(max_norm / (total_norm + 1e-6), max=1.0)</c> in float32: the add rounds
    /// to float32, the division is <c>reciprocal(t) * (float)max_norm</c> (Tensor.__rtruediv__).
    /// NaN stays NaN.
    /// </summary>
    public static float ClipCoefficient(float totalNorm, double maxNorm = MmdetectionMaxNorm)
    {
        float shifted = totalNorm + NormEpsilon;
        float coefficient = 1f / shifted * (float)maxNorm;
        return coefficient > 1f ? 1f : coefficient;
    }

    private static float[]?[] Gradients(IReadOnlyList<ParameterWithGradient> parameters)
    {
        var gradients = new float[]?[parameters.Count];
        for (int i = 0; i < gradients.Length; i++)
        {
            ParameterWithGradient p = parameters[i];
            ArgumentNullException.ThrowIfNull(p.Parameter, nameof(parameters));
            if (p.Gradient != null && p.Gradient.LongLength != p.Parameter.ElementCount)
            {
                throw new ArgumentException($"gradient of '{p.Parameter.Key}' has {p.Gradient.LongLength} values; the parameter has {p.Parameter.ElementCount}", nameof(parameters));
            }
            gradients[i] = p.Gradient;
        }
        return gradients;
    }

    private static void Scale(float[][] gradients, float coefficient, int maxDegreeOfParallelism)
    {
        var chunks = new List<(int Tensor, int Start, int Length)>();
        for (int t = 0; t < gradients.Length; t++)
        {
            for (int s = 0; s < gradients[t].Length; s += ScaleChunk) chunks.Add((t, s, Math.Min(ScaleChunk, gradients[t].Length - s)));
        }
        var options = new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism };
        Parallel.For(0, chunks.Count, options, c =>
        {
            (int t, int s, int n) = chunks[c];
            // Elementwise float32 products: the same with or without SIMD.
            ref float g = ref gradients[t][s];
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> k = Vector256.Create(coefficient);
                for (; i + Vector256<float>.Count <= n; i += Vector256<float>.Count)
                {
                    (Vector256.LoadUnsafe(ref g, (nuint)i) * k).StoreUnsafe(ref g, (nuint)i);
                }
            }
            for (; i < n; i++) Unsafe.Add(ref g, i) *= coefficient;
        });
    }
}
