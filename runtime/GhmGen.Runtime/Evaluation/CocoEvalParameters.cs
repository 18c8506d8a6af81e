// pycocotools' default parameters for iouType 'bbox' (docs/COCOEVAL.md §2), built the way pycocotools
// builds them: np.linspace computes element i as i * step + start with step = (stop - start) / (n - 1)
// and sets the last element to stop. That is why the ninth IoU threshold is 0.8999999999999999 and ten
// recall thresholds sit one unit in the last place above j / 100.
namespace GhmGen.Evaluation;

/// <summary>The COCO area ranges, in the order of pycocotools' <c>areaRng</c>.</summary>
public enum CocoAreaRange
{
    /// <summary>[0, 1e10].</summary>
    All = 0,

    /// <summary>[0, 32^2] (bounds inclusive).</summary>
    Small = 1,

    /// <summary>[32^2, 96^2] (bounds inclusive: an area of exactly 1024 is small and medium).</summary>
    Medium = 2,

    /// <summary>[96^2, 1e10] (bounds inclusive).</summary>
    Large = 3,
}

/// <summary>The default COCOeval parameters: IoU and recall thresholds, max detections, area ranges.</summary>
public static class CocoEvalParameters
{
    /// <summary>Number of IoU thresholds (T).</summary>
    public const int IouThresholdCount = 10;

    /// <summary>Number of recall thresholds (R).</summary>
    public const int RecallThresholdCount = 101;

    /// <summary>Number of area ranges (A).</summary>
    public const int AreaRangeCount = 4;

    /// <summary>Number of max-detections values (M).</summary>
    public const int MaxDetectionsCount = 3;

    /// <summary>np.spacing(1) = 2^-52, added to TP + FP in the precision's denominator.</summary>
    public const double Epsilon = 2.220446049250313e-16;

    /// <summary>A threshold t is used as min(t, 1 - 1e-10) when matching.</summary>
    public const double IouCap = 1 - 1e-10;

    /// <summary>Detections kept per image and category (the largest max-detections value).</summary>
    public const int MaxDetectionsPerImage = 100;

    private static readonly double[] IouThresholdTable = Linspace(0.5, 0.95, IouThresholdCount);
    private static readonly double[] RecallThresholdTable = Linspace(0.0, 1.0, RecallThresholdCount);
    private static readonly int[] MaxDetectionsTable = [1, 10, MaxDetectionsPerImage];
    private static readonly double[] AreaLow = [0, 0, 32 * 32, 96 * 96];
    private static readonly double[] AreaHigh = [1e10, 32 * 32, 96 * 96, 1e10];

    /// <summary>0.5, 0.55, ..., 0.85, 0.8999999999999999, 0.95 (np.linspace(.5, 0.95, 10)).</summary>
    public static ReadOnlySpan<double> IouThresholds => IouThresholdTable;

    /// <summary>j * 0.01 for j = 0..99, then 1.0 (np.linspace(.0, 1.00, 101)).</summary>
    public static ReadOnlySpan<double> RecallThresholds => RecallThresholdTable;

    /// <summary>1, 10, 100: detections per image and category counted for the recall / precision tables.</summary>
    public static ReadOnlySpan<int> MaxDetections => MaxDetectionsTable;

    /// <summary>Lower bound (inclusive) of an area range.</summary>
    public static double AreaLower(CocoAreaRange range) => AreaLow[(int)range];

    /// <summary>Upper bound (inclusive) of an area range.</summary>
    public static double AreaUpper(CocoAreaRange range) => AreaHigh[(int)range];

    /// <summary>numpy.linspace with endpoint: element i = i * step + start, the last = stop.</summary>
    private static double[] Linspace(double start, double stop, int count)
    {
        double step = (stop - start) / (count - 1);
        var values = new double[count];
        for (int i = 0; i < count; i++)
        {
            double scaled = i * step;
            values[i] = scaled + start;
        }
        values[count - 1] = stop;
        return values;
    }
}
