using GhmGen.Training;

namespace GhmGen.Distributed.Tests;

/// <summary>
/// The data plan of N ranks (no MPI needed): rank r's batch b is DistributedSampler's shard of the
/// one-process plan for batches of N x B, samples and flips included.
/// </summary>
public sealed class DistributedDataTests
{
    private static CocoDetectionDataset Dataset() => CocoDetectionDataset.Load(Fixtures.AnnotationFile, Fixtures.ImageRoot);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Two_ranks_of_one_image_see_exactly_what_one_process_of_two_sees(bool shuffle)
    {
        CocoDetectionDataset dataset = Dataset();
        var pipeline = new TrainPipelineOptions(128, 96, FlipProbability: 0.5);
        var single = new TrainDataLoader(dataset, new TrainLoaderOptions(2, shuffle, Seed: 7, Workers: 1, PrefetchBatches: 1, pipeline));
        TrainDataLoader[] ranks = [.. Enumerable.Range(0, 2).Select(r =>
            new TrainDataLoader(dataset, new TrainLoaderOptions(1, shuffle, Seed: 7, Workers: 1, PrefetchBatches: 1, pipeline, Rank: r, WorldSize: 2)))];
        Assert.All(ranks, r => Assert.Equal(single.BatchesPerEpoch, r.BatchesPerEpoch));
        int flips = 0;
        for (int epoch = 0; epoch < 3; epoch++)
            for (int b = 0; b < single.BatchesPerEpoch; b++)
            {
                TrainBatch whole = single.LoadBatch(epoch, b, out _)!;
                TrainSample[] shards = [.. ranks.Select(r => r.LoadBatch(epoch, b, out _)!).Select(batch => Assert.Single(batch.Samples))];
                // DistributedSampler: rank r takes positions r, r + N, ... : here sample r of the batch of two.
                Assert.Equal(whole.Samples.Select(s => (s.Source.FileName, s.Flipped)), shards.Select(s => (s.Source.FileName, s.Flipped)));
                flips += shards.Count(s => s.Flipped);
            }
        Assert.InRange(flips, 1, 3 * 2 * single.BatchesPerEpoch - 1); // the flips are really drawn, per position
    }

    [Fact]
    public void A_short_last_batch_wraps_to_the_epoch_start_as_DistributedSampler_pads()
    {
        // 4 images, 3 ranks x 1, json order: DistributedSampler pads [0 1 2 3] to [0 1 2 3 0 1];
        // rank r takes [r::3]: rank 0 {0, 3}, rank 1 {1, 0}, rank 2 {2, 1}.
        CocoDetectionDataset dataset = Dataset();
        string[] names = [.. dataset.Images.Select(i => i.FileName)];
        int[][] expected = [[0, 3], [1, 0], [2, 1]];
        for (int r = 0; r < 3; r++)
        {
            var loader = new TrainDataLoader(dataset, new TrainLoaderOptions(1, Shuffle: false, Seed: 0, Workers: 1, PrefetchBatches: 1,
                new TrainPipelineOptions(128, 96, 0), Rank: r, WorldSize: 3));
            Assert.Equal(2, loader.BatchesPerEpoch);
            string[] seen = [.. Enumerable.Range(0, 2).Select(b => Assert.Single(loader.LoadBatch(0, b, out _)!.Samples).Source.FileName)];
            Assert.Equal(expected[r].Select(i => names[i]), seen);
        }
    }

    [Fact]
    public void A_rank_outside_the_world_is_refused()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new TrainDataLoader(Dataset(), new TrainLoaderOptions(1, Rank: 2, WorldSize: 2)));
        Assert.Contains("rank must be in [0, 2)", e.Message);
    }
}
