namespace GhmGen.Imaging;

/// <summary>
/// An 8-bit RGB image, rows top to bottom, pixels interleaved R,G,B (HWC). It wraps its pixel
/// array without copying: readers on several threads may share an image (detection only reads
/// it), but the pixels must not change while one of them runs.
/// </summary>
public sealed class RgbImage
{
    /// <summary>Wraps existing pixel bytes (not copied); <paramref name="rgb"/> must hold exactly width*height*3 bytes.</summary>
    /// <param name="width">Width in pixels, positive.</param>
    /// <param name="height">Height in pixels, positive.</param>
    /// <param name="rgb">The pixels, <c>(y*width + x)*3 + channel</c>, channel 0 = R.</param>
    /// <exception cref="ArgumentNullException"><paramref name="rgb"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A side is not positive.</exception>
    /// <exception cref="ArgumentException"><paramref name="rgb"/> has another length than width*height*3.</exception>
    public RgbImage(int width, int height, byte[] rgb)
    {
        ArgumentNullException.ThrowIfNull(rgb);
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"image size must be positive, got {width}x{height}");
        if ((long)width * height * 3 != rgb.LongLength)
            throw new ArgumentException($"pixel buffer holds {rgb.LongLength} bytes, a {width}x{height} RGB image needs {(long)width * height * 3}", nameof(rgb));
        Width = width;
        Height = height;
        Rgb = rgb;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>Pixels, (y*Width + x)*3 + channel, channel 0 = R.</summary>
    public byte[] Rgb { get; }
}
