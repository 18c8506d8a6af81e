namespace GhmGen.Imaging;

/// <summary>An 8-bit RGB image, rows top to bottom, pixels interleaved R,G,B (HWC).</summary>
public sealed class RgbImage
{
    /// <summary>Wraps existing pixel bytes; <paramref name="rgb"/> must hold exactly width*height*3 bytes.</summary>
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
