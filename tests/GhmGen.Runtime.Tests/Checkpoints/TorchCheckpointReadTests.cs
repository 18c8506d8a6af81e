using System.Text.Json;
using GhmGen.Checkpoints;

namespace GhmGen.Runtime.Tests.Checkpoints;

/// <summary>Reading PyTorch-written fixtures in both formats against values PyTorch printed.</summary>
public sealed class TorchCheckpointReadTests
{
    public static TheoryData<string, string, CheckpointFormat> Files => new()
    {
        { "mixed", "mixed_zip.pth", CheckpointFormat.Zip },
        { "mixed", "mixed_legacy.pth", CheckpointFormat.Legacy },
        { "mmdet_like", "mmdet_like_zip.pth", CheckpointFormat.Zip },
        { "mmdet_like", "mmdet_like_legacy.pth", CheckpointFormat.Legacy },
        { "bare", "bare_zip.pth", CheckpointFormat.Zip },
        { "bare", "bare_legacy.pth", CheckpointFormat.Legacy },
    };

    [Theory]
    [MemberData(nameof(Files))]
    public void Reads_keys_dtypes_shapes_and_values_as_pytorch_saved_them(string expectedName, string file, CheckpointFormat format)
    {
        JsonElement expected = CheckpointFixtures.Expected(expectedName);
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf(file));

        Assert.Equal(format, checkpoint.Format);
        Assert.Equal(file, checkpoint.FileName);
        List<CheckpointFixtures.ExpectedTensor> tensors = CheckpointFixtures.ExpectedTensors(expected);
        Assert.Equal(tensors.Select(t => t.Key), checkpoint.Tensors.Select(t => t.Key));
        foreach ((CheckpointFixtures.ExpectedTensor want, CheckpointTensor got) in tensors.Zip(checkpoint.Tensors))
        {
            Assert.True(want.DType == got.DType.TorchName(), $"{want.Key}: dtype {got.DType.TorchName()}, expected {want.DType}");
            Assert.Equal(want.Shape, got.Shape);
            Assert.Equal(want.Shape.Aggregate(1L, (a, b) => a * b), got.ElementCount);
            if (got.DType.IsInteger())
            {
                long[] values = CheckpointFixtures.IntValues(want.Values);
                Assert.Equal(values, got.ReadInt64());
                Assert.Equal(values.Select(v => (float)v), got.ReadFloat32());
            }
            else
            {
                Assert.Equal(CheckpointFixtures.FloatValues(want.Values), got.ReadFloat32());
                Assert.Throws<CheckpointFormatException>(() => got.ReadInt64());
            }
        }
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Reads_meta_as_a_value_tree(string expectedName, string file, CheckpointFormat format)
    {
        _ = format;
        JsonElement expected = CheckpointFixtures.Expected(expectedName);
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf(file));
        if (expected.GetProperty("top").GetString() == "state_dict")
        {
            Assert.Null(checkpoint.Meta);
            Assert.Same(checkpoint.Root, checkpoint.StateDict);
        }
        else
        {
            Assert.NotNull(checkpoint.Meta);
            CheckpointFixtures.AssertMetaEqual(expected.GetProperty("meta"), checkpoint.Meta);
            Assert.Same(checkpoint.Root["state_dict"], checkpoint.StateDict);
        }
        Assert.True(checkpoint.StateDict.IsOrderedDict);
    }

    [Theory]
    [InlineData("mixed_zip.pth")]
    [InlineData("mixed_legacy.pth")]
    public void Views_share_one_storage_and_keep_their_strides(string file)
    {
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf(file));
        CheckpointTensor @base = checkpoint.Find("base")!;
        CheckpointTensor transposed = checkpoint.Find("transposed")!;
        CheckpointTensor sliced = checkpoint.Find("sliced")!;
        CheckpointTensor strided = checkpoint.Find("strided")!;
        Assert.Equal(@base.StorageKey, transposed.StorageKey);
        Assert.Equal(@base.StorageKey, sliced.StorageKey);
        Assert.Equal(@base.StorageKey, strided.StorageKey);
        Assert.True(@base.IsContiguous);
        Assert.False(transposed.IsContiguous);
        Assert.Equal([1L, 5L], transposed.Strides);
        Assert.Equal(7, sliced.StorageOffset); // base[1:3, 2:5] starts at row 1, column 2 of a 4x5 matrix

        // Each view, read naively from the base values, must equal what the reader gives.
        float[] b = @base.ReadFloat32();
        float At(int r, int c) => b[r * 5 + c];
        float[] naiveTransposed = [.. from c in Enumerable.Range(0, 5) from r in Enumerable.Range(0, 4) select At(r, c)];
        float[] naiveSliced = [.. from r in Enumerable.Range(1, 2) from c in Enumerable.Range(2, 3) select At(r, c)];
        float[] naiveStrided = [.. from r in new[] { 0, 2 } from c in new[] { 0, 2, 4 } select At(r, c)];
        Assert.Equal(naiveTransposed, transposed.ReadFloat32());
        Assert.Equal(naiveSliced, sliced.ReadFloat32());
        Assert.Equal(naiveStrided, strided.ReadFloat32());
    }

    [Theory]
    [InlineData("mmdet_like_zip.pth")]
    [InlineData("mmdet_like_legacy.pth")]
    public void Exposes_mmdetection_class_names_and_config(string file)
    {
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf(file));
        Assert.Equal(["person", "bicycle", "car"], checkpoint.ClassNames);
        Assert.StartsWith("model = dict(\n    type='RetinaNet'", checkpoint.ConfigText);
        Assert.Equal("2.25.0", checkpoint.Meta!["mmdet_version"]!.AsString);
        Assert.Equal(12, checkpoint.Meta["epoch"]!.AsInt64);
    }

    [Fact]
    public void Reads_from_memory_the_same_as_from_the_file()
    {
        byte[] bytes = File.ReadAllBytes(CheckpointFixtures.PathOf("mmdet_like_legacy.pth"));
        using TorchCheckpoint fromMemory = TorchCheckpoint.Read(bytes, "in-memory.pth");
        using TorchCheckpoint fromFile = TorchCheckpoint.Read(CheckpointFixtures.PathOf("mmdet_like_legacy.pth"));
        Assert.Equal("in-memory.pth", fromMemory.FileName);
        Assert.Equal(fromFile.Tensors.Count, fromMemory.Tensors.Count);
        foreach ((CheckpointTensor a, CheckpointTensor b) in fromFile.Tensors.Zip(fromMemory.Tensors))
        {
            Assert.Equal(a.Key, b.Key);
            Assert.Equal(a.ReadFloat32(), b.ReadFloat32());
        }
    }

    [Fact]
    public void Meta_writes_as_json()
    {
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf("mixed_legacy.pth"));
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream)) checkpoint.Meta!.WriteJson(writer);
        using JsonDocument json = JsonDocument.Parse(stream.ToArray());
        JsonElement meta = json.RootElement;
        Assert.Equal("héllo – ünïcode", meta.GetProperty("text").GetString());
        Assert.Equal("1180591620717411303424", meta.GetProperty("huge").GetRawText());
        Assert.Equal(0.1, meta.GetProperty("float").GetDouble());
        Assert.Equal("[1,[2,3]]", meta.GetProperty("tuple").GetRawText());
        Assert.Equal("[null,true,false]", meta.GetProperty("nested").GetProperty("a").GetProperty("b").GetRawText());
    }

    [Fact]
    public void Refuses_the_os_system_global_that_pytorch_pickled()
    {
        var error = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Read(CheckpointFixtures.PathOf("evil_global_zip.pth")));
        // os.system pickles as posix.system on Linux.
        Assert.Equal("checkpoint 'evil_global_zip.pth': pickle global 'posix.system' is not allowed", error.Message);
    }

    [Fact]
    public void Missing_file_is_a_format_error_naming_it()
    {
        var error = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Read(Path.Combine(CheckpointFixtures.Directory, "no_such.pth")));
        Assert.StartsWith("checkpoint 'no_such.pth': cannot open", error.Message);
    }

    [Fact]
    public void Reading_after_dispose_is_refused()
    {
        TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf("mixed_zip.pth"));
        CheckpointTensor tensor = checkpoint.Tensors[0];
        checkpoint.Dispose();
        Assert.Throws<ObjectDisposedException>(() => tensor.ReadFloat32());
    }
}
