// Bilinear resize of 8-bit RGB images, bit-exact with OpenCV 4.x cv2.resize(INTER_LINEAR) on
// CV_8UC3 (the path mmcv.imresize takes), as built for x86-64 with 128-bit SIMD (baseline SSE2):
//  * source coordinate fx = (float)((dx + 0.5) * scale - 0.5) with scale = 1 / (dst / src) in double,
//    sx = floor(fx), weights saturate_cast<short>((1 - fx) * 2048) and saturate_cast<short>(fx * 2048)
//    (INTER_RESIZE_COEF_BITS = 11, round half to even); columns left of the image use sx = 0, fx = 0,
//    right of it sx = W-1, fx = 0; rows are clamped to [0, H-1] with unchanged weights.
//  * horizontal pass in int32: S[sx]*a0 + S[sx+3]*a1 (or S[sx]*2048 at the right border).
//  * vertical pass, as OpenCV's SIMD VResizeLinearVec_32s8u computes it, in int16:
//    ((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16), then (+ 2) >> 2, saturated to uint8.
//    This is not the scalar FixedPtCast (h0*b0 + h1*b1 + 2^21) >> 22 (they differ by 1 on ~1% of
//    bytes). Debian's OpenCV 4.6 (x86-64, baseline SSE2) gives the SIMD result on every element,
//    row tails included (checked on row widths 3 to 384), so that formula is used throughout.
//  * an exact 2x downscale in both axes is turned into INTER_AREA by OpenCV: (a+b+c+d+2) >> 2.
// Shapes: source H x W x 3 bytes -> destination h x w x 3 bytes.
// Reference test: tests/GhmGen.Runtime.Tests/Imaging/ResizeTests.cs against fixtures that
// tools/reference/imaging.py made with cv2.resize.
using System.Buffers.Binary;
using System.Runtime.Intrinsics;

namespace GhmGen.Imaging;

/// <summary>OpenCV-exact bilinear (INTER_LINEAR) resizing of <see cref="RgbImage"/>s.</summary>
public static class BilinearResize
{
    private const int CoefBits = 11;
    private const int CoefScale = 1 << CoefBits;
    private const int Channels = 3;
    private const double CDoubleEpsilon = 2.220446049250313e-16; // C's DBL_EPSILON, not .NET's double.Epsilon

    /// <summary>Resizes <paramref name="source"/> to exactly <paramref name="width"/> x <paramref name="height"/>.</summary>
    public static RgbImage Resize(RgbImage source, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"resize target must be positive, got {width}x{height}");
        if ((long)width * height > ImageDecoder.MaxPixels)
            throw new ArgumentOutOfRangeException(nameof(width), $"resize target {width}x{height} exceeds {ImageDecoder.MaxPixels} pixels");
        var output = new byte[(long)width * height * Channels];
        if (width == source.Width && height == source.Height)
        {
            Buffer.BlockCopy(source.Rgb, 0, output, 0, output.Length);
            return new RgbImage(width, height, output);
        }

        double inverseScaleX = (double)width / source.Width, inverseScaleY = (double)height / source.Height;
        double scaleX = 1.0 / inverseScaleX, scaleY = 1.0 / inverseScaleY;
        int integerScaleX = SaturateRoundToInt(scaleX), integerScaleY = SaturateRoundToInt(scaleY);
        bool isAreaFast = Math.Abs(scaleX - integerScaleX) < CDoubleEpsilon
            && Math.Abs(scaleY - integerScaleY) < CDoubleEpsilon;
        if (isAreaFast && integerScaleX == 2 && integerScaleY == 2)
            HalveByArea(source, output, width, height);
        else
            ResizeLinear(source, output, width, height, scaleX, scaleY);
        return new RgbImage(width, height, output);
    }

    private static void HalveByArea(RgbImage source, byte[] output, int width, int height)
    {
        byte[] src = source.Rgb;
        int srcStride = source.Width * Channels;
        for (int dy = 0; dy < height; dy++)
        {
            int row0 = 2 * dy * srcStride, row1 = row0 + srcStride, outRow = dy * width * Channels;
            for (int dx = 0; dx < width; dx++)
            {
                int s = 2 * dx * Channels;
                for (int c = 0; c < Channels; c++)
                {
                    int sum = src[row0 + s + c] + src[row0 + s + Channels + c] + src[row1 + s + c] + src[row1 + s + Channels + c];
                    output[outRow + dx * Channels + c] = (byte)((sum + 2) >> 2);
                }
            }
        }
    }

    private static void ResizeLinear(RgbImage source, byte[] output, int width, int height, double scaleX, double scaleY)
    {
        int srcWidth = source.Width, srcHeight = source.Height;
        // Column tables: source pixel, the two weights, and the first column at the right border.
        var columnOffset = new int[width];
        var columnWeights = new short[width * 2];
        int borderStart = width;
        for (int dx = 0; dx < width; dx++)
        {
            float fx = (float)((dx + 0.5) * scaleX - 0.5);
            int sx = (int)MathF.Floor(fx);
            fx -= sx;
            if (sx < 0) { fx = 0; sx = 0; }
            if (sx + 1 >= srcWidth)
            {
                borderStart = Math.Min(borderStart, dx);
                if (sx >= srcWidth - 1) { fx = 0; sx = srcWidth - 1; }
            }
            columnOffset[dx] = sx * Channels;
            columnWeights[dx * 2] = SaturateToShort((1f - fx) * CoefScale);
            columnWeights[dx * 2 + 1] = SaturateToShort(fx * CoefScale);
        }

        int rowWidth = width * Channels;
        var upper = new int[rowWidth];
        var lower = new int[rowWidth];
        int upperRow = -1, lowerRow = -1;
        byte[] src = source.Rgb;
        int srcStride = srcWidth * Channels;

        for (int dy = 0; dy < height; dy++)
        {
            float fy = (float)((dy + 0.5) * scaleY - 0.5);
            int sy = (int)MathF.Floor(fy);
            fy -= sy;
            int beta0 = SaturateToShort((1f - fy) * CoefScale);
            int beta1 = SaturateToShort(fy * CoefScale);
            int row0 = Math.Clamp(sy, 0, srcHeight - 1), row1 = Math.Clamp(sy + 1, 0, srcHeight - 1);

            if (row0 != upperRow)
            {
                if (row0 == lowerRow) { (upper, lower) = (lower, upper); (upperRow, lowerRow) = (lowerRow, upperRow); }
                else { HorizontalPass(src, row0 * srcStride, upper, columnOffset, columnWeights, borderStart); upperRow = row0; }
            }
            if (row1 != lowerRow)
            {
                HorizontalPass(src, row1 * srcStride, lower, columnOffset, columnWeights, borderStart);
                lowerRow = row1;
            }

            VerticalPass(upper, lower, beta0, beta1, output.AsSpan(dy * rowWidth, rowWidth));
        }
    }

    // int32 >> 4, saturating pack to int16, mulhi (>> 16), saturating add, rounding shift by 2,
    // saturating pack to uint8: the same integer steps eight lanes at a time, then the tail.
    private static void VerticalPass(int[] upper, int[] lower, int beta0, int beta1, Span<byte> output)
    {
        int x = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var b0 = Vector256.Create(beta0);
            var b1 = Vector256.Create(beta1);
            var int16Min = Vector256.Create((int)short.MinValue);
            var int16Max = Vector256.Create((int)short.MaxValue);
            var two = Vector256.Create(2);
            var byteMax = Vector256.Create(255);
            for (; x <= upper.Length - Vector256<int>.Count; x += Vector256<int>.Count)
            {
                Vector256<int> s0 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(Vector256.Create(upper, x), 4), int16Min), int16Max);
                Vector256<int> s1 = Vector256.Min(Vector256.Max(Vector256.ShiftRightArithmetic(Vector256.Create(lower, x), 4), int16Min), int16Max);
                Vector256<int> sum = Vector256.ShiftRightArithmetic(s0 * b0, 16) + Vector256.ShiftRightArithmetic(s1 * b1, 16);
                sum = Vector256.Min(Vector256.Max(sum, int16Min), int16Max);
                Vector256<int> value = Vector256.ShiftRightArithmetic(Vector256.Min(sum + two, int16Max), 2);
                value = Vector256.Min(Vector256.Max(value, Vector256<int>.Zero), byteMax);
                Vector128<byte> packed = Vector128.Narrow(Vector128.Narrow(value.GetLower(), value.GetUpper()).AsUInt16(), Vector128<ushort>.Zero);
                BinaryPrimitives.WriteUInt64LittleEndian(output[x..], packed.AsUInt64().GetElement(0));
            }
        }
        for (; x < upper.Length; x++)
        {
            int s0 = SaturateToInt16(upper[x] >> 4), s1 = SaturateToInt16(lower[x] >> 4);
            int sum = SaturateToInt16(((s0 * beta0) >> 16) + ((s1 * beta1) >> 16));
            int value = SaturateToInt16(sum + 2) >> 2;
            output[x] = (byte)Math.Clamp(value, 0, 255);
        }
    }

    private static void HorizontalPass(byte[] src, int rowStart, int[] destination, int[] columnOffset, short[] columnWeights, int borderStart)
    {
        int width = columnOffset.Length;
        for (int dx = 0; dx < borderStart; dx++)
        {
            int s = rowStart + columnOffset[dx];
            int a0 = columnWeights[dx * 2], a1 = columnWeights[dx * 2 + 1];
            int d = dx * Channels;
            destination[d] = src[s] * a0 + src[s + Channels] * a1;
            destination[d + 1] = src[s + 1] * a0 + src[s + Channels + 1] * a1;
            destination[d + 2] = src[s + 2] * a0 + src[s + Channels + 2] * a1;
        }
        for (int dx = borderStart; dx < width; dx++)
        {
            int s = rowStart + columnOffset[dx];
            int d = dx * Channels;
            destination[d] = src[s] * CoefScale;
            destination[d + 1] = src[s + 1] * CoefScale;
            destination[d + 2] = src[s + 2] * CoefScale;
        }
    }

    private static short SaturateToShort(float value)
    {
        int rounded = (int)MathF.Round(value, MidpointRounding.ToEven);
        return (short)Math.Clamp(rounded, short.MinValue, short.MaxValue);
    }

    private static int SaturateToInt16(int value) => Math.Clamp(value, short.MinValue, short.MaxValue);

    private static int SaturateRoundToInt(double value)
    {
        double rounded = Math.Round(value, MidpointRounding.ToEven);
        return rounded >= int.MaxValue ? int.MaxValue : rounded <= int.MinValue ? int.MinValue : (int)rounded;
    }
}
