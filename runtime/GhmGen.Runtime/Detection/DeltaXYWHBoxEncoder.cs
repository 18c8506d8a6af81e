// Box-delta encoding (mmdetection's DeltaXYWHBBoxCoder.encode / bbox2delta, means 0, stds 1),
// float32 as PyTorch computes it. Shapes: anchors and gt boxes [n, 4] x1,y1,x2,y2 -> deltas [n, 4]
// (dx, dy, dw, dh). Reference tests: tests/GhmGen.Runtime.Tests/Detection/DeltaXYWHBoxEncoderTests.cs
// (docs/MODEL.md §5 example) and RetinaTargetsFixtureTests.cs (PyTorch fixture).
namespace GhmGen.Detection;

/// <summary>Encodes a ground-truth box relative to an anchor as (dx, dy, dw, dh), means 0 and stds 1 (docs/MODEL.md §5).</summary>
public static class DeltaXYWHBoxEncoder
{
    /// <summary>Deltas of <paramref name="gt"/> (x1,y1,x2,y2) relative to <paramref name="anchor"/>, written to <paramref name="deltas"/> [4].</summary>
    public static void Encode(ReadOnlySpan<float> anchor, ReadOnlySpan<float> gt, Span<float> deltas)
    {
        float px = (anchor[0] + anchor[2]) * 0.5f;
        float py = (anchor[1] + anchor[3]) * 0.5f;
        float pw = anchor[2] - anchor[0];
        float ph = anchor[3] - anchor[1];
        float gx = (gt[0] + gt[2]) * 0.5f;
        float gy = (gt[1] + gt[3]) * 0.5f;
        float gw = gt[2] - gt[0];
        float gh = gt[3] - gt[1];
        deltas[0] = (gx - px) / pw;
        deltas[1] = (gy - py) / ph;
        deltas[2] = MathF.Log(gw / pw);
        deltas[3] = MathF.Log(gh / ph);
    }

    /// <summary>Encodes row i of <paramref name="gtBoxes"/> against row i of <paramref name="anchors"/> (all [n, 4]).</summary>
    public static void Encode(ReadOnlySpan<float> anchors, ReadOnlySpan<float> gtBoxes, Span<float> deltas, int count)
    {
        if (anchors.Length < count * 4 || gtBoxes.Length < count * 4 || deltas.Length < count * 4)
            throw new ArgumentException($"Encode of {count} boxes needs [{count}, 4] anchors, gtBoxes and deltas; got {anchors.Length}, {gtBoxes.Length} and {deltas.Length} values.");
        for (int i = 0; i < count; i++)
            Encode(anchors.Slice(i * 4, 4), gtBoxes.Slice(i * 4, 4), deltas.Slice(i * 4, 4));
    }
}
