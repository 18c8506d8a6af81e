// The 12 figures of pycocotools' COCOeval.summarize() for boxes, and the text it prints:
//   ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}'
// Python's {:0.3f} rounds the exact binary value half to even; FormatFixed3 does the same.
using System.Globalization;
using System.Numerics;
using System.Text;

namespace GhmGen.Evaluation;

/// <summary>The 12 COCO summary figures (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl); -1 where a slice has no ground truth.</summary>
public sealed class CocoSummary
{
    private static readonly string[] KeyTable = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"];

    private readonly double[] stats;

    internal CocoSummary(double[] stats) => this.stats = stats;

    /// <summary>Short names of the figures, in <see cref="Stats"/> order.</summary>
    public static IReadOnlyList<string> Keys => KeyTable;

    /// <summary>The figures in pycocotools' <c>stats</c> order.</summary>
    public IReadOnlyList<double> Stats => stats;

    /// <summary>AP at IoU 0.50:0.95, all areas, 100 detections (mmdetection's bbox_mAP).</summary>
    public double AP => stats[0];

    /// <summary>AP at IoU 0.50 (bbox_mAP_50).</summary>
    public double AP50 => stats[1];

    /// <summary>AP at IoU 0.75 (bbox_mAP_75).</summary>
    public double AP75 => stats[2];

    /// <summary>AP of small objects, area &lt;= 32^2 (bbox_mAP_s).</summary>
    public double APSmall => stats[3];

    /// <summary>AP of medium objects, 32^2 &lt;= area &lt;= 96^2 (bbox_mAP_m).</summary>
    public double APMedium => stats[4];

    /// <summary>AP of large objects, area &gt;= 96^2 (bbox_mAP_l).</summary>
    public double APLarge => stats[5];

    /// <summary>AR with 1 detection per image and category.</summary>
    public double AR1 => stats[6];

    /// <summary>AR with 10 detections per image and category.</summary>
    public double AR10 => stats[7];

    /// <summary>AR with 100 detections per image and category.</summary>
    public double AR100 => stats[8];

    /// <summary>AR of small objects (100 detections).</summary>
    public double ARSmall => stats[9];

    /// <summary>AR of medium objects (100 detections).</summary>
    public double ARMedium => stats[10];

    /// <summary>AR of large objects (100 detections).</summary>
    public double ARLarge => stats[11];

    /// <summary>The 12 lines pycocotools prints, each ending in '\n'.</summary>
    public string Format()
    {
        var text = new StringBuilder();
        for (int i = 0; i < stats.Length; i++)
        {
            bool ap = i < 6;
            string iou = i == 1 ? "0.50" : i == 2 ? "0.75" : "0.50:0.95";
            string area = (i % 6) switch { 3 => "small", 4 => "medium", 5 => "large", _ => "all" };
            int maxDets = i switch { 6 => 1, 7 => 10, _ => 100 };
            text.Append(CultureInfo.InvariantCulture,
                $" {(ap ? "Average Precision" : "Average Recall"),-18} {(ap ? "(AP)" : "(AR)")} @[ IoU={iou,-9} | area={area,6} | maxDets={maxDets,3} ] = {FormatFixed3(stats[i])}\n");
        }
        return text.ToString();
    }

    /// <inheritdoc cref="Format"/>
    public override string ToString() => Format();

    /// <summary>Python's <c>'{:0.3f}'.format(value)</c>: the exact binary value rounded half to even at 3 decimals.</summary>
    public static string FormatFixed3(double value)
    {
        if (double.IsNaN(value)) return "nan";
        if (double.IsInfinity(value)) return value > 0 ? "inf" : "-inf";
        long bits = BitConverter.DoubleToInt64Bits(Math.Abs(value));
        int exponent = (int)(bits >> 52);
        long mantissa = bits & ((1L << 52) - 1);
        if (exponent == 0) exponent = 1;
        else mantissa |= 1L << 52;
        exponent -= 1075; // |value| = mantissa * 2^exponent exactly
        BigInteger thousandths = new BigInteger(mantissa) * 1000;
        if (exponent >= 0) thousandths <<= exponent;
        else
        {
            BigInteger denominator = BigInteger.One << -exponent;
            BigInteger quotient = BigInteger.DivRem(thousandths, denominator, out BigInteger remainder);
            int half = (remainder << 1).CompareTo(denominator);
            if (half > 0 || (half == 0 && !quotient.IsEven)) quotient += 1;
            thousandths = quotient;
        }
        string digits = thousandths.ToString(CultureInfo.InvariantCulture).PadLeft(4, '0');
        return (double.IsNegative(value) ? "-" : "") + digits[..^3] + "." + digits[^3..];
    }
}
