// mmdetection v2's training pipeline for one image (configs/_base_/datasets/coco_detection.py;
// docs/TRAINING.md): LoadImageFromFile -> LoadAnnotations -> Resize(1333x800, keep_ratio)
// -> RandomFlip(0.5) -> Normalize -> Pad(size_divisor=32).
//  * Resize on the uint8 image with mmcv's rescale_size: s = min(long / max(h, w), short / min(h, w)),
//    new = int(old * s + 0.5) (Preprocessor.KeepRatioSize), OpenCV-exact bilinear (BilinearResize);
//    scale factors w_scale = new_w / w, h_scale = new_h / h rounded to float32; boxes multiplied in
//    float32 and clipped, x to [0, new_w] and y to [0, new_h] (bbox_clip_border=True).
//  * Horizontal flip of the resized image and boxes: x1' = W - x2, x2' = W - x1 (float32), W = new_w.
//    Whether to flip is the caller's (TrainDataLoader: TrainRandom.ShouldFlip).
//  * Normalize with Preprocessor's RGB mean/std, float32 (pixel - mean) * (1 / std).
//  * Pad bottom/right with zeros to multiples of 32: the image's pad_shape.
// The decoded size is used, as mmdetection does, even when the json's width/height differ.
// Crowd boxes follow the same resize/flip (mmdetection's bbox_fields include gt_bboxes_ignore).
// Tests: tests/GhmGen.Runtime.Tests/Training/TrainPipelineTests.cs.
using GhmGen.Imaging;

namespace GhmGen.Training;

/// <summary>Settings of the training pipeline; the defaults are the GHM recipe's.</summary>
/// <param name="LongEdge">Largest long side after resizing (1333).</param>
/// <param name="ShortEdge">Largest short side after resizing (800).</param>
/// <param name="FlipProbability">Probability of a horizontal flip (0.5).</param>
/// <param name="PadDivisor">Each image is padded to multiples of this (32).</param>
public sealed record TrainPipelineOptions(int LongEdge = 1333, int ShortEdge = 800, double FlipProbability = 0.5, int PadDivisor = 32)
{
    /// <summary>mmdetection's coco_detection.py training settings.</summary>
    public static TrainPipelineOptions Default { get; } = new();
}

/// <summary>One image after the training pipeline: its input tensor and its transformed ground truth.</summary>
public sealed class TrainSample
{
    internal TrainSample(CocoImage source, float[] tensor, int padHeight, int padWidth, int imageHeight, int imageWidth,
        int originalHeight, int originalWidth, float scaleX, float scaleY, bool flipped, float[] gtBoxes, float[] crowdBoxes)
    {
        Source = source;
        Tensor = tensor;
        PadHeight = padHeight;
        PadWidth = padWidth;
        ImageHeight = imageHeight;
        ImageWidth = imageWidth;
        OriginalHeight = originalHeight;
        OriginalWidth = originalWidth;
        ScaleX = scaleX;
        ScaleY = scaleY;
        Flipped = flipped;
        GtBoxes = gtBoxes;
        CrowdBoxes = crowdBoxes;
    }

    /// <summary>The dataset entry this sample was made from.</summary>
    public CocoImage Source { get; }

    /// <summary>Normalised pixels [3, PadHeight, PadWidth] (RGB planes), zeros in the padding.</summary>
    public float[] Tensor { get; }

    /// <summary>Padded height: mmdetection's <c>pad_shape[0]</c>, a multiple of the pad divisor.</summary>
    public int PadHeight { get; }

    /// <summary>Padded width: <c>pad_shape[1]</c>.</summary>
    public int PadWidth { get; }

    /// <summary>Resized height: <c>img_shape[0]</c>.</summary>
    public int ImageHeight { get; }

    /// <summary>Resized width: <c>img_shape[1]</c>.</summary>
    public int ImageWidth { get; }

    /// <summary>Decoded image height.</summary>
    public int OriginalHeight { get; }

    /// <summary>Decoded image width.</summary>
    public int OriginalWidth { get; }

    /// <summary>ImageWidth / OriginalWidth as float32 (<c>w_scale</c>).</summary>
    public float ScaleX { get; }

    /// <summary>ImageHeight / OriginalHeight as float32 (<c>h_scale</c>).</summary>
    public float ScaleY { get; }

    /// <summary>Whether the image and boxes were flipped horizontally.</summary>
    public bool Flipped { get; }

    /// <summary>[numGt, 4] x1, y1, x2, y2 in resized (and flipped) pixels.</summary>
    public float[] GtBoxes { get; }

    /// <summary>[numGt] labels, as <see cref="CocoImage.GtLabels"/>.</summary>
    public int[] GtLabels => Source.GtLabels;

    /// <summary>[numCrowd, 4] crowd boxes, transformed as <see cref="GtBoxes"/>.</summary>
    public float[] CrowdBoxes { get; }
}

/// <summary>Decodes and transforms training images as mmdetection's training pipeline does.</summary>
public sealed class TrainPipeline
{
    /// <summary>Creates the pipeline with <paramref name="options"/> (default: the GHM recipe's).</summary>
    public TrainPipeline(TrainPipelineOptions? options = null)
    {
        options ??= TrainPipelineOptions.Default;
        if (options.LongEdge <= 0 || options.ShortEdge <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"resize edges must be positive, got {options.LongEdge}x{options.ShortEdge}");
        if (options.PadDivisor <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"pad divisor must be positive, got {options.PadDivisor}");
        if (!(options.FlipProbability >= 0 && options.FlipProbability <= 1))
            throw new ArgumentOutOfRangeException(nameof(options), $"flip probability must be in [0, 1], got {options.FlipProbability}");
        Options = options;
    }

    /// <summary>The settings.</summary>
    public TrainPipelineOptions Options { get; }

    /// <summary>
    /// Decodes <paramref name="image"/>'s file and transforms it; a missing, unreadable or corrupt file
    /// gives null and a <paramref name="skipReason"/> (which names the file) instead of an exception.
    /// </summary>
    public TrainSample? TryLoad(CocoImage image, bool flip, out string? skipReason)
    {
        ArgumentNullException.ThrowIfNull(image);
        RgbImage decoded;
        try
        {
            decoded = ImageDecoder.Decode(image.FilePath);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            skipReason = e.Message;
            return null;
        }
        skipReason = null;
        return Transform(decoded, image, flip);
    }

    /// <summary>Resize, optional flip, normalise and pad of an already decoded image with <paramref name="annotations"/>' boxes.</summary>
    public TrainSample Transform(RgbImage decoded, CocoImage annotations, bool flip)
    {
        ArgumentNullException.ThrowIfNull(decoded);
        ArgumentNullException.ThrowIfNull(annotations);
        var (width, height) = Preprocessor.KeepRatioSize(decoded.Width, decoded.Height, Options.LongEdge, Options.ShortEdge);
        RgbImage resized = BilinearResize.Resize(decoded, width, height);
        float scaleX = (float)((double)width / decoded.Width), scaleY = (float)((double)height / decoded.Height);
        float[] boxes = RescaleBoxes(annotations.GtBoxes, scaleX, scaleY, width, height);
        float[] crowd = RescaleBoxes(annotations.CrowdBoxes, scaleX, scaleY, width, height);
        if (flip)
        {
            resized = FlipImage(resized);
            boxes = FlipBoxes(boxes, width);
            crowd = FlipBoxes(crowd, width);
        }
        int padHeight = RoundUp(height, Options.PadDivisor), padWidth = RoundUp(width, Options.PadDivisor);
        float[] tensor = Preprocessor.Normalize(resized, padHeight, padWidth);
        return new TrainSample(annotations, tensor, padHeight, padWidth, height, width, decoded.Height, decoded.Width,
            scaleX, scaleY, flip, boxes, crowd);
    }

    /// <summary>
    /// mmdetection's <c>Resize._resize_bboxes</c>: [n, 4] boxes times (scaleX, scaleY, scaleX, scaleY) in
    /// float32, x clipped to [0, <paramref name="width"/>], y to [0, <paramref name="height"/>].
    /// </summary>
    public static float[] RescaleBoxes(ReadOnlySpan<float> boxes, float scaleX, float scaleY, int width, int height)
    {
        if (boxes.Length % 4 != 0) throw new ArgumentException($"boxes has {boxes.Length} values, not a multiple of 4", nameof(boxes));
        var result = new float[boxes.Length];
        for (int i = 0; i < boxes.Length; i += 4)
        {
            result[i] = Math.Clamp(boxes[i] * scaleX, 0f, width);
            result[i + 1] = Math.Clamp(boxes[i + 1] * scaleY, 0f, height);
            result[i + 2] = Math.Clamp(boxes[i + 2] * scaleX, 0f, width);
            result[i + 3] = Math.Clamp(boxes[i + 3] * scaleY, 0f, height);
        }
        return result;
    }

    /// <summary>mmdetection's <c>RandomFlip.bbox_flip</c>, horizontal: x1' = width - x2, x2' = width - x1 (float32).</summary>
    public static float[] FlipBoxes(ReadOnlySpan<float> boxes, int width)
    {
        if (boxes.Length % 4 != 0) throw new ArgumentException($"boxes has {boxes.Length} values, not a multiple of 4", nameof(boxes));
        var result = new float[boxes.Length];
        float w = width;
        for (int i = 0; i < boxes.Length; i += 4)
        {
            result[i] = w - boxes[i + 2];
            result[i + 1] = boxes[i + 1];
            result[i + 2] = w - boxes[i];
            result[i + 3] = boxes[i + 3];
        }
        return result;
    }

    /// <summary>Mirrors an image left-right (mmcv.imflip, horizontal).</summary>
    public static RgbImage FlipImage(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var output = new byte[image.Rgb.Length];
        int stride = image.Width * 3;
        for (int y = 0; y < image.Height; y++)
        {
            int row = y * stride;
            for (int x = 0; x < image.Width; x++)
            {
                int from = row + x * 3, to = row + (image.Width - 1 - x) * 3;
                output[to] = image.Rgb[from];
                output[to + 1] = image.Rgb[from + 1];
                output[to + 2] = image.Rgb[from + 2];
            }
        }
        return new RgbImage(image.Width, image.Height, output);
    }

    private static int RoundUp(int value, int divisor) => checked((value + divisor - 1) / divisor * divisor);
}
