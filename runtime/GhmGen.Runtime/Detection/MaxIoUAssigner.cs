// MaxIoUAssigner: assigns each anchor of one image to a ground-truth box, as mmdetection's
// MaxIoUAssigner (pos 0.5, neg 0.4, min_pos_iou 0, gt_max_assign_all, match_low_quality).
// Shapes: anchors [numAnchors, 4], gt boxes [numGt, 4], both x1,y1,x2,y2 float32.
// Reference tests: tests/GhmGen.Runtime.Tests/Detection/MaxIoUAssignerTests.cs (hand-made cases)
// and RetinaTargetsFixtureTests.cs (tools/reference/ghm_losses.py, PyTorch).
namespace GhmGen.Detection;

/// <summary>
/// Assigns anchors to ground-truth boxes by IoU, exactly as mmdetection's MaxIoUAssigner
/// (docs/MODEL.md §5). It holds only its thresholds, so one instance may serve any number of
/// threads at once.
/// </summary>
public sealed class MaxIoUAssigner
{
    /// <summary>Value of <see cref="Assign(ReadOnlySpan{float}, ReadOnlySpan{float})"/>'s result for an anchor that is neither positive nor negative.</summary>
    public const int Ignored = -1;

    /// <summary>Value of <see cref="Assign(ReadOnlySpan{float}, ReadOnlySpan{float})"/>'s result for a negative (background) anchor.</summary>
    public const int Negative = 0;

    /// <summary>Creates an assigner with RetinaNet's thresholds unless told otherwise.</summary>
    /// <param name="positiveIouThreshold">IoU at or above which the best-matching gt is assigned (0.5).</param>
    /// <param name="negativeIouThreshold">Max IoU below which an anchor is negative (0.4).</param>
    /// <param name="minPositiveIou">A gt takes its best anchors in the low-quality pass only if its max IoU is at least this (0).</param>
    public MaxIoUAssigner(float positiveIouThreshold = 0.5f, float negativeIouThreshold = 0.4f, float minPositiveIou = 0f)
    {
        if (!(negativeIouThreshold <= positiveIouThreshold))
            throw new ArgumentException($"negativeIouThreshold ({negativeIouThreshold}) must not exceed positiveIouThreshold ({positiveIouThreshold}).", nameof(negativeIouThreshold));
        PositiveIouThreshold = positiveIouThreshold;
        NegativeIouThreshold = negativeIouThreshold;
        MinPositiveIou = minPositiveIou;
    }

    /// <summary>IoU at or above which an anchor is positive.</summary>
    public float PositiveIouThreshold { get; }

    /// <summary>Max IoU below which an anchor is negative.</summary>
    public float NegativeIouThreshold { get; }

    /// <summary>Minimum max-IoU of a gt for its low-quality matches.</summary>
    public float MinPositiveIou { get; }

    /// <summary>
    /// IoU of two x1,y1,x2,y2 boxes as mmdetection's bbox_overlaps computes it in float32:
    /// intersection / max(area_a + area_b - intersection, 1e-6), no +1.
    /// </summary>
    public static float Iou(float ax1, float ay1, float ax2, float ay2, float bx1, float by1, float bx2, float by2)
    {
        float w = MathF.Max(MathF.Min(ax2, bx2) - MathF.Max(ax1, bx1), 0f);
        float h = MathF.Max(MathF.Min(ay2, by2) - MathF.Max(ay1, by1), 0f);
        float overlap = w * h;
        float areaA = (ax2 - ax1) * (ay2 - ay1);
        float areaB = (bx2 - bx1) * (by2 - by1);
        float union = MathF.Max(areaA + areaB - overlap, 1e-6f);
        return overlap / union;
    }

    /// <summary>
    /// Assigns every anchor: result[i] is <see cref="Ignored"/> (-1), <see cref="Negative"/> (0)
    /// or k + 1 for gt box k (mmdetection's <c>assigned_gt_inds</c>).
    /// </summary>
    /// <param name="anchors">[numAnchors, 4] x1,y1,x2,y2.</param>
    /// <param name="gtBoxes">[numGt, 4] x1,y1,x2,y2; empty makes every anchor negative.</param>
    public int[] Assign(ReadOnlySpan<float> anchors, ReadOnlySpan<float> gtBoxes)
    {
        var assigned = new int[anchors.Length / 4];
        Assign(anchors, gtBoxes, assigned);
        return assigned;
    }

    /// <summary>As <see cref="Assign(ReadOnlySpan{float}, ReadOnlySpan{float})"/>, writing into <paramref name="assignedGt"/> [numAnchors].</summary>
    public void Assign(ReadOnlySpan<float> anchors, ReadOnlySpan<float> gtBoxes, Span<int> assignedGt)
    {
        if (anchors.Length % 4 != 0)
            throw new ArgumentException($"anchors has {anchors.Length} values, not a multiple of 4 ([numAnchors, 4]).", nameof(anchors));
        if (gtBoxes.Length % 4 != 0)
            throw new ArgumentException($"gtBoxes has {gtBoxes.Length} values, not a multiple of 4 ([numGt, 4]).", nameof(gtBoxes));
        int numAnchors = anchors.Length / 4, numGt = gtBoxes.Length / 4;
        if (assignedGt.Length != numAnchors)
            throw new ArgumentException($"assignedGt has {assignedGt.Length} entries for {numAnchors} anchors.", nameof(assignedGt));
        if (numGt == 0)
        {
            assignedGt.Fill(Negative);
            return;
        }

        // Pass 1: per-anchor max IoU and its first argmax; per-gt max IoU.
        Span<float> gtMax = numGt <= 256 ? stackalloc float[numGt] : new float[numGt];
        gtMax.Fill(float.NegativeInfinity);
        for (int i = 0; i < numAnchors; i++)
        {
            ReadOnlySpan<float> a = anchors.Slice(i * 4, 4);
            float best = float.NegativeInfinity;
            int bestGt = 0;
            for (int g = 0; g < numGt; g++)
            {
                ReadOnlySpan<float> b = gtBoxes.Slice(g * 4, 4);
                float iou = Iou(b[0], b[1], b[2], b[3], a[0], a[1], a[2], a[3]);
                if (iou > best) { best = iou; bestGt = g; }
                if (iou > gtMax[g]) gtMax[g] = iou;
            }
            int result = Ignored;
            if (best >= 0f && best < NegativeIouThreshold) result = Negative;
            if (best >= PositiveIouThreshold) result = bestGt + 1;
            assignedGt[i] = result;
        }

        // Pass 2 (low-quality matches): for each gt in index order, every anchor whose IoU equals
        // that gt's max IoU becomes positive for it, later gts overwriting earlier ones.
        for (int i = 0; i < numAnchors; i++)
        {
            ReadOnlySpan<float> a = anchors.Slice(i * 4, 4);
            for (int g = 0; g < numGt; g++)
            {
                if (!(gtMax[g] >= MinPositiveIou)) continue;
                ReadOnlySpan<float> b = gtBoxes.Slice(g * 4, 4);
                if (Iou(b[0], b[1], b[2], b[3], a[0], a[1], a[2], a[3]) == gtMax[g]) assignedGt[i] = g + 1;
            }
        }
    }
}
