// RetinaNet anchors as mmdetection v2 AnchorGenerator makes them (docs/MODEL.md §5), in float32:
// per level, base size = stride, scales 4 * 2^(i/3), ratios r = h/w in (0.5, 1, 2) with
// h_ratio = sqrt(r), w_ratio = 1/h_ratio; base anchor a = ratio_idx*3 + scale_idx is
// [-w/2, -h/2, w/2, h/2]; cell (y, x) shifts it by (x*stride, y*stride); anchor index (y*W + x)*9 + a.
// Output layout: [num_anchors, 4] as x1, y1, x2, y2. Reference test:
// tests/GhmGen.Runtime.Tests/Detection/AnchorGeneratorTests.cs.
namespace GhmGen.Detection;

/// <summary>Generates the 9 anchors per feature-map cell on the five RetinaNet levels P3-P7.</summary>
public static class AnchorGenerator
{
    /// <summary>Anchors per cell: 3 ratios x 3 scales.</summary>
    public const int AnchorsPerCell = 9;

    /// <summary>Number of pyramid levels (P3..P7).</summary>
    public const int LevelCount = 5;

    /// <summary>Level strides P3..P7; also the base anchor sizes.</summary>
    public static ReadOnlySpan<int> Strides => [8, 16, 32, 64, 128];

    /// <summary>Height/width ratios, ratio-major order.</summary>
    public static ReadOnlySpan<float> Ratios => [0.5f, 1.0f, 2.0f];

    /// <summary>octave_base_scale = 4.</summary>
    public const float OctaveBaseScale = 4f;

    /// <summary>scales_per_octave = 3.</summary>
    public const int ScalesPerOctave = 3;

    /// <summary>The 9 base anchors of one level, [9, 4] as x1,y1,x2,y2, centred on (0, 0).</summary>
    public static float[] BaseAnchors(int stride) => BaseAnchors(stride, OctaveBaseScale, ScalesPerOctave, Ratios);

    /// <summary>
    /// The base anchors of one level for any anchor settings, [ratios.Length * scalesPerOctave, 4] as
    /// x1,y1,x2,y2 centred on (0, 0), ratio-major; scale s is octaveBaseScale * 2^(s/scalesPerOctave).
    /// </summary>
    public static float[] BaseAnchors(int stride, float octaveBaseScale, int scalesPerOctave, ReadOnlySpan<float> ratios)
    {
        if (stride <= 0)
            throw new ArgumentOutOfRangeException(nameof(stride), $"stride must be positive, got {stride}");
        if (scalesPerOctave <= 0 || ratios.Length == 0 || !(octaveBaseScale > 0f))
            throw new ArgumentOutOfRangeException(nameof(scalesPerOctave), $"anchor settings need a positive base scale, scales and ratios, got {octaveBaseScale}, {scalesPerOctave}, {ratios.Length}");
        var anchors = new float[ratios.Length * scalesPerOctave * 4];
        float size = stride;
        for (int r = 0; r < ratios.Length; r++)
        {
            // torch: h_ratios = sqrt(ratios); w_ratios = 1 / h_ratios (float32)
            float heightRatio = MathF.Sqrt(ratios[r]);
            float widthRatio = 1f / heightRatio;
            for (int s = 0; s < scalesPerOctave; s++)
            {
                float scale = (float)Math.Pow(2.0, (double)s / scalesPerOctave) * octaveBaseScale;
                float w = size * widthRatio * scale;
                float h = size * heightRatio * scale;
                int a = r * scalesPerOctave + s;
                anchors[a * 4 + 0] = -0.5f * w;
                anchors[a * 4 + 1] = -0.5f * h;
                anchors[a * 4 + 2] = 0.5f * w;
                anchors[a * 4 + 3] = 0.5f * h;
            }
        }
        return anchors;
    }

    /// <summary>All anchors of one level with a feature map of <paramref name="height"/> x <paramref name="width"/>, [H*W*9, 4].</summary>
    public static float[] LevelAnchors(int stride, int height, int width) => LevelAnchors(stride, height, width, BaseAnchors(stride));

    // The base anchors [AnchorsPerCell, 4] shifted to every cell, cell-major.
    private static float[] LevelAnchors(int stride, int height, int width, float[] baseAnchors)
    {
        if (height < 0 || width < 0)
            throw new ArgumentOutOfRangeException(nameof(height), $"feature size must not be negative, got {height}x{width}");
        var anchors = new float[checked((long)height * width * AnchorsPerCell * 4)];
        int i = 0;
        for (int y = 0; y < height; y++)
        {
            float shiftY = (float)y * stride;
            for (int x = 0; x < width; x++)
            {
                float shiftX = (float)x * stride;
                for (int a = 0; a < AnchorsPerCell; a++)
                {
                    anchors[i++] = baseAnchors[a * 4 + 0] + shiftX;
                    anchors[i++] = baseAnchors[a * 4 + 1] + shiftY;
                    anchors[i++] = baseAnchors[a * 4 + 2] + shiftX;
                    anchors[i++] = baseAnchors[a * 4 + 3] + shiftY;
                }
            }
        }
        return anchors;
    }

    /// <summary>Anchors of all five levels concatenated P3..P7, [sum(H*W*9), 4].</summary>
    public static float[] AllAnchors(ReadOnlySpan<FeatureSize> levels) => AllAnchors(levels, null);

    /// <summary>
    /// Anchors of all five levels concatenated P3..P7, [sum(H*W*9), 4], with other anchor settings
    /// of 9 anchors per cell (e.g. a smaller octave base scale for small images); null: RetinaNet's.
    /// </summary>
    public static float[] AllAnchors(ReadOnlySpan<FeatureSize> levels, RetinaAnchors? settings)
    {
        if (settings is not null && settings.AnchorsPerCell != AnchorsPerCell)
            throw new ArgumentException($"the anchor settings give {settings.AnchorsPerCell} anchors per cell; P3..P7 anchors here have {AnchorsPerCell}", nameof(settings));
        if (levels.Length != LevelCount)
            throw new ArgumentException($"expected {LevelCount} feature sizes, got {levels.Length}", nameof(levels));
        long total = 0;
        foreach (var level in levels) total += (long)level.Height * level.Width * AnchorsPerCell * 4;
        var all = new float[checked(total)];
        int offset = 0;
        for (int l = 0; l < LevelCount; l++)
        {
            float[] level = LevelAnchors(Strides[l], levels[l].Height, levels[l].Width, settings?.BaseAnchors(Strides[l]) ?? BaseAnchors(Strides[l]));
            level.CopyTo(all, offset);
            offset += level.Length;
        }
        return all;
    }

    /// <summary>
    /// Feature sizes of P3..P7 for a padded input: P3-P5 follow the backbone's stride-2 convs
    /// (pad 1, kernel 3, or the 7x7/2 stem and 3x3/2 max-pool), P6 and P7 are 3x3/2 pad 1 convs:
    /// floor((n + 2 - 3) / 2) + 1 each.
    /// </summary>
    public static FeatureSize[] FeatureSizes(int paddedHeight, int paddedWidth)
    {
        if (paddedHeight <= 0 || paddedWidth <= 0)
            throw new ArgumentOutOfRangeException(nameof(paddedHeight), $"input size must be positive, got {paddedHeight}x{paddedWidth}");
        int h = paddedHeight, w = paddedWidth;
        // ResNet stem: conv 7x7/2 pad 3, max-pool 3x3/2 pad 1; then layer2..4 each 3x3/2 pad 1.
        h = ConvOut(h, 7, 2, 3); w = ConvOut(w, 7, 2, 3);
        h = ConvOut(h, 3, 2, 1); w = ConvOut(w, 3, 2, 1);           // C2, stride 4
        var sizes = new FeatureSize[LevelCount];
        for (int l = 0; l < 3; l++)
        {
            h = ConvOut(h, 3, 2, 1); w = ConvOut(w, 3, 2, 1);       // C3, C4, C5
            sizes[l] = new FeatureSize(h, w);
        }
        for (int l = 3; l < 5; l++)
        {
            h = ConvOut(h, 3, 2, 1); w = ConvOut(w, 3, 2, 1);       // P6 from C5, P7 from P6
            sizes[l] = new FeatureSize(h, w);
        }
        return sizes;
    }

    /// <summary>
    /// mmdetection's <c>AnchorGenerator.valid_flags</c> for one image of a padded batch: on each level,
    /// valid_h = min(ceil(padHeight / stride), feat_h) and valid_w = min(ceil(padWidth / stride), feat_w);
    /// cell (y, x) is valid iff y &lt; valid_h and x &lt; valid_w, and its 9 anchors share the flag.
    /// <paramref name="padHeight"/> x <paramref name="padWidth"/> is the image's own padded size (its
    /// <c>pad_shape</c>), not the batch's. Result: [AnchorCount(levels)] in <see cref="AllAnchors(ReadOnlySpan{FeatureSize})"/> order.
    /// </summary>
    public static bool[] ValidFlags(ReadOnlySpan<FeatureSize> levels, int padHeight, int padWidth)
    {
        if (levels.Length != LevelCount)
            throw new ArgumentException($"expected {LevelCount} feature sizes, got {levels.Length}", nameof(levels));
        if (padHeight <= 0 || padWidth <= 0)
            throw new ArgumentOutOfRangeException(nameof(padHeight), $"pad shape must be positive, got {padHeight}x{padWidth}");
        var flags = new bool[AnchorCount(levels)];
        int offset = 0;
        for (int l = 0; l < LevelCount; l++)
        {
            int stride = Strides[l];
            FeatureSize level = levels[l];
            int validHeight = Math.Min((int)(((long)padHeight + stride - 1) / stride), level.Height);
            int validWidth = Math.Min((int)(((long)padWidth + stride - 1) / stride), level.Width);
            for (int y = 0; y < validHeight; y++)
                flags.AsSpan(offset + y * level.Width * AnchorsPerCell, validWidth * AnchorsPerCell).Fill(true);
            offset += level.Height * level.Width * AnchorsPerCell;
        }
        return flags;
    }

    /// <summary>Total anchors over the given levels.</summary>
    public static int AnchorCount(ReadOnlySpan<FeatureSize> levels)
    {
        long total = 0;
        foreach (var level in levels) total += (long)level.Height * level.Width * AnchorsPerCell;
        return checked((int)total);
    }

    private static int ConvOut(int n, int kernel, int stride, int padding) => (n + 2 * padding - kernel) / stride + 1;
}

/// <summary>Height and width of one feature map.</summary>
/// <param name="Height">Rows.</param>
/// <param name="Width">Columns.</param>
public readonly record struct FeatureSize(int Height, int Width);
