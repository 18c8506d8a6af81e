using GhmGen.Checkpoints;
using GhmGen.Layers;

namespace GhmGen.Runtime.Tests.Checkpoints;

/// <summary>Choosing which model a checkpoint belongs to.</summary>
public sealed class CheckpointMatcherTests
{
    [Fact]
    public void Picks_the_exact_match_among_candidates()
    {
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf("mmdet_like_zip.pth"));
        TestNetwork exact = TestNetwork.MmdetLike("exact");
        var smaller = new TestNetwork("smaller", exact.State.Take(3).ToArray());
        CheckpointMatch? match = CheckpointMatcher.Match(checkpoint.Tensors, [("smaller", (INetwork)smaller), ("exact", exact)]);
        Assert.NotNull(match);
        Assert.True(match.IsExact);
        Assert.Equal("exact", match.Model);
        Assert.Equal(checkpoint.Tensors.Count, match.Matched.Count);
    }

    [Fact]
    public void Reports_the_closest_candidate_with_its_differences()
    {
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf("mmdet_like_legacy.pth"));
        TestNetwork full = TestNetwork.MmdetLike();
        var close = new TestNetwork("close", [.. full.State.Skip(1), new StateTensor("extra.weight", [2], StateKind.Parameter)]);
        var far = new TestNetwork("far", new StateTensor("something.else", [1], StateKind.Parameter));
        CheckpointMatch? match = CheckpointMatcher.Match(checkpoint.Tensors, [StateLayout.From(far), StateLayout.From(close)]);
        Assert.NotNull(match);
        Assert.False(match.IsExact);
        Assert.Equal("close", match.Model);
        Assert.Equal(["extra.weight"], match.Missing);
        Assert.Equal(["backbone.conv1.weight"], match.Unexpected);
        Assert.Empty(match.Mismatched);
        Assert.Equal(2, match.Differences);
    }

    [Fact]
    public void No_candidates_gives_no_match()
    {
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf("bare_zip.pth"));
        Assert.Null(CheckpointMatcher.Match(checkpoint.Tensors, Array.Empty<StateLayout>()));
    }
}
