using GhmGen.Generators.Models;
using GhmGen.Generators.Planning;

namespace GhmGen.Generators.Tests;

/// <summary>
/// The planner's grouping of a shared convolution's applications into one Conv2dShared call: independent
/// applications group (a shared head's levels), dependent ones, applications with a residual and those of
/// different ReLU do not, and the new order is a valid topological order that keeps unshared networks as they were.
/// </summary>
public class SharedConvGroupingTests
{
    [Fact]
    public void HeadLevels_GroupLayerByLayer()
    {
        // Two levels (values 1, 2) through a two-conv shared head (convs 5, 6): level by level in the fused order.
        ForwardStep[] steps =
        [
            new UploadStep(0), new ConvStep(1, 0, null, 0, false), new ConvStep(2, 1, null, 1, false),
            new ConvStep(3, 1, null, 5, true), new ConvStep(4, 3, null, 6, false),
            new ConvStep(5, 2, null, 5, true), new ConvStep(6, 5, null, 6, false),
        ];
        List<ForwardStep> grouped = SharedConvGrouping.Group(steps);
        Assert.Equal(5, grouped.Count);
        Assert.Equal(steps[..3], grouped[..3]);
        var first = Assert.IsType<SharedConvStep>(grouped[3]);
        Assert.Equal([1, 2], first.Reads);
        Assert.Equal([3, 5], first.Writes);
        var second = Assert.IsType<SharedConvStep>(grouped[4]);
        Assert.Equal([3, 5], second.Reads);
        Assert.Equal([4, 6], second.Writes);
    }

    [Fact]
    public void DependentApplications_ResidualsAndOtherRelu_StayApart()
    {
        ForwardStep[] steps =
        [
            new UploadStep(0),
            new ConvStep(1, 0, null, 0, true), new ConvStep(2, 1, null, 0, true),     // conv 0 on its own output: dependent
            new ConvStep(3, 0, 1, 1, false), new ConvStep(4, 0, 2, 1, false),         // conv 1 with residuals
            new ConvStep(5, 0, null, 2, true), new ConvStep(6, 1, null, 2, false),    // conv 2 with and without ReLU
        ];
        Assert.Equal(steps, SharedConvGrouping.Group(steps));
    }

    [Fact]
    public void GroupWaitsForEveryInput_OrderStaysTopological()
    {
        // conv 3 reads value 1 (early) and value 4 (late): the group runs after both are written.
        ForwardStep[] steps =
        [
            new UploadStep(0), new ConvStep(1, 0, null, 0, false), new ConvStep(2, 1, null, 3, true),
            new ConvStep(3, 1, null, 1, false), new ConvStep(4, 3, null, 2, false), new ConvStep(5, 4, null, 3, true),
        ];
        List<ForwardStep> grouped = SharedConvGrouping.Group(steps);
        Assert.Equal(5, grouped.Count);
        var written = new HashSet<int>();
        foreach (ForwardStep step in grouped)
        {
            Assert.All(step.Reads, r => Assert.Contains(r, written));
            foreach (int v in step.Writes) written.Add(v);
        }
        Assert.Equal([1, 4], Assert.IsType<SharedConvStep>(grouped[^1]).Reads);
    }
}
