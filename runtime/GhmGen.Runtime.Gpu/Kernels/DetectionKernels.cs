// Detection post-processing for one image and one FPN level (docs/MODEL.md §7):
// SelectCandidates: class logits [A*C, H, W] (channel a*C + c) -> for each (anchor, class) with
//   sigmoid(logit) > threshold, one 64-bit sort key = (score bits << 32) | ~pairId, where
//   pairId = ((y*W + x)*A + a)*C + c, appended at an atomic counter. Positive float32 scores
//   order like their bits, so sorting keys descending sorts by score, ties by lower pairId.
// BitonicSortStep: one (k, j) step of a descending bitonic sort of keys [power of two].
// DecodeBoxes: the first count keys -> boxes [count, 4] (x1, y1, x2, y2), scores, labels, from
//   anchors [H*W*A, 4] and deltas [A*4, H, W] (channel a*4 + (dx, dy, dw, dh)); dw, dh clamped
//   to +/- |log(16/1000)|; boxes clipped to [0, width] x [0, height].
// NmsMask: boxes [n, 4] sorted by score; for box i, 64-bit words of mask [n, ceil(n/64)] mark
//   the boxes j > i of the same label with IoU > threshold; the host sweeps the words greedily.
// Reference tests: tests/GhmGen.Runtime.Gpu.Tests/DetectionTests.cs (naive C# versions).
using ILGPU;
using ILGPU.Algorithms;

namespace GhmGen.Backends.Gpu.Kernels;

/// <summary>Arguments of the candidate selection over one level.</summary>
internal readonly record struct CandidateLaunch(int Height, int Width, int Anchors, int Classes, float ScoreThreshold);

/// <summary>Arguments of box decoding over one level.</summary>
internal readonly record struct DecodeLaunch(int Height, int Width, int Anchors, int Classes, int Count, float ClipWidth, float ClipHeight);

/// <summary>Score threshold, sort, box decoding and NMS-mask kernels.</summary>
internal static class DetectionKernels
{
    /// <summary>|log(16 / 1000)|: mmdetection's wh_ratio_clip for delta decoding.</summary>
    public const float MaxLogRatio = 4.135166556742356f;

    /// <summary>Boxes per NMS mask word and threads per NMS group.</summary>
    public const int NmsBlock = 64;

    /// <summary>i runs over A*C*H*W logits of one image.</summary>
    public static void SelectCandidates(Index1D i, ArrayView<float> classLogits, ArrayView<ulong> keys, ArrayView<int> count, CandidateLaunch p)
    {
        float score = 1f / (1f + XMath.Exp(-classLogits[i]));
        if (!(score > p.ScoreThreshold)) return;
        int plane = p.Height * p.Width;
        int channel = i / plane, cell = i % plane;
        int a = channel / p.Classes, c = channel % p.Classes;
        uint pairId = (uint)((cell * p.Anchors + a) * p.Classes + c);
        int slot = Atomic.Add(ref count[0], 1);
        keys[slot] = ((ulong)(uint)Interop.FloatAsInt(score) << 32) | (uint.MaxValue - pairId);
    }

    /// <summary>One compare-exchange step; i runs over the (power-of-two) key count.</summary>
    public static void BitonicSortStep(Index1D i, ArrayView<ulong> keys, int k, int j)
    {
        int partner = i ^ j;
        if (partner <= i) return;
        ulong a = keys[i], b = keys[partner];
        bool descending = (i & k) == 0;
        if (descending ? a < b : a > b)
        {
            keys[i] = b;
            keys[partner] = a;
        }
    }

    /// <summary>i runs over the top Count keys (sorted descending).</summary>
    public static void DecodeBoxes(
        Index1D i, ArrayView<ulong> keys, ArrayView<float> anchors, ArrayView<float> deltas,
        ArrayView<float> boxes, ArrayView<float> scores, ArrayView<int> labels, DecodeLaunch p)
    {
        ulong key = keys[i];
        int pairId = (int)(uint.MaxValue - (uint)key);
        int anchor = pairId / p.Classes;
        int cell = anchor / p.Anchors, a = anchor % p.Anchors, plane = p.Height * p.Width;

        float ax1 = anchors[anchor * 4], ay1 = anchors[anchor * 4 + 1];
        float ax2 = anchors[anchor * 4 + 2], ay2 = anchors[anchor * 4 + 3];
        float dx = deltas[(a * 4) * plane + cell], dy = deltas[(a * 4 + 1) * plane + cell];
        float dw = XMath.Clamp(deltas[(a * 4 + 2) * plane + cell], -MaxLogRatio, MaxLogRatio);
        float dh = XMath.Clamp(deltas[(a * 4 + 3) * plane + cell], -MaxLogRatio, MaxLogRatio);

        float pw = ax2 - ax1, ph = ay2 - ay1;
        float px = (ax1 + ax2) * 0.5f, py = (ay1 + ay2) * 0.5f;
        float gw = pw * XMath.Exp(dw), gh = ph * XMath.Exp(dh);
        float gx = px + pw * dx, gy = py + ph * dy;

        boxes[i * 4] = XMath.Clamp(gx - gw * 0.5f, 0f, p.ClipWidth);
        boxes[i * 4 + 1] = XMath.Clamp(gy - gh * 0.5f, 0f, p.ClipHeight);
        boxes[i * 4 + 2] = XMath.Clamp(gx + gw * 0.5f, 0f, p.ClipWidth);
        boxes[i * 4 + 3] = XMath.Clamp(gy + gh * 0.5f, 0f, p.ClipHeight);
        scores[i] = Interop.IntAsFloat((uint)(key >> 32));
        labels[i] = pairId % p.Classes;
    }

    /// <summary>
    /// Grid (ceil(n/64) column blocks, ceil(n/64) row blocks), group 64: thread t of row block
    /// r computes the mask word of box r*64 + t against the 64 boxes of the column block.
    /// </summary>
    public static void NmsMask(ArrayView<float> boxes, ArrayView<int> labels, ArrayView<ulong> mask, int count, float iouThreshold)
    {
        var block = SharedMemory.Allocate<float>(NmsBlock * 4);
        var blockLabels = SharedMemory.Allocate<int>(NmsBlock);
        int t = Group.IdxX, columnBlock = Grid.IdxX, rowBlock = Grid.IdxY;
        int columnStart = columnBlock * NmsBlock;
        int columnSize = XMath.Min(count - columnStart, NmsBlock);
        if (t < columnSize)
        {
            for (int k = 0; k < 4; k++) block[t * 4 + k] = boxes[(columnStart + t) * 4 + k];
            blockLabels[t] = labels[columnStart + t];
        }
        Group.Barrier();

        int i = rowBlock * NmsBlock + t;
        if (i >= count) return;
        int blocks = (count + NmsBlock - 1) / NmsBlock;
        ulong bits = 0;
        if (columnBlock >= rowBlock)
        {
            float x1 = boxes[i * 4], y1 = boxes[i * 4 + 1], x2 = boxes[i * 4 + 2], y2 = boxes[i * 4 + 3];
            float area = (x2 - x1) * (y2 - y1);
            int label = labels[i];
            for (int b = columnBlock == rowBlock ? t + 1 : 0; b < columnSize; b++)
            {
                if (blockLabels[b] != label) continue;
                float bx1 = block[b * 4], by1 = block[b * 4 + 1], bx2 = block[b * 4 + 2], by2 = block[b * 4 + 3];
                float w = XMath.Max(XMath.Min(x2, bx2) - XMath.Max(x1, bx1), 0f);
                float h = XMath.Max(XMath.Min(y2, by2) - XMath.Max(y1, by1), 0f);
                float inter = w * h;
                float union = area + (bx2 - bx1) * (by2 - by1) - inter;
                if (union > 0f && inter / union > iouThreshold) bits |= 1UL << b;
            }
        }
        mask[i * blocks + columnBlock] = bits;
    }
}
