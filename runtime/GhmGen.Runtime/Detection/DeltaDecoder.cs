// Box decoding of mmdetection v2 DeltaXYWHBBoxCoder (means 0, stds 1), float32 like PyTorch:
// px = (x1 + x2) * 0.5, pw = x2 - x1 (no +1); dw, dh clamped to +/- |log(16/1000)|;
// gx = px + pw * dx, gw = pw * exp(dw); box = [gx - gw*0.5, gy - gh*0.5, gx + gw*0.5, gy + gh*0.5],
// then clipped to x in [0, W], y in [0, H] of the resized, unpadded image.
// Shapes: anchors [n, 4], deltas [n, 4] (dx, dy, dw, dh) -> boxes [n, 4].
// Reference test: tests/GhmGen.Runtime.Tests/Detection/DeltaDecoderTests.cs (hand values) and the
// PyTorch post-processing fixtures in PostProcessorTests.
namespace GhmGen.Detection;

/// <summary>Turns regression deltas relative to anchors into boxes (mmdetection delta2bbox).</summary>
public static class DeltaDecoder
{
    /// <summary>|log(16/1000)|: the largest |dw| or |dh| used, as float32 (4.135166556742356).</summary>
    public const float MaxLogRatio = 4.135166556742356f;

    /// <summary>Decodes one box and clips it to [0, clipWidth] x [0, clipHeight].</summary>
    public static (float X1, float Y1, float X2, float Y2) Decode(
        float anchorX1, float anchorY1, float anchorX2, float anchorY2,
        float dx, float dy, float dw, float dh, float clipWidth, float clipHeight)
    {
        float px = (anchorX1 + anchorX2) * 0.5f;
        float py = (anchorY1 + anchorY2) * 0.5f;
        float pw = anchorX2 - anchorX1;
        float ph = anchorY2 - anchorY1;
        dw = Math.Clamp(dw, -MaxLogRatio, MaxLogRatio);
        dh = Math.Clamp(dh, -MaxLogRatio, MaxLogRatio);
        float gw = pw * MathF.Exp(dw);
        float gh = ph * MathF.Exp(dh);
        float gx = px + pw * dx;
        float gy = py + ph * dy;
        float x1 = gx - gw * 0.5f, y1 = gy - gh * 0.5f, x2 = gx + gw * 0.5f, y2 = gy + gh * 0.5f;
        return (Clip(x1, clipWidth), Clip(y1, clipHeight), Clip(x2, clipWidth), Clip(y2, clipHeight));
    }

    /// <summary>Decodes n boxes: <paramref name="anchors"/> and <paramref name="deltas"/> are [n, 4], <paramref name="boxes"/> receives [n, 4].</summary>
    public static void Decode(ReadOnlySpan<float> anchors, ReadOnlySpan<float> deltas, Span<float> boxes, float clipWidth, float clipHeight)
    {
        if (anchors.Length % 4 != 0 || deltas.Length != anchors.Length || boxes.Length < anchors.Length)
            throw new ArgumentException($"anchors ({anchors.Length}), deltas ({deltas.Length}) and boxes ({boxes.Length}) must be [n, 4] of the same n");
        for (int i = 0; i < anchors.Length; i += 4)
        {
            var (x1, y1, x2, y2) = Decode(anchors[i], anchors[i + 1], anchors[i + 2], anchors[i + 3],
                deltas[i], deltas[i + 1], deltas[i + 2], deltas[i + 3], clipWidth, clipHeight);
            boxes[i] = x1; boxes[i + 1] = y1; boxes[i + 2] = x2; boxes[i + 3] = y2;
        }
    }

    // torch.clamp(min=0, max=limit): NaN stays NaN.
    private static float Clip(float value, float limit) => value < 0f ? 0f : value > limit ? limit : value;
}
