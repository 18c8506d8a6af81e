// Class-aware greedy non-maximum suppression (torchvision.ops.batched_nms semantics):
// boxes [n, 4] as x1, y1, x2, y2; scores [n]; classes [n] (>= 0). Boxes of different classes never
// suppress each other. IoU = inter / (area_i + area_j - inter) with no +1, in float32 like
// torchvision's CPU kernel; a box is suppressed when IoU > threshold with a kept, higher-ranked box.
// Order: descending score, ties broken by the lower original index (a stable sort; torchvision's
// scores.sort(descending=True) is not stable, so exact ties may be ordered differently there).
// Algorithm: one sort of packed (score, index) keys, a counting sort into per-class buckets with the
// coordinates copied into contiguous per-bucket arrays, greedy suppression inside each bucket
// (eight IoUs at a time with Vector256 where available).
// All scratch memory is pooled: no allocation per call in steady state.
// Reference tests: tests/GhmGen.Runtime.Tests/Detection/NmsTests.cs (naive O(n^2) C# reference and
// torchvision fixtures).
using System.Buffers;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace GhmGen.Detection;

/// <summary>Class-aware non-maximum suppression over boxes with scores and class labels.</summary>
public static class BatchedNms
{
    /// <summary>Largest class label accepted (exclusive).</summary>
    public const int MaxClasses = 1 << 16;

    /// <summary>
    /// Writes the indices of the kept boxes to <paramref name="keep"/> in descending score order and
    /// returns how many were kept. <paramref name="keep"/> must hold at least n entries.
    /// </summary>
    public static int Run(ReadOnlySpan<float> boxes, ReadOnlySpan<float> scores, ReadOnlySpan<int> classes,
        float iouThreshold, Span<int> keep)
    {
        int n = scores.Length;
        if (boxes.Length != 4 * n)
            throw new ArgumentException($"boxes must be [n, 4] for n = {n} scores, got {boxes.Length} values", nameof(boxes));
        if (classes.Length != n)
            throw new ArgumentException($"classes must have one entry per score ({n}), got {classes.Length}", nameof(classes));
        if (keep.Length < n)
            throw new ArgumentException($"keep must hold at least {n} indices, got {keep.Length}", nameof(keep));
        if (float.IsNaN(iouThreshold))
            throw new ArgumentOutOfRangeException(nameof(iouThreshold), "IoU threshold is NaN");
        if (n == 0)
            return 0;

        int classCount = 0;
        for (int i = 0; i < n; i++)
        {
            int c = classes[i];
            if ((uint)c >= MaxClasses)
                throw new ArgumentOutOfRangeException(nameof(classes), $"class of box {i} is {c}, outside [0, {MaxClasses})");
            if (c >= classCount) classCount = c + 1;
        }

        ulong[] orderKeys = ArrayPool<ulong>.Shared.Rent(n);
        int[] bucketStart = ArrayPool<int>.Shared.Rent(classCount + 1);
        int[] bucketIndex = ArrayPool<int>.Shared.Rent(n);
        float[] coordinates = ArrayPool<float>.Shared.Rent(5 * n);
        byte[] state = ArrayPool<byte>.Shared.Rent(2 * n);
        try
        {
            // 1. One sort: high 32 bits = inverted order-preserving score bits, low 32 bits = index.
            for (int i = 0; i < n; i++)
            {
                float s = scores[i];
                if (float.IsNaN(s))
                    throw new ArgumentException($"score of box {i} is NaN", nameof(scores));
                orderKeys[i] = ((ulong)~OrderedBits(s) << 32) | (uint)i;
            }
            Span<ulong> order = orderKeys.AsSpan(0, n);
            order.Sort();

            // 2. Counting sort into class buckets, keeping score order inside each bucket.
            Span<int> starts = bucketStart.AsSpan(0, classCount + 1);
            starts.Clear();
            for (int i = 0; i < n; i++) starts[classes[i] + 1]++;
            for (int c = 0; c < classCount; c++) starts[c + 1] += starts[c];
            Span<float> x1 = coordinates.AsSpan(0, n), y1 = coordinates.AsSpan(n, n), x2 = coordinates.AsSpan(2 * n, n),
                y2 = coordinates.AsSpan(3 * n, n), area = coordinates.AsSpan(4 * n, n);
            for (int r = 0; r < n; r++)
            {
                int index = (int)(uint)order[r];
                int position = starts[classes[index]]++;
                bucketIndex[position] = index;
                float bx1 = boxes[4 * index], by1 = boxes[4 * index + 1], bx2 = boxes[4 * index + 2], by2 = boxes[4 * index + 3];
                x1[position] = bx1; y1[position] = by1; x2[position] = bx2; y2[position] = by2;
                area[position] = (bx2 - bx1) * (by2 - by1);
            }
            // starts[c] is now the end of bucket c, i.e. the start of bucket c + 1.

            // 3. Greedy suppression per bucket.
            Span<byte> suppressed = state.AsSpan(0, n);
            Span<byte> kept = state.AsSpan(n, n);
            suppressed.Clear();
            kept.Clear();
            int bucketBegin = 0;
            for (int c = 0; c < classCount; c++)
            {
                int bucketEnd = starts[c];
                SuppressBucket(x1, y1, x2, y2, area, suppressed, bucketBegin, bucketEnd, iouThreshold);
                for (int p = bucketBegin; p < bucketEnd; p++)
                    if (suppressed[p] == 0) kept[bucketIndex[p]] = 1;
                bucketBegin = bucketEnd;
            }

            // 4. Kept indices in global score order.
            int count = 0;
            for (int r = 0; r < n; r++)
            {
                int index = (int)(uint)order[r];
                if (kept[index] != 0) keep[count++] = index;
            }
            return count;
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(orderKeys);
            ArrayPool<int>.Shared.Return(bucketStart);
            ArrayPool<int>.Shared.Return(bucketIndex);
            ArrayPool<float>.Shared.Return(coordinates);
            ArrayPool<byte>.Shared.Return(state);
        }
    }

    private static void SuppressBucket(Span<float> x1, Span<float> y1, Span<float> x2, Span<float> y2, Span<float> area,
        Span<byte> suppressed, int begin, int end, float iouThreshold)
    {
        ref float x1Ref = ref MemoryMarshal.GetReference(x1), y1Ref = ref MemoryMarshal.GetReference(y1);
        ref float x2Ref = ref MemoryMarshal.GetReference(x2), y2Ref = ref MemoryMarshal.GetReference(y2);
        ref float areaRef = ref MemoryMarshal.GetReference(area);
        for (int i = begin; i < end; i++)
        {
            if (suppressed[i] != 0) continue;
            float ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iArea = area[i];
            int j = i + 1;
            if (Vector256.IsHardwareAccelerated && end - j >= Vector256<float>.Count)
            {
                // Eight candidates at a time with the same float32 operations as the scalar loop below;
                // re-suppressing an already suppressed box changes nothing, so no per-lane skip is needed.
                var vx1 = Vector256.Create(ix1); var vy1 = Vector256.Create(iy1);
                var vx2 = Vector256.Create(ix2); var vy2 = Vector256.Create(iy2);
                var vArea = Vector256.Create(iArea); var threshold = Vector256.Create(iouThreshold);
                for (; j + Vector256<float>.Count <= end; j += Vector256<float>.Count)
                {
                    nuint o = (nuint)j;
                    var w = Vector256.MaxNative(Vector256<float>.Zero,
                        Vector256.MinNative(vx2, Vector256.LoadUnsafe(ref x2Ref, o)) - Vector256.MaxNative(vx1, Vector256.LoadUnsafe(ref x1Ref, o)));
                    var h = Vector256.MaxNative(Vector256<float>.Zero,
                        Vector256.MinNative(vy2, Vector256.LoadUnsafe(ref y2Ref, o)) - Vector256.MaxNative(vy1, Vector256.LoadUnsafe(ref y1Ref, o)));
                    var inter = w * h;
                    var iou = inter / (vArea + Vector256.LoadUnsafe(ref areaRef, o) - inter);
                    uint mask = Vector256.GreaterThan(iou, threshold).ExtractMostSignificantBits();
                    while (mask != 0)
                    {
                        suppressed[j + BitOperations.TrailingZeroCount(mask)] = 1;
                        mask &= mask - 1;
                    }
                }
            }
            for (; j < end; j++)
            {
                if (suppressed[j] != 0) continue;
                float w = float.MaxNative(0f, float.MinNative(ix2, x2[j]) - float.MaxNative(ix1, x1[j]));
                float h = float.MaxNative(0f, float.MinNative(iy2, y2[j]) - float.MaxNative(iy1, y1[j]));
                float inter = w * h;
                float iou = inter / (iArea + area[j] - inter);
                if (iou > iouThreshold) suppressed[j] = 1;
            }
        }
    }

    /// <summary>Maps a float to a uint whose unsigned order is the float order (NaN excluded).</summary>
    internal static uint OrderedBits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
    }
}
