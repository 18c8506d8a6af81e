// GHM-C forward + backward for one 800x1216 image (P3..P7 = 100x152 .. 7x10 cells, 182,403 anchors,
// 14.6 M logits), the one-pass SIMD multi-threaded GhmcLoss against a plain per-bin loop written like
// mmdetection's GHMC (the in-run baseline), plus a memory-copy of the same size to put the times
// next to the machine's memory bandwidth. Peer: tools/reference/bench_ghm.py (PyTorch, 2 threads).
using BenchmarkDotNet.Attributes;
using GhmGen.Detection;
using GhmGen.Losses;

namespace GhmGen.Bench;

/// <summary>GHM-C over all levels of one 800x1216 image: one-pass vs mmdetection's per-bin loop.</summary>
[MemoryDiagnoser]
public class GhmLossBenchmarks
{
    private static readonly (int H, int W)[] LevelSizes = [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)];

    private RetinaTargets _targets = null!;
    private float[][] _logits = null!;
    private float[][] _gradients = null!;
    private float[] _copySource = null!;
    private float[] _copyTarget = null!;
    private readonly GhmcLoss _parallel = new();
    private readonly GhmcLoss _serial = new() { MaxDegreeOfParallelism = 1 };
    private readonly PerBinLoopGhmc _loop = new();

    /// <summary>Builds targets from a few ground-truth boxes and random logits around the prior bias -4.6.</summary>
    [GlobalSetup]
    public void Setup()
    {
        float[] anchors = SpecAnchors(out int[] counts);
        float[] gt = [100, 120, 400, 500, 380, 200, 700, 610, 650, 50, 1100, 760, 20, 600, 90, 690, 900, 300, 960, 330, 500, 40, 540, 120];
        int[] labels = [0, 2, 5, 17, 44, 79];
        _targets = RetinaTargets.Build(anchors, counts, [gt], [labels]);
        var rng = new Random(42);
        _logits = new float[LevelSizes.Length][];
        _gradients = new float[LevelSizes.Length][];
        for (int l = 0; l < LevelSizes.Length; l++)
        {
            var x = new float[_targets.Levels[l].ClassOutputLength];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(-4.6 + 3 * (rng.NextDouble() - 0.5) + 6 * Math.Pow(rng.NextDouble(), 40));
            _logits[l] = x;
            _gradients[l] = new float[x.Length];
        }
        long total = _logits.Sum(x => (long)x.Length);
        _copySource = new float[total];
        _copyTarget = new float[total];
        new Random(1).NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_copySource.AsSpan()));
        Console.WriteLine($"// logits {total:N0}, anchors {anchors.Length / 4:N0}, positives {_targets.NumPositives}, negatives {_targets.NumNegatives}");
    }

    /// <summary>mmdetection's algorithm in plain C#: one pass over all elements per bin, scalar, one thread.</summary>
    [Benchmark(Baseline = true)]
    public float PerBinLoop()
    {
        float loss = 0;
        for (int l = 0; l < _logits.Length; l++) loss += _loop.ComputeLevel(_logits[l], _targets.Levels[l], _gradients[l]);
        return loss;
    }

    /// <summary>GhmcLoss: histogram pass + scaling pass, SIMD, all cores.</summary>
    [Benchmark]
    public float OnePassParallel()
    {
        float loss = 0;
        for (int l = 0; l < _logits.Length; l++) loss += _parallel.ComputeLevel(_logits[l], _targets.Levels[l], _gradients[l]);
        return loss;
    }

    /// <summary>GhmcLoss on one thread.</summary>
    [Benchmark]
    public float OnePassSingleThread()
    {
        float loss = 0;
        for (int l = 0; l < _logits.Length; l++) loss += _serial.ComputeLevel(_logits[l], _targets.Levels[l], _gradients[l]);
        return loss;
    }

    /// <summary>Copy of 14.6 M floats (58 MB read + 58 MB written): the memory-bandwidth yardstick.</summary>
    [Benchmark]
    public void CopyLogitSizedArray() => _copySource.AsSpan().CopyTo(_copyTarget);

    private static float[] SpecAnchors(out int[] counts)
    {
        FeatureSize[] sizes = [.. LevelSizes.Select(s => new FeatureSize(s.Item1, s.Item2))];
        counts = [.. sizes.Select(s => s.Height * s.Width * AnchorGenerator.AnchorsPerCell)];
        return AnchorGenerator.AllAnchors(sizes);
    }
}

/// <summary>
/// GHM-C the way mmdetection's GHMC.forward runs it: compute g for every element, then for each
/// of the 30 bins scan every element to find its members, update acc_sum and assign weights, then
/// the weighted BCE and its gradient. Scalar and single-threaded: the in-run baseline.
/// </summary>
internal sealed class PerBinLoopGhmc
{
    private const int Bins = 30;
    private const float Momentum = 0.75f;
    private readonly float[] _accSum = new float[Bins];
    private readonly float[] _edges = new float[Bins + 1];
    private float[] _g = [];
    private float[] _weights = [];

    public PerBinLoopGhmc()
    {
        for (int k = 0; k <= Bins; k++) _edges[k] = (float)k / Bins;
        _edges[Bins] += 1e-6f;
    }

    public float ComputeLevel(float[] x, LevelTargets level, float[] grad)
    {
        int n = x.Length, hw = level.CellCount, classes = level.NumClasses;
        if (_g.Length < n)
        {
            _g = new float[n];
            _weights = new float[n];
        }
        long valid = 0;
        for (int i = 0; i < n; i++)
        {
            int p = i / hw;
            int code = level.LabelCodes[p / classes * hw + i % hw];
            float t = code == p % classes ? 1f : 0f;
            _g[i] = code < 0 ? -1f : MathF.Abs(1f / (1f + MathF.Exp(-x[i])) - t); // -1: not valid
            if (code >= 0) valid++;
            _weights[i] = 0f;
        }
        float tot = Math.Max(valid, 1);
        int nonEmpty = 0;
        for (int b = 0; b < Bins; b++)
        {
            long count = 0;
            for (int i = 0; i < n; i++) if (_g[i] >= _edges[b] && _g[i] < _edges[b + 1]) count++;
            if (count == 0) continue;
            _accSum[b] = Momentum * _accSum[b] + (1 - Momentum) * count;
            float w = tot / _accSum[b];
            for (int i = 0; i < n; i++) if (_g[i] >= _edges[b] && _g[i] < _edges[b + 1]) _weights[i] = w;
            nonEmpty++;
        }
        double loss = 0;
        for (int i = 0; i < n; i++)
        {
            int p = i / hw;
            int code = level.LabelCodes[p / classes * hw + i % hw];
            float t = code == p % classes ? 1f : 0f;
            float w = nonEmpty > 0 ? _weights[i] / nonEmpty : 0f;
            float xi = x[i];
            loss += w * (MathF.Max(xi, 0f) - xi * t + MathF.Log(1f + MathF.Exp(-MathF.Abs(xi))));
            grad[i] = w * (1f / (1f + MathF.Exp(-xi)) - t) / tot;
        }
        return (float)(loss / tot);
    }
}
