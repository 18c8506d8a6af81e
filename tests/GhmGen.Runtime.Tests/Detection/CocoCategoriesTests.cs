using GhmGen.Detection;

namespace GhmGen.Runtime.Tests.Detection;

public class CocoCategoriesTests
{
    [Fact]
    public void Ids_Are80SortedCocoIdsWithTheKnownGaps()
    {
        int[] ids = CocoCategories.CategoryIds.ToArray();
        Assert.Equal(80, ids.Length);
        Assert.Equal(ids.OrderBy(i => i), ids);
        int[] missing = Enumerable.Range(1, 90).Except(ids).ToArray();
        Assert.Equal([12, 26, 29, 30, 45, 66, 68, 69, 71, 83], missing);
    }

    [Theory]
    [InlineData(0, 1, "person")]
    [InlineData(11, 13, "stop sign")]
    [InlineData(16, 18, "dog")]
    [InlineData(17, 19, "horse")]
    [InlineData(62, 72, "tv")]
    [InlineData(79, 90, "toothbrush")]
    public void LabelIdAndName_Agree(int label, int id, string name)
    {
        Assert.Equal(id, CocoCategories.CategoryId(label));
        Assert.Equal(name, CocoCategories.Name(label));
        Assert.Equal(label, CocoCategories.LabelOf(id));
    }

    [Fact]
    public void LabelOf_UnknownId_IsMinusOne()
    {
        Assert.Equal(-1, CocoCategories.LabelOf(12));
        Assert.Equal(-1, CocoCategories.LabelOf(91));
        Assert.Throws<ArgumentOutOfRangeException>(() => CocoCategories.CategoryId(80));
    }
}
