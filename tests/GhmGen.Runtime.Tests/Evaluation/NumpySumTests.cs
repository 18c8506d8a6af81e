// NumpySum against numpy itself. Fixture: numpy 1.24.2 (the Debian /usr/bin/python3 on this
// machine; numpy, not pycocotools), a_i = (i % 7) * 0.1 + 1.0 / (i + 1):
//   x = np.array([(i % 7) * 0.1 + 1.0 / (i + 1) for i in range(n)])
//   repr(float(np.add.reduce(x))), repr(float(np.mean(x)))
// For n = 20000 one pairwise pass over the whole array would give 6010.180728217229: numpy 1.x sums a
// reduction in buffers of 8192 elements.
using GhmGen.Evaluation;

namespace GhmGen.Runtime.Tests.Evaluation;

public sealed class NumpySumTests
{
    [Theory]
    [InlineData(7, 4.692857142857143, 0.6704081632653062)]
    [InlineData(101, 34.89727850773863, 0.3455176089875112)]
    [InlineData(130, 43.848591338265976, 0.3372968564481998)]
    [InlineData(1010, 309.99541624255045, 0.3069261546955945)]
    [InlineData(8192, 2466.6881900460958, 0.3011093981989863)]
    [InlineData(8193, 2466.8883121015087, 0.3010970721471389)]
    [InlineData(20000, 6010.18072821723, 0.3005090364108615)]
    [InlineData(80800, 24251.57695409752, 0.30014327913487027)]
    public void Sum_and_mean_match_numpy(int n, double sum, double mean)
    {
        var values = new double[n];
        for (int i = 0; i < n; i++) values[i] = (i % 7) * 0.1 + 1.0 / (i + 1);
        Assert.Equal(sum, NumpySum.Sum(values));
        Assert.Equal(mean, NumpySum.Mean(values));
    }

    [Fact]
    public void Mean_of_copies_of_the_one_tp_precision()
    {
        // np.mean(np.full(101, 1 / (1 + np.spacing(1)))) and the same for 1010 (numpy 1.24.2 here).
        double p = 1 / (1 + Math.Pow(2, -52));
        Assert.Equal(0.9999999999999999, NumpySum.Mean(Enumerable.Repeat(p, 101).ToArray()));
        Assert.Equal(0.9999999999999998, NumpySum.Mean(Enumerable.Repeat(p, 1010).ToArray()));
    }
}
