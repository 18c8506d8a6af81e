// RetinaNet inference post-processing for one image (docs/MODEL.md §7):
// per level: sigmoid scores of the [720, H, W] class map (channel a*80 + c), keep (anchor, class)
// pairs with score > 0.05, keep the 1000 best pairs (score descending, ties by anchor*80 + class),
// decode their anchors' deltas from the [36, H, W] box map (channel a*4 + k) with DeltaDecoder and
// clip to the resized image; then over all levels: divide by the scale factors, drop boxes with zero
// width or height, class-aware NMS at IoU 0.5, keep the best 100.
// Reference test: tests/GhmGen.Runtime.Tests/Detection/PostProcessorTests.cs against fixtures that
// tools/reference/postprocess.py made with PyTorch and torchvision.ops.batched_nms.
using System.Buffers;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace GhmGen.Detection;

/// <summary>
/// One detected object in original-image pixels: a box in continuous coordinates (mmdetection's
/// <c>x1, y1, x2, y2</c>, no +1: width is <c>X2 - X1</c>), within [0, width] x [0, height] of the
/// image as decoded, with its score and class.
/// </summary>
/// <param name="X1">Left edge, pixels from the image's left side.</param>
/// <param name="Y1">Top edge, pixels from the image's top.</param>
/// <param name="X2">Right edge, greater than <paramref name="X1"/>.</param>
/// <param name="Y2">Bottom edge, greater than <paramref name="Y1"/>.</param>
/// <param name="Score">Sigmoid class score in (0, 1), above the score threshold of <see cref="PostProcessOptions"/>.</param>
/// <param name="Label">Class index in [0, classes): for the published detectors in [0, 80), see <see cref="CocoCategories"/>.</param>
public readonly record struct DetectedObject(float X1, float Y1, float X2, float Y2, float Score, int Label);

/// <summary>The head outputs of one image on one pyramid level, NCHW without the batch axis.</summary>
/// <param name="ClassLogits">[anchors*classes, Height, Width], channel a*classes + c (9*80 for the published detectors).</param>
/// <param name="BoxDeltas">[anchors*4, Height, Width], channel a*4 + k, k = dx, dy, dw, dh.</param>
/// <param name="Height">Feature map rows.</param>
/// <param name="Width">Feature map columns.</param>
public readonly record struct HeadLevelOutput(ReadOnlyMemory<float> ClassLogits, ReadOnlyMemory<float> BoxDeltas, int Height, int Width);

/// <summary>Test-time settings; defaults are mmdetection's RetinaNet test_cfg.</summary>
/// <param name="ScoreThreshold">Pairs need a score above this (0.05).</param>
/// <param name="PreNmsTopK">Best pairs kept per level before NMS (1000).</param>
/// <param name="IouThreshold">NMS suppresses at IoU above this (0.5).</param>
/// <param name="MaxPerImage">Detections returned at most (100).</param>
public sealed record PostProcessOptions(float ScoreThreshold = 0.05f, int PreNmsTopK = 1000, float IouThreshold = 0.5f, int MaxPerImage = 100)
{
    /// <summary>mmdetection's RetinaNet test configuration.</summary>
    public static PostProcessOptions Default { get; } = new();
}

/// <summary>Turns RetinaNet head outputs into scored, class-labelled boxes (mmdetection's get_bboxes).</summary>
public static class PostProcessor
{
    /// <summary>
    /// Detections of one image, best first. <paramref name="resizedHeight"/>/<paramref name="resizedWidth"/>
    /// are the resized, unpadded image size; <paramref name="scaleX"/>/<paramref name="scaleY"/> are
    /// resized / original per axis.
    /// </summary>
    public static DetectedObject[] Run(ReadOnlySpan<HeadLevelOutput> levels, int resizedHeight, int resizedWidth,
        float scaleX, float scaleY, PostProcessOptions? options = null) =>
        Run(levels, RetinaHeadLayout.RetinaNet, resizedHeight, resizedWidth, scaleX, scaleY, options);

    /// <summary>
    /// Detections of one image of any RetinaNet-style head, best first: <paramref name="levels"/> in
    /// the order of <paramref name="layout"/>'s levels, whose strides, anchors and class count are used.
    /// </summary>
    public static DetectedObject[] Run(ReadOnlySpan<HeadLevelOutput> levels, RetinaHeadLayout layout, int resizedHeight, int resizedWidth,
        float scaleX, float scaleY, PostProcessOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(layout);
        options ??= PostProcessOptions.Default;
        Validate(levels, layout, resizedHeight, resizedWidth, scaleX, scaleY, options);
        int numClasses = layout.Classes, anchorsPerCell = layout.AnchorsPerCell;

        int capacity = 0;
        foreach (var level in levels)
            capacity += (int)Math.Min((long)options.PreNmsTopK, (long)level.Height * level.Width * anchorsPerCell * numClasses);
        float[] boxes = ArrayPool<float>.Shared.Rent(Math.Max(4 * capacity, 4));
        float[] scores = ArrayPool<float>.Shared.Rent(Math.Max(capacity, 1));
        int[] labels = ArrayPool<int>.Shared.Rent(Math.Max(capacity, 1));
        int[] keep = ArrayPool<int>.Shared.Rent(Math.Max(capacity, 1));
        try
        {
            int count = 0;
            for (int l = 0; l < levels.Length; l++)
                count = CollectLevel(levels[l], layout.Levels[l].Stride, layout.BaseAnchors(l), numClasses, anchorsPerCell,
                    resizedHeight, resizedWidth, scaleX, scaleY, options, boxes, scores, labels, count);

            int kept = BatchedNms.Run(boxes.AsSpan(0, 4 * count), scores.AsSpan(0, count), labels.AsSpan(0, count),
                options.IouThreshold, keep);
            int resultCount = Math.Min(kept, options.MaxPerImage);
            var detections = new DetectedObject[resultCount];
            for (int i = 0; i < resultCount; i++)
            {
                int k = keep[i];
                detections[i] = new DetectedObject(boxes[4 * k], boxes[4 * k + 1], boxes[4 * k + 2], boxes[4 * k + 3], scores[k], labels[k]);
            }
            return detections;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(boxes);
            ArrayPool<float>.Shared.Return(scores);
            ArrayPool<int>.Shared.Return(labels);
            ArrayPool<int>.Shared.Return(keep);
        }
    }

    /// <summary>Detections as COCO results ([x, y, w, h], score, category id).</summary>
    public static CocoResult[] ToCoco(ReadOnlySpan<DetectedObject> detections)
    {
        var results = new CocoResult[detections.Length];
        for (int i = 0; i < detections.Length; i++) results[i] = CocoCategories.ToCocoResult(detections[i]);
        return results;
    }

    // Appends the level's surviving candidates (decoded, rescaled, non-empty) at position `count`.
    private static int CollectLevel(HeadLevelOutput level, int stride, ReadOnlySpan<float> baseAnchors, int numClasses, int anchorsPerCell,
        int resizedHeight, int resizedWidth,
        float scaleX, float scaleY, PostProcessOptions options, float[] boxes, float[] scores, int[] labels, int count)
    {
        ReadOnlySpan<float> logits = level.ClassLogits.Span;
        ReadOnlySpan<float> deltas = level.BoxDeltas.Span;
        int cells = level.Height * level.Width;
        float threshold = options.ScoreThreshold;
        // Only logits near or above logit(threshold) can pass; the exact test is on the float32 sigmoid.
        float logitThreshold = threshold <= 0f ? float.NegativeInfinity
            : threshold >= 1f ? float.PositiveInfinity
            : MathF.Log(threshold / (1f - threshold)) - 1e-3f;

        var set = new CandidateSet(options.PreNmsTopK, logitThreshold);
        try
        {
            for (int channel = 0; channel < anchorsPerCell * numClasses; channel++)
            {
                int anchorInCell = channel / numClasses, cls = channel % numClasses;
                ReadOnlySpan<float> plane = logits.Slice(channel * cells, cells);
                int cell = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    // Skip eight logits at a time when none can enter (almost all of them).
                    ref float planeRef = ref MemoryMarshal.GetReference(plane);
                    var limit = Vector256.Create(set.SkipLogit);
                    for (; cell + Vector256<float>.Count <= cells; cell += Vector256<float>.Count)
                    {
                        uint mask = Vector256.GreaterThan(Vector256.LoadUnsafe(ref planeRef, (nuint)cell), limit).ExtractMostSignificantBits();
                        if (mask == 0) continue;
                        do
                        {
                            int c = cell + BitOperations.TrailingZeroCount(mask);
                            mask &= mask - 1;
                            set.Add(plane[c], (uint)((c * anchorsPerCell + anchorInCell) * numClasses + cls), threshold);
                        }
                        while (mask != 0);
                        limit = Vector256.Create(set.SkipLogit);
                    }
                }
                for (; cell < cells; cell++)
                {
                    if (plane[cell] > set.SkipLogit)
                        set.Add(plane[cell], (uint)((cell * anchorsPerCell + anchorInCell) * numClasses + cls), threshold);
                }
            }
            int candidateCount = set.Count;
            Span<ulong> selected = set.Keys.AsSpan(0, candidateCount);
            if (candidateCount > options.PreNmsTopK)
            {
                SelectSmallest(selected, options.PreNmsTopK);
                selected = selected[..options.PreNmsTopK];
            }
            selected.Sort();

            foreach (ulong key in selected)
            {
                int pair = (int)(uint)key;
                int anchor = pair / numClasses, cls = pair % numClasses;
                int cell = anchor / anchorsPerCell, a = anchor % anchorsPerCell;
                int y = cell / level.Width, x = cell % level.Width;
                float shiftX = (float)x * stride, shiftY = (float)y * stride;
                var (x1, y1, x2, y2) = DeltaDecoder.Decode(
                    baseAnchors[4 * a] + shiftX, baseAnchors[4 * a + 1] + shiftY,
                    baseAnchors[4 * a + 2] + shiftX, baseAnchors[4 * a + 3] + shiftY,
                    deltas[(a * 4 + 0) * cells + cell], deltas[(a * 4 + 1) * cells + cell],
                    deltas[(a * 4 + 2) * cells + cell], deltas[(a * 4 + 3) * cells + cell],
                    resizedWidth, resizedHeight);
                x1 /= scaleX; x2 /= scaleX; y1 /= scaleY; y2 /= scaleY;
                if (!(x2 - x1 > 0f) || !(y2 - y1 > 0f)) continue;
                boxes[4 * count] = x1; boxes[4 * count + 1] = y1; boxes[4 * count + 2] = x2; boxes[4 * count + 3] = y2;
                scores[count] = Sigmoid(logits[(a * numClasses + cls) * cells + cell]);
                labels[count] = cls;
                count++;
            }
            return count;
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(set.Keys);
        }
    }

    private static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    // A level's candidates: keys of (anchor, class) pairs whose score passes the threshold, kept
    // bounded. Key: inverted order-preserving score bits, then the pair index (anchor * classes +
    // class): ascending key order is score descending, ties by pair index (mmdetection's nonzero
    // order). When 4 x topK keys have gathered, the topK smallest are kept and the largest of them
    // becomes the bound: a later key above it cannot be among the topK. A logit whose score is
    // strictly below the bound's raises SkipLogit, and since the float32 sigmoid never decreases,
    // no logit at or below SkipLogit can enter either, so the scan skips them without a sigmoid.
    // The topK smallest keys are the same as without the bound.
    private struct CandidateSet(int topK, float logitThreshold)
    {
        private readonly int _compactAt = 4L * topK <= Array.MaxLength / 2 ? 4 * topK : int.MaxValue; // never for a huge topK
        private ulong _bound = ulong.MaxValue;

        public ulong[] Keys = ArrayPool<ulong>.Shared.Rent(1024);
        public int Count;
        public float SkipLogit = logitThreshold;

        public void Add(float logit, uint pair, float threshold)
        {
            float score = Sigmoid(logit);
            if (!(score > threshold)) return;
            ulong key = ((ulong)~BatchedNms.OrderedBits(score) << 32) | pair;
            if (key > _bound)
            {
                if ((key >> 32) > (_bound >> 32) && logit > SkipLogit) SkipLogit = logit; // strictly lower score
                return;
            }
            if (Count == Keys.Length)
            {
                ulong[] larger = ArrayPool<ulong>.Shared.Rent(Keys.Length * 2);
                Keys.AsSpan(0, Count).CopyTo(larger);
                ArrayPool<ulong>.Shared.Return(Keys);
                Keys = larger;
            }
            Keys[Count++] = key;
            if (Count >= _compactAt)
            {
                SelectSmallest(Keys.AsSpan(0, Count), topK);
                Count = topK;
                ulong largest = 0;
                foreach (ulong k in Keys.AsSpan(0, topK)) largest = Math.Max(largest, k);
                _bound = largest;
            }
        }
    }

    // Quickselect: afterwards the k smallest keys occupy keys[0..k) (in no particular order).
    private static void SelectSmallest(Span<ulong> keys, int k)
    {
        int left = 0, right = keys.Length - 1;
        while (left < right)
        {
            ulong pivot = MedianOfThree(keys[left], keys[left + (right - left) / 2], keys[right]);
            int i = left, j = right;
            while (i <= j)
            {
                while (keys[i] < pivot) i++;
                while (keys[j] > pivot) j--;
                if (i <= j) { (keys[i], keys[j]) = (keys[j], keys[i]); i++; j--; }
            }
            if (k - 1 <= j) right = j;
            else if (k - 1 >= i) left = i;
            else return;
        }
    }

    private static ulong MedianOfThree(ulong a, ulong b, ulong c) =>
        a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);

    private static void Validate(ReadOnlySpan<HeadLevelOutput> levels, RetinaHeadLayout layout, int resizedHeight, int resizedWidth,
        float scaleX, float scaleY, PostProcessOptions options)
    {
        int numClasses = layout.Classes, anchorsPerCell = layout.AnchorsPerCell;
        if (levels.Length != layout.Levels.Count)
            throw new ArgumentException($"expected {layout.Levels.Count} levels ({string.Join(", ", layout.Levels.Select(l => l.Name))}), got {levels.Length}", nameof(levels));
        for (int l = 0; l < levels.Length; l++)
        {
            var level = levels[l];
            if (level.Height <= 0 || level.Width <= 0)
                throw new ArgumentException($"level {layout.Levels[l].Name} has feature size {level.Height}x{level.Width}", nameof(levels));
            long cells = (long)level.Height * level.Width;
            if (level.ClassLogits.Length != cells * anchorsPerCell * numClasses)
                throw new ArgumentException(
                    $"level {layout.Levels[l].Name} class map has {level.ClassLogits.Length} values, expected {anchorsPerCell * numClasses}x{level.Height}x{level.Width}", nameof(levels));
            if (level.BoxDeltas.Length != cells * anchorsPerCell * 4)
                throw new ArgumentException(
                    $"level {layout.Levels[l].Name} box map has {level.BoxDeltas.Length} values, expected {anchorsPerCell * 4}x{level.Height}x{level.Width}", nameof(levels));
        }
        if (resizedHeight <= 0 || resizedWidth <= 0)
            throw new ArgumentOutOfRangeException(nameof(resizedHeight), $"resized image size must be positive, got {resizedHeight}x{resizedWidth}");
        if (!(scaleX > 0f) || !(scaleY > 0f) || float.IsInfinity(scaleX) || float.IsInfinity(scaleY))
            throw new ArgumentOutOfRangeException(nameof(scaleX), $"scale factors must be positive and finite, got {scaleX}, {scaleY}");
        if (options.PreNmsTopK <= 0 || options.MaxPerImage < 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"PreNmsTopK must be positive and MaxPerImage not negative, got {options.PreNmsTopK}, {options.MaxPerImage}");
    }
}
