using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>Epoch order (GroupSampler or sequential), batches, and the seeded draws behind them.</summary>
public class EpochSamplerTests
{
    private static CocoImage[] Images(params (int Width, int Height)[] sizes) =>
        [.. sizes.Select((s, i) => new CocoImage(i, i + 1, $"{i}.jpg", $"/x/{i}.jpg", s.Width, s.Height, [], [], []))];

    [Fact]
    public void Sequential_IsTheJsonOrderWithAShortLastBatch()
    {
        var sampler = new EpochSampler(Images((50, 40), (40, 50), (50, 40), (50, 50), (60, 40)), batchSize: 2, shuffle: false, seed: 7);
        Assert.Equal(3, sampler.BatchesPerEpoch);
        Assert.Equal(5, sampler.SamplesPerEpoch);
        Assert.Equal([0, 1, 2, 3, 4], sampler.Order(0));
        Assert.Equal([0, 1, 2, 3, 4], sampler.Order(5));
        Assert.Equal((0, 2), sampler.BatchRange(0));
        Assert.Equal((4, 1), sampler.BatchRange(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.BatchRange(3));
    }

    [Fact]
    public void Shuffled_FillsFullBatchesFromOneAspectGroupEach()
    {
        // Wide (w/h > 1): 0, 2, 4; narrow (incl. square): 1, 3, 5, 6.
        CocoImage[] images = Images((50, 40), (40, 50), (50, 40), (50, 50), (60, 40), (30, 90), (32, 32));
        var sampler = new EpochSampler(images, batchSize: 2, shuffle: true, seed: 1);
        Assert.Equal(4, sampler.BatchesPerEpoch); // ceil(4 / 2) + ceil(3 / 2)
        Assert.Equal(8, sampler.SamplesPerEpoch);
        int[] wide = [0, 2, 4];
        for (int epoch = 0; epoch < 20; epoch++)
        {
            int[] order = sampler.Order(epoch);
            Assert.Equal(8, order.Length);
            Assert.Equal(Enumerable.Range(0, 7), order.Distinct().Order());
            for (int b = 0; b < 4; b++)
                Assert.Equal(wide.Contains(order[2 * b]), wide.Contains(order[2 * b + 1]));
            // The one repeated image pads the wide group (3 images -> 4 samples).
            int repeated = order.GroupBy(i => i).Single(g => g.Count() == 2).Key;
            Assert.Contains(repeated, wide);
        }
    }

    [Fact]
    public void Shuffled_IsAFunctionOfSeedAndEpoch()
    {
        CocoImage[] images = Images([.. Enumerable.Range(0, 40).Select(i => (40 + i % 7 * 5, 50))]);
        var a = new EpochSampler(images, 2, true, seed: 42);
        var b = new EpochSampler(images, 2, true, seed: 42);
        var c = new EpochSampler(images, 2, true, seed: 43);
        Assert.Equal(a.Order(3), b.Order(3));
        Assert.Equal(a.Order(3), a.Order(3));
        Assert.NotEqual(a.Order(3), a.Order(4));
        Assert.NotEqual(a.Order(3), c.Order(3));
    }

    [Fact]
    public void Shuffled_VisitsEveryFirstPositionAboutEquallyOften()
    {
        // Fisher-Yates with an unbiased bound: over many epochs each image leads about 1/n of the time.
        CocoImage[] images = Images([.. Enumerable.Range(0, 6).Select(_ => (40, 50))]);
        var sampler = new EpochSampler(images, 1, true, seed: 5);
        var firsts = new int[6];
        for (int epoch = 0; epoch < 6000; epoch++) firsts[sampler.Order(epoch)[0]]++;
        Assert.All(firsts, count => Assert.InRange(count, 850, 1150));
    }

    [Fact]
    public void SplitMix64_MatchesTheReferenceSequence()
    {
        // Vigna's splitmix64.c seeded with 1234567 (state = seed; next: state += gamma, mix).
        var random = TrainRandom.SplitMix64.FromState(1234567);
        Assert.Equal(6457827717110365317UL, random.Next());
        Assert.Equal(3203168211198807973UL, random.Next());
        Assert.Equal(9817491932198370423UL, random.Next());
    }

    [Fact]
    public void Flips_FollowTheProbabilityAndAreDeterministic()
    {
        int flips = 0;
        for (int position = 0; position < 20000; position++)
        {
            bool flip = TrainRandom.ShouldFlip(11, 2, position, 0.5);
            Assert.Equal(flip, TrainRandom.ShouldFlip(11, 2, position, 0.5));
            if (flip) flips++;
            Assert.False(TrainRandom.ShouldFlip(11, 2, position, 0));
            Assert.True(TrainRandom.ShouldFlip(11, 2, position, 1));
        }
        Assert.InRange(flips, 9700, 10300);
        // Other epochs and seeds draw other flips.
        Assert.NotEqual(
            Enumerable.Range(0, 64).Select(p => TrainRandom.ShouldFlip(11, 2, p, 0.5)),
            Enumerable.Range(0, 64).Select(p => TrainRandom.ShouldFlip(11, 3, p, 0.5)));
        Assert.NotEqual(
            Enumerable.Range(0, 64).Select(p => TrainRandom.ShouldFlip(11, 2, p, 0.5)),
            Enumerable.Range(0, 64).Select(p => TrainRandom.ShouldFlip(12, 2, p, 0.5)));
        Assert.Throws<ArgumentOutOfRangeException>(() => TrainRandom.ShouldFlip(0, 0, 0, 1.5));
    }

    [Fact]
    public void NextBelow_StaysInRange()
    {
        var random = new TrainRandom.SplitMix64(3, TrainRandom.Purpose.Shuffle, 0, 0);
        foreach (int bound in new[] { 1, 2, 3, 7, 1000, int.MaxValue })
            for (int i = 0; i < 1000; i++)
                Assert.InRange(random.NextBelow(bound), 0, bound - 1);
    }
}
