using GhmGen.Backends.Gpu.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GhmGen.Backends.Gpu;

/// <summary>Decoded candidates of one level: boxes [Count, 4] (x1, y1, x2, y2), scores and class labels, best first.</summary>
/// <param name="Boxes">Boxes in resized-image pixels, clipped to the image.</param>
/// <param name="Scores">Sigmoid scores, descending.</param>
/// <param name="Labels">Class indices.</param>
public sealed record LevelDetections(float[] Boxes, float[] Scores, int[] Labels)
{
    /// <summary>Number of detections.</summary>
    public int Count => Scores.Length;
}

/// <summary>
/// Detection post-processing on an ILGPU accelerator (docs/MODEL.md §7): per level, sigmoid and
/// score threshold, top-k by score (a bitonic sort of score/index keys), delta decoding with
/// the dw/dh clamp; then class-aware NMS from a device-computed IoU bitmask. It owns its device
/// buffers and kernels, not the accelerator. Not thread-safe: one call at a time.
/// </summary>
public sealed class IlgpuDetection : IDisposable
{
    private readonly IlgpuBackend _backend;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _counter;
    // Scratch reused across calls, grown on demand: candidate keys (one per pair of the
    // largest level seen) and the power-of-two sort run.
    private MemoryBuffer1D<ulong, Stride1D.Dense>? _candidates;
    private MemoryBuffer1D<ulong, Stride1D.Dense>? _sortRun;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<ulong>, ArrayView<int>, CandidateLaunch> _select;
    private readonly Action<Index1D, ArrayView<ulong>, int, int> _sortStep;
    private readonly Action<Index1D, ArrayView<ulong>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, DecodeLaunch> _decode;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<ulong>, int, float> _nmsMask;

    /// <summary>Loads the kernels on <paramref name="backend"/>'s accelerator.</summary>
    public IlgpuDetection(IlgpuBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        _backend = backend;
        Accelerator a = backend.Accelerator;
        _select = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ulong>, ArrayView<int>, CandidateLaunch>(DetectionKernels.SelectCandidates);
        _sortStep = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ulong>, int, int>(DetectionKernels.BitonicSortStep);
        _decode = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ulong>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, DecodeLaunch>(DetectionKernels.DecodeBoxes);
        _nmsMask = a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<ulong>, int, float>(DetectionKernels.NmsMask);
        _counter = a.Allocate1D<int>(1);
    }

    /// <summary>
    /// One image, one level: keeps (anchor, class) pairs with sigmoid score &gt;
    /// <paramref name="scoreThreshold"/>, the best <paramref name="topK"/> of them, and decodes
    /// their boxes. <paramref name="classLogits"/> is [1, A*classes, H, W],
    /// <paramref name="boxDeltas"/> [1, A*4, H, W], <paramref name="anchors"/> H*W*A*4 values
    /// in the order (y*W + x)*A + a; boxes are clipped to [0, imageWidth] x [0, imageHeight].
    /// </summary>
    public LevelDetections DecodeLevel(
        TensorView classLogits, TensorView boxDeltas, TensorView anchors, int classes,
        float scoreThreshold, int topK, float imageWidth, float imageHeight)
    {
        if (classes <= 0 || classLogits.C % classes != 0)
            throw new ArgumentException($"class logits {classLogits.ShapeText} do not hold a whole number of anchors of {classes} classes", nameof(classLogits));
        int anchorsPerCell = classLogits.C / classes;
        if (classLogits.N != 1 || boxDeltas.N != 1)
            throw new ArgumentException($"decode one image at a time: got class logits {classLogits.ShapeText}, box deltas {boxDeltas.ShapeText}");
        if (boxDeltas.C != anchorsPerCell * 4 || boxDeltas.H != classLogits.H || boxDeltas.W != classLogits.W)
            throw new ArgumentException($"box deltas {boxDeltas.ShapeText} do not match class logits {classLogits.ShapeText} ({anchorsPerCell} anchors per cell)", nameof(boxDeltas));
        long cells = (long)classLogits.H * classLogits.W;
        if (anchors.ElementCount != cells * anchorsPerCell * 4)
            throw new ArgumentException($"anchors have {anchors.ElementCount} values; the level needs {cells * anchorsPerCell * 4}", nameof(anchors));
        if (topK <= 0)
            throw new ArgumentOutOfRangeException(nameof(topK), topK, "top-k must be positive");
        if (classLogits.ElementCount > int.MaxValue / 2)
            throw new ArgumentException($"class logits {classLogits.ShapeText} have too many pairs for 32-bit pair ids", nameof(classLogits));

        Accelerator a = _backend.Accelerator;
        int pairs = (int)classLogits.ElementCount;
        ArrayView<ulong> keys = Scratch(ref _candidates, pairs);
        _counter.MemSetToZero();
        _select(pairs, IlgpuBackend.View(classLogits), keys, _counter.View,
            new CandidateLaunch(classLogits.H, classLogits.W, anchorsPerCell, classes, scoreThreshold));
        var found = new int[1];
        a.Synchronize();
        _counter.View.CopyToCPU(found);
        int candidates = found[0];
        if (candidates == 0) return new LevelDetections([], [], []);

        int padded = 1;
        while (padded < candidates) padded <<= 1;
        ArrayView<ulong> sorted = Scratch(ref _sortRun, padded).SubView(0, padded);
        sorted.MemSetToZero();  // padding keys 0 sort last
        sorted.SubView(0, candidates).CopyFrom(keys.SubView(0, candidates));
        SortDescending(sorted);

        int count = Math.Min(candidates, topK);
        using MemoryBuffer1D<float, Stride1D.Dense> boxes = a.Allocate1D<float>(count * 4);
        using MemoryBuffer1D<float, Stride1D.Dense> scores = a.Allocate1D<float>(count);
        using MemoryBuffer1D<int, Stride1D.Dense> labels = a.Allocate1D<int>(count);
        _decode(count, sorted, IlgpuBackend.View(anchors), IlgpuBackend.View(boxDeltas), boxes.View, scores.View, labels.View,
            new DecodeLaunch(classLogits.H, classLogits.W, anchorsPerCell, classes, count, imageWidth, imageHeight));
        var result = new LevelDetections(new float[count * 4], new float[count], new int[count]);
        a.Synchronize();
        boxes.View.CopyToCPU(result.Boxes);
        scores.View.CopyToCPU(result.Scores);
        labels.View.CopyToCPU(result.Labels);
        return result;
    }

    /// <summary>
    /// Class-aware NMS: boxes [n, 4] (x1, y1, x2, y2) with scores and labels; a box is
    /// suppressed by a higher-scoring kept box of the same label with IoU &gt;
    /// <paramref name="iouThreshold"/>. Returns the kept indices, best first, at most
    /// <paramref name="maxKept"/>. Ties in score keep the input order.
    /// </summary>
    public int[] Nms(ReadOnlySpan<float> boxes, ReadOnlySpan<float> scores, ReadOnlySpan<int> labels, float iouThreshold, int maxKept)
    {
        int n = scores.Length;
        if (boxes.Length != n * 4 || labels.Length != n)
            throw new ArgumentException($"NMS: {boxes.Length} box values and {labels.Length} labels do not match {n} scores");
        if (n == 0 || maxKept <= 0) return [];

        int[] order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        float[] scoreCopy = scores.ToArray();
        // Stable descending: sort (-score, index) pairs.
        Array.Sort(order, (p, q) => scoreCopy[p] != scoreCopy[q] ? scoreCopy[q].CompareTo(scoreCopy[p]) : p.CompareTo(q));
        var sortedBoxes = new float[n * 4];
        var sortedLabels = new int[n];
        for (int r = 0; r < n; r++)
        {
            boxes.Slice(order[r] * 4, 4).CopyTo(sortedBoxes.AsSpan(r * 4));
            sortedLabels[r] = labels[order[r]];
        }

        Accelerator a = _backend.Accelerator;
        int blocks = (n + DetectionKernels.NmsBlock - 1) / DetectionKernels.NmsBlock;
        using MemoryBuffer1D<float, Stride1D.Dense> deviceBoxes = a.Allocate1D(sortedBoxes);
        using MemoryBuffer1D<int, Stride1D.Dense> deviceLabels = a.Allocate1D(sortedLabels);
        using MemoryBuffer1D<ulong, Stride1D.Dense> mask = a.Allocate1D<ulong>((long)n * blocks);
        _nmsMask(new KernelConfig(new Index2D(blocks, blocks), new Index2D(DetectionKernels.NmsBlock, 1)),
            deviceBoxes.View, deviceLabels.View, mask.View, n, iouThreshold);
        var words = new ulong[n * blocks];
        a.Synchronize();
        mask.View.CopyToCPU(words);

        var removed = new ulong[blocks];
        var kept = new List<int>();
        for (int i = 0; i < n && kept.Count < maxKept; i++)
        {
            if ((removed[i / 64] >> (i % 64) & 1UL) != 0) continue;
            kept.Add(order[i]);
            for (int b = 0; b < blocks; b++) removed[b] |= words[i * blocks + b];
        }
        return [.. kept];
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _counter.Dispose();
        _candidates?.Dispose();
        _sortRun?.Dispose();
    }

    private ArrayView<ulong> Scratch(ref MemoryBuffer1D<ulong, Stride1D.Dense>? buffer, int length)
    {
        if (buffer is null || buffer.Length < length)
        {
            buffer?.Dispose();
            buffer = _backend.Accelerator.Allocate1D<ulong>(length);
        }
        return buffer.View;
    }

    /// <summary>Sorts a power-of-two run of keys descending on the device.</summary>
    internal void SortDescending(ArrayView<ulong> keys)
    {
        int n = keys.IntLength;
        if ((n & (n - 1)) != 0)
            throw new ArgumentException($"bitonic sort needs a power-of-two length, got {n}", nameof(keys));
        for (int k = 2; k <= n; k <<= 1)
            for (int j = k >> 1; j > 0; j >>= 1)
                _sortStep(n, keys, k, j);
    }
}
