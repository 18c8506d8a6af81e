// mmdetection's test-time image pipeline (docs/MODEL.md §7): keep-ratio resize to fit 1333x800
// (bilinear, OpenCV-exact), per-channel normalisation on the 0-255 scale, zero padding at the
// bottom/right to a multiple of 32, laid out as a float32 NCHW tensor [1, 3, Hp, Wp].
// Reference test: tests/GhmGen.Runtime.Tests/Imaging/PreprocessorTests.cs (fixtures from
// tools/reference/imaging.py, which uses mmcv's formulas with cv2).
namespace GhmGen.Imaging;

/// <summary>The network input made from one image, plus the geometry needed to map boxes back.</summary>
/// <param name="Tensor">Normalised pixels, NCHW [1, 3, PaddedHeight, PaddedWidth], zeros in the padding.</param>
/// <param name="PaddedHeight">Tensor height, a multiple of the pad divisor.</param>
/// <param name="PaddedWidth">Tensor width, a multiple of the pad divisor.</param>
/// <param name="ResizedHeight">Height of the resized image inside the tensor.</param>
/// <param name="ResizedWidth">Width of the resized image inside the tensor.</param>
/// <param name="OriginalHeight">Height of the decoded image.</param>
/// <param name="OriginalWidth">Width of the decoded image.</param>
/// <param name="ScaleX">ResizedWidth / OriginalWidth (float32, as mmdetection's scale_factor).</param>
/// <param name="ScaleY">ResizedHeight / OriginalHeight.</param>
public sealed record PreprocessedImage(
    float[] Tensor, int PaddedHeight, int PaddedWidth, int ResizedHeight, int ResizedWidth,
    int OriginalHeight, int OriginalWidth, float ScaleX, float ScaleY);

/// <summary>Settings of the test-time pipeline; the defaults are mmdetection's RetinaNet ones.</summary>
/// <param name="LongEdge">Largest allowed long side after resizing (1333).</param>
/// <param name="ShortEdge">Largest allowed short side after resizing (800).</param>
/// <param name="PadDivisor">Tensor height and width are padded up to a multiple of this (32).</param>
public sealed record PreprocessOptions(int LongEdge = 1333, int ShortEdge = 800, int PadDivisor = 32)
{
    /// <summary>mmdetection's defaults: fit 1333x800, pad to 32.</summary>
    public static PreprocessOptions Default { get; } = new();
}

/// <summary>Resizes, normalises and pads an <see cref="RgbImage"/> into the detector's input tensor.</summary>
public static class Preprocessor
{
    /// <summary>Per-channel mean, RGB order, 0-255 scale (ImageNet).</summary>
    public static ReadOnlySpan<float> Mean => [123.675f, 116.28f, 103.53f];

    /// <summary>Per-channel standard deviation, RGB order, 0-255 scale.</summary>
    public static ReadOnlySpan<float> Std => [58.395f, 57.12f, 57.375f];

    private static readonly double[] StdAsDouble = [58.395, 57.12, 57.375];

    // (float)((v - mean) * (1 / std)) for each channel and byte value v, channel-major.
    private static readonly float[] NormalizedValues = CreateNormalizedValues();

    private static float[] CreateNormalizedValues()
    {
        var values = new float[3 * 256];
        for (int c = 0; c < 3; c++)
        {
            float mean = Mean[c];
            double inverseStd = 1.0 / StdAsDouble[c];
            for (int v = 0; v < 256; v++) values[c * 256 + v] = (float)((v - mean) * inverseStd);
        }
        return values;
    }

    /// <summary>Runs resize, normalise and pad with <paramref name="options"/> (default: 1333x800, pad 32).</summary>
    public static PreprocessedImage Run(RgbImage image, PreprocessOptions? options = null)
    {
        (int paddedHeight, int paddedWidth) = PaddedSize(image, options);
        var tensor = new float[checked(3L * paddedHeight * paddedWidth)];
        return RunInto(image, tensor, options) with { Tensor = tensor };
    }

    /// <summary>The tensor's height and width for <paramref name="image"/> (its resized size padded up).</summary>
    public static (int PaddedHeight, int PaddedWidth) PaddedSize(RgbImage image, PreprocessOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        options ??= PreprocessOptions.Default;
        if (options.PadDivisor <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"pad divisor must be positive, got {options.PadDivisor}");
        var (width, height) = KeepRatioSize(image.Width, image.Height, options.LongEdge, options.ShortEdge);
        return (RoundUp(height, options.PadDivisor), RoundUp(width, options.PadDivisor));
    }

    /// <summary>
    /// As <see cref="Run(RgbImage, PreprocessOptions?)"/>, writing the tensor into the first
    /// 3 x PaddedHeight x PaddedWidth floats of <paramref name="destination"/> (padding included, see
    /// <see cref="PaddedSize"/>) instead of a new array, so that a caller can reuse one buffer for many
    /// images; the returned record's <see cref="PreprocessedImage.Tensor"/> is empty. An image already
    /// of its target size is read as it is (no resized copy).
    /// </summary>
    public static PreprocessedImage RunInto(RgbImage image, Span<float> destination, PreprocessOptions? options = null)
    {
        (int paddedHeight, int paddedWidth) = PaddedSize(image, options);
        options ??= PreprocessOptions.Default;
        var (width, height) = KeepRatioSize(image.Width, image.Height, options.LongEdge, options.ShortEdge);
        long length = 3L * paddedHeight * paddedWidth;
        if (destination.Length < length)
            throw new ArgumentException($"the tensor of a {width}x{height} image padded to {paddedWidth}x{paddedHeight} needs {length} floats; the buffer holds {destination.Length}", nameof(destination));
        RgbImage resized = width == image.Width && height == image.Height ? image : BilinearResize.Resize(image, width, height);
        Normalize(resized, paddedHeight, paddedWidth, destination[..(int)length]);
        return new PreprocessedImage([], paddedHeight, paddedWidth, height, width, image.Height, image.Width,
            (float)((double)width / image.Width), (float)((double)height / image.Height));
    }

    /// <summary>
    /// mmcv's keep-ratio size: s = min(longEdge / max(h, w), shortEdge / min(h, w)), new = int(old * s + 0.5).
    /// </summary>
    public static (int Width, int Height) KeepRatioSize(int width, int height, int longEdge = 1333, int shortEdge = 800)
    {
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"image size must be positive, got {width}x{height}");
        if (longEdge <= 0 || shortEdge <= 0)
            throw new ArgumentOutOfRangeException(nameof(longEdge), $"target edges must be positive, got {longEdge}, {shortEdge}");
        int maxLong = Math.Max(longEdge, shortEdge), maxShort = Math.Min(longEdge, shortEdge);
        double scale = Math.Min((double)maxLong / Math.Max(height, width), (double)maxShort / Math.Min(height, width));
        int newWidth = Math.Max(1, (int)(width * scale + 0.5)), newHeight = Math.Max(1, (int)(height * scale + 0.5));
        return (newWidth, newHeight);
    }

    /// <summary>(pixel - mean) / std per RGB channel into a zero-padded NCHW [1, 3, paddedHeight, paddedWidth] tensor.</summary>
    public static float[] Normalize(RgbImage image, int paddedHeight, int paddedWidth)
    {
        ArgumentNullException.ThrowIfNull(image);
        var tensor = new float[checked((long)paddedHeight * paddedWidth * 3)];
        Normalize(image, paddedHeight, paddedWidth, tensor);
        return tensor;
    }

    /// <summary>
    /// The same into <paramref name="tensor"/>, exactly 3 x <paramref name="paddedHeight"/> x
    /// <paramref name="paddedWidth"/> floats, every one written (the padding with zeros).
    /// </summary>
    public static void Normalize(RgbImage image, int paddedHeight, int paddedWidth, Span<float> tensor)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (paddedHeight < image.Height || paddedWidth < image.Width)
            throw new ArgumentOutOfRangeException(nameof(paddedHeight),
                $"padded size {paddedWidth}x{paddedHeight} is smaller than the image {image.Width}x{image.Height}");
        long plane = (long)paddedHeight * paddedWidth;
        if (tensor.Length != plane * 3)
            throw new ArgumentException($"a 3x{paddedHeight}x{paddedWidth} tensor has {plane * 3} floats, not {tensor.Length}", nameof(tensor));
        byte[] rgb = image.Rgb;
        for (int c = 0; c < 3; c++)
        {
            // mmcv.imnormalize_: cv2.subtract(img, mean) with the float64 mean converted to the
            // float32 image's depth (a float32 subtract), then cv2.multiply(img, 1 / std) with the
            // float64 scalar, which OpenCV evaluates in double and rounds once to float32. Checked
            // against cv2 on every uint8 value of the three channels (a float32 multiply by
            // (float)(1 / std) differs in the last bit on 298 of the 768).
            // A byte has 256 values: look each one up in the channel's table of those results.
            ReadOnlySpan<float> table = NormalizedValues.AsSpan(c * 256, 256);
            long planeStart = c * plane;
            for (int y = 0; y < image.Height; y++)
            {
                int source = y * image.Width * 3 + c;
                long target = planeStart + (long)y * paddedWidth;
                Span<float> row = tensor.Slice((int)target, image.Width);
                for (int x = 0; x < row.Length; x++, source += 3)
                    row[x] = table[rgb[source]];
                tensor.Slice((int)target + image.Width, paddedWidth - image.Width).Clear();
            }
            tensor.Slice((int)(planeStart + (long)image.Height * paddedWidth), (paddedHeight - image.Height) * paddedWidth).Clear();
        }
    }

    private static int RoundUp(int value, int divisor) => checked((value + divisor - 1) / divisor * divisor);
}
