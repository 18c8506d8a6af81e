// numpy's float64 add.reduce over a contiguous 1-D array, which np.mean uses: pairwise summation
// (numpy's pairwise_sum: below 8 elements a plain loop; up to 128 eight accumulators combined as
// ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)) plus the remainder; above that, split at
// n / 2 rounded down to a multiple of 8). numpy 1.x hands a reduction to the loop in buffers of
// 8192 elements, each summed pairwise and added in turn to the running result (which starts at 0).
// Newer numpy may pass more than 8192 elements at once; that changes only the last bit or so of a
// mean over more than 8192 entries (the 12 summary figures with 9 or more categories).
// Reference test: tests/GhmGen.Runtime.Tests/Evaluation/NumpySumTests.cs.
namespace GhmGen.Evaluation;

/// <summary>Sums and means in numpy's order, so that COCO summary figures match pycocotools to the bit.</summary>
internal static class NumpySum
{
    /// <summary>numpy's default ufunc buffer size (np.getbufsize()).</summary>
    public const int BufferSize = 8192;

    private const int PairwiseBlock = 128;

    /// <summary>np.mean of a float64 array: add.reduce, then one division by the count.</summary>
    public static double Mean(ReadOnlySpan<double> values) => Sum(values) / values.Length;

    /// <summary>np.add.reduce of a contiguous float64 array.</summary>
    public static double Sum(ReadOnlySpan<double> values)
    {
        double total = 0;
        for (int start = 0; start < values.Length; start += BufferSize)
            total += Pairwise(values.Slice(start, Math.Min(BufferSize, values.Length - start)));
        return total;
    }

    /// <summary>numpy's pairwise_sum_DOUBLE.</summary>
    public static double Pairwise(ReadOnlySpan<double> a)
    {
        int n = a.Length;
        if (n < 8)
        {
            double res = 0;
            for (int i = 0; i < n; i++) res += a[i];
            return res;
        }
        if (n <= PairwiseBlock)
        {
            double r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5], r6 = a[6], r7 = a[7];
            int i;
            for (i = 8; i < n - (n % 8); i += 8)
            {
                r0 += a[i];
                r1 += a[i + 1];
                r2 += a[i + 2];
                r3 += a[i + 3];
                r4 += a[i + 4];
                r5 += a[i + 5];
                r6 += a[i + 6];
                r7 += a[i + 7];
            }
            double res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));
            for (; i < n; i++) res += a[i];
            return res;
        }
        int n2 = n / 2;
        n2 -= n2 % 8;
        return Pairwise(a[..n2]) + Pairwise(a[n2..]);
    }
}
