using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>The prefetching loader: order independent of workers, exact resume, cancellation, skipped images.</summary>
public sealed class TrainDataLoaderTests : IDisposable
{
    // Small images and a small scale keep every batch cheap on a shared CPU.
    private static readonly TrainPipelineOptions SmallScale = new(LongEdge: 64, ShortEdge: 48);

    private readonly TempDataset _folder = TempDataset.WithImages(12);

    public void Dispose() => _folder.Dispose();

    private CocoDetectionDataset Dataset() => CocoDetectionDataset.Load(_folder.AnnotationFile, _folder.Root);

    private TrainDataLoader Loader(int workers, int prefetch, bool shuffle = true, long seed = 5) =>
        new(Dataset(), new TrainLoaderOptions(BatchSize: 2, Shuffle: shuffle, Seed: seed, Workers: workers, PrefetchBatches: prefetch, Pipeline: SmallScale));

    /// <summary>Everything a batch holds that training reads, with the pixels as a hash.</summary>
    private static string Fingerprint(TrainBatch batch)
    {
        string pixels = Convert.ToHexString(SHA256.HashData(MemoryMarshal.AsBytes(batch.Tensor.AsSpan())))[..16];
        string samples = string.Join(" ", batch.Samples.Select(s =>
            $"{s.Source.Index}{(s.Flipped ? "f" : "")}:{string.Join(",", s.GtBoxes)}:{string.Join(",", s.GtLabels)}"));
        string flags = string.Join("", batch.ValidFlags.Select(f => f.Count(v => v)));
        return $"{batch.Epoch}/{batch.BatchIndex} {batch.Height}x{batch.Width} {samples} valid {flags} {pixels}";
    }

    private static List<string> ReadAll(TrainBatchStream stream)
    {
        var fingerprints = new List<string>();
        while (stream.TryTakeNext(out TrainBatch? batch)) fingerprints.Add(Fingerprint(batch));
        return fingerprints;
    }

    [Fact]
    public void Batches_AreIdenticalWithOneAndThreeWorkers_AndEqualLoadBatch()
    {
        TrainDataLoader single = Loader(workers: 1, prefetch: 1);
        TrainDataLoader three = Loader(workers: 3, prefetch: 4);
        Assert.Equal(6, single.BatchesPerEpoch); // 8 wide images -> 4 batches, 4 tall -> 2

        List<string> one, many;
        using (TrainBatchStream stream = single.Open(0, 0, endEpoch: 2)) one = ReadAll(stream);
        using (TrainBatchStream stream = three.Open(0, 0, endEpoch: 2))
        {
            many = ReadAll(stream);
            Assert.True(stream.TotalDataTime >= stream.LastDataTime);
            Assert.Equal(0, stream.SkippedImageCount);
            Assert.Equal((2, 0), stream.NextPosition);
        }
        Assert.Equal(12, one.Count);
        Assert.Equal(one, many);

        var direct = new List<string>();
        for (int epoch = 0; epoch < 2; epoch++)
            for (int b = 0; b < single.BatchesPerEpoch; b++)
                direct.Add(Fingerprint(single.LoadBatch(epoch, b, out _)!));
        Assert.Equal(direct, one);

        // The draws matter: both flipped and unflipped samples occur, and the two epochs differ.
        Assert.Contains(one, f => f.Contains('f'));
        Assert.NotEqual(one[..6].Select(f => f[2..]), one[6..].Select(f => f[2..]));
    }

    [Fact]
    public void Open_AtEpochAndBatch_YieldsTheTailOfTheFullRun()
    {
        TrainDataLoader loader = Loader(workers: 2, prefetch: 3);
        List<string> full;
        using (TrainBatchStream stream = loader.Open(0, 0, endEpoch: 2)) full = ReadAll(stream);

        using (TrainBatchStream stream = loader.Open(1, 3, endEpoch: 2))
            Assert.Equal(full[9..], ReadAll(stream));
        using (TrainBatchStream stream = loader.Open(0, 5, endEpoch: 2))
        {
            Assert.Equal((0, 5), stream.NextPosition);
            Assert.True(stream.TryTakeNext(out TrainBatch? last));
            Assert.Equal(full[5], Fingerprint(last));
            Assert.Equal((1, 0), stream.NextPosition);
            Assert.Equal(full[6..], ReadAll(stream));
        }
        using (TrainBatchStream stream = loader.Open(1, 6, endEpoch: 2))
            Assert.False(stream.TryTakeNext(out _));
    }

    [Fact]
    public void Sequential_FollowsTheJsonOrder()
    {
        TrainDataLoader loader = Loader(workers: 2, prefetch: 2, shuffle: false);
        using TrainBatchStream stream = loader.Open(0);
        var indices = new List<int>();
        while (stream.TryTakeNext(out TrainBatch? batch)) indices.AddRange(batch.Samples.Select(s => s.Source.Index));
        Assert.Equal(Enumerable.Range(0, 12), indices);
    }

    [Fact]
    public void Workers_StayWithinThePrefetchBound_AndStopPromptlyOnCancellation()
    {
        TrainDataLoader loader = Loader(workers: 3, prefetch: 2);
        using var cancellation = new CancellationTokenSource();
        TrainBatchStream stream = loader.Open(0, 0, endEpoch: 1000, cancellation.Token);
        Assert.True(stream.TryTakeNext(out _));
        Assert.True(stream.TryTakeNext(out _));
        Thread.Sleep(300);
        Assert.InRange(stream.ClaimedBatches, 2, 2 + 2);

        var clock = Stopwatch.StartNew();
        cancellation.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => stream.TryTakeNext(out _));
        stream.Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the workers took {clock.Elapsed.TotalSeconds:F2} s to stop");
        Assert.Throws<ObjectDisposedException>(() => stream.TryTakeNext(out _));
    }

    [Fact]
    public void Cancellation_WakesAConsumerWaitingForABatch_AndTheWorkerHoldingIt()
    {
        TrainDataLoader loader = Loader(workers: 1, prefetch: 1);
        using var loading = new ManualResetEventSlim();
        using var never = new ManualResetEventSlim();
        // The worker stops inside the first image until cancellation (a stand-in for a slow file).
        loader.BeforeImageLoad = (_, token) => { loading.Set(); never.Wait(token); };
        using var cancellation = new CancellationTokenSource();
        TrainBatchStream stream = loader.Open(0, 0, endEpoch: 100, cancellation.Token);
        Assert.True(loading.Wait(TimeSpan.FromSeconds(10)));
        cancellation.CancelAfter(50);
        var clock = Stopwatch.StartNew();
        Assert.ThrowsAny<OperationCanceledException>(() => stream.TryTakeNext(out _));
        Assert.True(stream.LastDataTime >= TimeSpan.FromMilliseconds(20), $"the consumer waited only {stream.LastDataTime.TotalMilliseconds:F1} ms");
        stream.Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"cancellation took {clock.Elapsed.TotalSeconds:F2} s");
    }

    [Fact]
    public void UnexpectedWorkerFailure_IsRethrownAtItsBatch_AndTheStreamGoesOn()
    {
        TrainDataLoader loader = Loader(workers: 3, prefetch: 3, shuffle: false);
        loader.BeforeImageLoad = (image, _) => { if (image.Index == 5) throw new InvalidOperationException("boom at 5"); };
        using TrainBatchStream stream = loader.Open(0);
        var taken = new List<int>();
        for (int b = 0; b < 2; b++)
        {
            Assert.True(stream.TryTakeNext(out TrainBatch? batch));
            taken.Add(batch.BatchIndex);
        }
        var e = Assert.Throws<InvalidOperationException>(() => stream.TryTakeNext(out _));
        Assert.Equal("boom at 5", e.Message);
        while (stream.TryTakeNext(out TrainBatch? batch)) taken.Add(batch.BatchIndex);
        Assert.Equal([0, 1, 3, 4, 5], taken);
    }

    [Fact]
    public void Dispose_WhileWorkersAreBusy_StopsThem()
    {
        TrainDataLoader loader = Loader(workers: 3, prefetch: 8);
        TrainBatchStream stream = loader.Open(0, 0, endEpoch: 1000);
        var clock = Stopwatch.StartNew();
        stream.Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void CorruptAndMissingImages_AreSkippedAndReported_TheRestGoesOn()
    {
        _folder.WriteImage("img002.png", "not an image"u8.ToArray());
        File.Delete(Path.Combine(_folder.Root, "img005.png"));
        _folder.WriteImage("img006.png", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13]);
        _folder.WriteImage("img007.png", []);
        TrainDataLoader loader = Loader(workers: 3, prefetch: 2, shuffle: false);

        using TrainBatchStream stream = loader.Open(0);
        var batches = new List<TrainBatch>();
        while (stream.TryTakeNext(out TrainBatch? batch)) batches.Add(batch);

        // Batch 3 (images 6 and 7) had nothing left and is passed over; batch 2 lost image 5.
        Assert.Equal([0, 1, 2, 4, 5], batches.Select(b => b.BatchIndex));
        Assert.Equal([0, 1, 3, 4, 8, 9, 10, 11], batches.SelectMany(b => b.Samples).Select(s => s.Source.Index));
        Assert.Equal([2], batches[1].Skipped.Select(s => s.ImageIndex));
        Assert.Equal(4, stream.SkippedImageCount);
        Assert.Equal([2, 5, 6, 7], stream.SkippedImages.Select(s => s.ImageIndex));
        Assert.All(stream.SkippedImages, s => Assert.Contains(s.FileName, s.Reason));
        Assert.Equal([1, 2, 3, 3], stream.SkippedImages.Select(s => s.BatchIndex));
        Assert.Equal((1, 0), stream.NextPosition);
    }

    [Fact]
    public void Loader_RejectsAnEmptyDataset()
    {
        byte[] json = TrainingFixtures.CocoJson([new TestImage(1, "a.png", 40, 40)], [], TrainingFixtures.CocoFirstCategories);
        CocoDetectionDataset empty = CocoDetectionDataset.Parse(json, "empty.json", _folder.Root);
        var e = Assert.Throws<ArgumentException>(() => new TrainDataLoader(empty));
        Assert.Contains("empty.json", e.Message);
    }
}
