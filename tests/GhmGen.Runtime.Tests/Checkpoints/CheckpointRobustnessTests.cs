using System.Buffers.Binary;
using System.Text;
using GhmGen.Checkpoints;

namespace GhmGen.Runtime.Tests.Checkpoints;

/// <summary>Hand-built hostile and broken files: each must give a CheckpointFormatException naming the problem.</summary>
public sealed class CheckpointRobustnessTests
{
    // ---- a tiny pickle assembler -------------------------------------------------------------

    /// <summary>Concatenates parts: a string is raw ASCII (opcodes, GLOBAL lines), a byte[] is raw bytes, an int one byte.</summary>
    private static byte[] P(params object[] parts)
    {
        var bytes = new List<byte>();
        foreach (object part in parts)
        {
            switch (part)
            {
                case string s: bytes.AddRange(Encoding.ASCII.GetBytes(s)); break;
                case byte[] b: bytes.AddRange(b); break;
                case int i: bytes.Add((byte)i); break;
                default: throw new ArgumentException(part.GetType().Name);
            }
        }
        return [.. bytes];
    }

    /// <summary>BINUNICODE.</summary>
    private static byte[] S(string text)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        var bytes = new byte[5 + utf8.Length];
        bytes[0] = (byte)'X';
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(1), utf8.Length);
        utf8.CopyTo(bytes, 5);
        return bytes;
    }

    /// <summary>BININT.</summary>
    private static byte[] I(int value)
    {
        var bytes = new byte[5];
        bytes[0] = (byte)'J';
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(1), value);
        return bytes;
    }

    private static byte[] IntTuple(params int[] values) => P(["(", .. values.Select(v => (object)I(v)), "t"]);

    /// <summary><c>_rebuild_tensor_v2(persistent storage, offset, shape, stride, False, OrderedDict())</c>, legacy 6-tuple id.</summary>
    private static byte[] Tensor(string storageType, string storageKey, int numel, int offset, int[] shape, int[] stride) => P(
        "ctorch._utils\n_rebuild_tensor_v2\n(",
        "(", S("storage"), $"ctorch\n{storageType}\n", S(storageKey), S("cpu"), I(numel), "Nt", "Q",
        I(offset), IntTuple(shape), IntTuple(stride), 0x89, "ccollections\nOrderedDict\n)R", "tR");

    private static readonly byte[] LegacyHeader = P(
        0x80, 2, 0x8a, 10, new byte[] { 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19 }, ".",
        0x80, 2, "M", 0xe9, 0x03, ".",
        0x80, 2, "}", S("little_endian"), 0x88, "s.");

    /// <summary>A legacy file: header pickles, the object, the key list, then each storage as count + bytes.</summary>
    private static byte[] Legacy(byte[] objectPickle, string[] keys, params (long Count, byte[] Data)[] storages)
    {
        var bytes = new List<byte>(LegacyHeader);
        bytes.AddRange(objectPickle);
        bytes.AddRange(P([0x80, 2, "](", .. keys.Select(k => (object)S(k)), "e."]));
        foreach ((long count, byte[] data) in storages)
        {
            var c = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(c, count);
            bytes.AddRange(c);
            bytes.AddRange(data);
        }
        return [.. bytes];
    }

    private static byte[] StateDict(params byte[][] keyedTensors) => P([0x80, 2, "}(", .. keyedTensors.Select(t => (object)t), "u."]);

    private static byte[] Floats(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    private static CheckpointFormatException Fails(byte[] file, string name = "x.pth")
    {
        return Assert.Throws<CheckpointFormatException>(() =>
        {
            using TorchCheckpoint checkpoint = TorchCheckpoint.Read(file, name);
            foreach (CheckpointTensor t in checkpoint.Tensors) t.ReadFloat32();
        });
    }

    // ---- the assembler itself makes valid files ----------------------------------------------

    [Fact]
    public void Hand_built_legacy_file_reads_including_a_transposed_view()
    {
        byte[] file = Legacy(
            StateDict(S("w"), Tensor("FloatStorage", "0", 6, 0, [2, 3], [3, 1]), S("wt"), Tensor("FloatStorage", "0", 6, 0, [3, 2], [1, 3])),
            ["0"], (6, Floats(1, 2, 3, 4, 5, 6)));
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(file, "hand.pth");
        Assert.Equal([1f, 2, 3, 4, 5, 6], checkpoint.Find("w")!.ReadFloat32());
        Assert.Equal([1f, 4, 2, 5, 3, 6], checkpoint.Find("wt")!.ReadFloat32());
    }

    [Fact]
    public void Pre_1_6_storage_views_in_legacy_files_are_resolved()
    {
        // Old torch wrote ('storage', type, root_key, 'cpu', root_numel, (view_key, offset, view_numel)).
        byte[] viewTensor = P(
            "ctorch._utils\n_rebuild_tensor_v2\n(",
            "(", S("storage"), "ctorch\nFloatStorage\n", S("0"), S("cpu"), I(6), "(", S("v1"), I(2), I(3), "t", "t", "Q",
            I(1), IntTuple(2), IntTuple(1), 0x89, "ccollections\nOrderedDict\n)R", "tR");
        byte[] file = Legacy(StateDict(S("w"), viewTensor), ["0"], (6, Floats(10, 11, 12, 13, 14, 15)));
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(file, "old.pth");
        // The view starts at root element 2; the tensor starts 1 further: elements 3 and 4.
        Assert.Equal([13f, 14f], checkpoint.Find("w")!.ReadFloat32());
        Assert.Equal("v1", checkpoint.Find("w")!.StorageKey);
    }

    // ---- not a checkpoint --------------------------------------------------------------------

    [Fact]
    public void Empty_file_and_wrong_magic_are_named()
    {
        Assert.Equal("checkpoint 'x.pth': file is empty", Fails([]).Message);
        Assert.Contains("not a PyTorch checkpoint", Fails(Encoding.ASCII.GetBytes("hello, world")).Message);
        Assert.Contains("wrong magic number", Fails(P(0x80, 2, "K", 5, ".")).Message);
        Assert.Contains("protocol is not 1001", Fails(P(LegacyHeader[..15], 0x80, 2, "K", 7, ".")).Message);
    }

    [Fact]
    public void Every_truncation_of_a_real_file_is_a_format_error()
    {
        foreach (string name in new[] { "mmdet_like_zip.pth", "mmdet_like_legacy.pth" })
        {
            byte[] bytes = File.ReadAllBytes(CheckpointFixtures.PathOf(name));
            for (int length = 0; length < bytes.Length; length += 7)
            {
                CheckpointFormatException error = Fails(bytes[..length], name);
                Assert.StartsWith($"checkpoint '{name}': ", error.Message);
            }
        }
    }

    // ---- zip structure -----------------------------------------------------------------------

    private static byte[] ZipFixture() => File.ReadAllBytes(CheckpointFixtures.PathOf("mixed_zip.pth"));

    private static int EndRecord(byte[] zip) => zip.Length - 22;

    [Fact]
    public void Zip_without_end_record_is_refused()
    {
        byte[] zip = ZipFixture();
        zip[EndRecord(zip)] = 0; // break the EOCD signature
        Assert.Contains("end-of-directory record not found", Fails(zip).Message);
    }

    [Fact]
    public void Zip_directory_outside_the_file_is_refused()
    {
        byte[] zip = ZipFixture();
        int locator = EndRecord(zip) - 20;
        long record = BinaryPrimitives.ReadInt64LittleEndian(zip.AsSpan(locator + 8));
        BinaryPrimitives.WriteInt64LittleEndian(zip.AsSpan((int)record + 48), 1L << 40); // zip64 directory offset
        Assert.Contains("zip64 directory offset 1099511627776 exceeds the file size", Fails(zip).Message);
    }

    [Fact]
    public void Zip_with_absurd_entry_count_is_refused_before_allocating()
    {
        byte[] zip = ZipFixture();
        int locator = EndRecord(zip) - 20;
        long record = BinaryPrimitives.ReadInt64LittleEndian(zip.AsSpan(locator + 8));
        BinaryPrimitives.WriteInt64LittleEndian(zip.AsSpan((int)record + 32), 4000); // entries, within file size
        Assert.Contains("declares 4000 entries", Fails(zip).Message);
    }

    [Fact]
    public void Zip_entry_larger_than_the_file_is_refused()
    {
        byte[] zip = ZipFixture();
        int locator = EndRecord(zip) - 20;
        long record = BinaryPrimitives.ReadInt64LittleEndian(zip.AsSpan(locator + 8));
        long directory = BinaryPrimitives.ReadInt64LittleEndian(zip.AsSpan((int)record + 48));
        BinaryPrimitives.WriteUInt32LittleEndian(zip.AsSpan((int)directory + 24), 0x7fff0000); // data.pkl size
        Assert.Contains("runs past the end of the file", Fails(zip).Message);
    }

    [Fact]
    public void Zip_storage_larger_than_its_entry_is_refused()
    {
        byte[] zip = ZipFixture();
        // The first tensor (f32, 2x3) declares FloatStorage '0' with numel 6 (BININT1 6 after 'cpu').
        int cpu = IndexOf(zip, S("cpu"));
        int numel = cpu + zip.AsSpan(cpu).IndexOf(P("K", 6));
        zip[numel + 1] = 200;
        Assert.Contains("storage '0' declares 200 float32 elements but its entry holds 24 bytes", Fails(zip).Message);
    }

    private static int IndexOf(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle);

    // ---- pickle bombs and hostile pickles ----------------------------------------------------

    [Fact]
    public void Disallowed_global_is_named()
    {
        byte[] file = Legacy(P(0x80, 2, "cos\nsystem\n", S("echo pwned"), 0x85, "R."), []);
        Assert.Equal("checkpoint 'x.pth': pickle global 'os.system' is not allowed", Fails(file).Message);
        Assert.Equal("checkpoint 'x.pth': pickle global 'builtins.eval' is not allowed",
            Fails(Legacy(P(0x80, 4, S("builtins"), S("eval"), 0x93, "."), [])).Message);
        Assert.Equal("checkpoint 'x.pth': pickle global 'torch.Tensor' is not allowed",
            Fails(Legacy(P(0x80, 2, "ctorch\nTensor\n."), [])).Message);
    }

    [Fact]
    public void Deep_nesting_is_refused_by_depth_limit()
    {
        byte[] nested = P(0x80, 2, string.Concat(Enumerable.Repeat("]", 100_000)), string.Concat(Enumerable.Repeat("a", 99_999)), ".");
        Assert.Contains("nests deeper than 100 levels", Fails(Legacy(nested, [])).Message);
    }

    [Fact]
    public void Self_referencing_list_is_refused()
    {
        byte[] loop = P(0x80, 2, "]q", 0, "h", 0, "a.");
        Assert.Contains("self-referencing", Fails(Legacy(loop, [])).Message);
        // Indirect: a = [], b = [a], a.append(b)
        byte[] indirect = P(0x80, 2, "]q", 0, "]q", 1, "h", 0, "a0h", 1, "a.");
        Assert.Contains("self-referencing", Fails(Legacy(indirect, [])).Message);
    }

    [Fact]
    public void Exponentially_shared_structure_is_refused()
    {
        var parts = new List<object> { 0x80, 2, "]q", 0, "0" };
        for (int i = 1; i <= 64; i++) parts.AddRange(["](h", i - 1, "h", i - 1, "eq", i, i < 64 ? "0" : ""]);
        parts.Add(".");
        Assert.Contains("expands to more than", Fails(Legacy(P([.. parts]), [])).Message);
    }

    [Fact]
    public void Huge_memo_index_and_declared_lengths_are_refused_without_allocating()
    {
        Assert.Contains("memo entry 4294967295 was never stored", Fails(Legacy(P(0x80, 2, "j", 0xff, 0xff, 0xff, 0xff, "."), [])).Message);
        Assert.Contains("declared length 2147483647 exceeds", Fails(Legacy(P(0x80, 2, "X", 0xff, 0xff, 0xff, 0x7f, "."), [])).Message);
        Assert.Contains("declared length 18446744073709551615 exceeds",
            Fails(Legacy(P(0x80, 4, 0x8e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, "."), [])).Message);
        Assert.Contains("LONG4 of 2147483647 bytes", Fails(Legacy(P(0x80, 2, 0x8b, 0xff, 0xff, 0xff, 0x7f, "."), [])).Message);
    }

    [Fact]
    public void Unsupported_opcode_and_stack_misuse_are_refused()
    {
        Assert.Contains("pickle opcode 0x69 ('i')", Fails(Legacy(P(0x80, 2, "ios\nsystem\n."), [])).Message);
        Assert.Contains("stack underflow", Fails(Legacy(P(0x80, 2, "a."), [])).Message);
        Assert.Contains("no MARK", Fails(Legacy(P(0x80, 2, "]e."), [])).Message);
        Assert.Contains("pickle ends without STOP", Fails([.. LegacyHeader, .. P(0x80, 2, "N")]).Message);
    }

    // ---- storages and tensors ----------------------------------------------------------------

    [Fact]
    public void Storage_larger_than_the_file_is_refused()
    {
        byte[] file = Legacy(StateDict(S("w"), Tensor("FloatStorage", "0", int.MaxValue, 0, [2], [1])), ["0"], (int.MaxValue, Floats(1, 2)));
        Assert.Contains("declares 2147483647 elements, more than the file holds", Fails(file).Message);
    }

    [Fact]
    public void Storage_count_disagreeing_with_its_tensors_is_refused()
    {
        byte[] file = Legacy(StateDict(S("w"), Tensor("FloatStorage", "0", 2, 0, [2], [1])), ["0"], (1L << 60, Floats(1, 2)));
        Assert.Contains("storage '0' holds 1152921504606846976 elements but its tensors declared 2", Fails(file).Message);
    }

    [Fact]
    public void Storage_bytes_cut_short_are_refused()
    {
        byte[] file = Legacy(StateDict(S("w"), Tensor("FloatStorage", "0", 4, 0, [4], [1])), ["0"], (4, Floats(1, 2)));
        Assert.Contains("storage '0' needs 16 bytes", Fails(file).Message);
    }

    [Fact]
    public void Storage_key_with_two_dtypes_is_refused()
    {
        byte[] file = Legacy(
            StateDict(S("a"), Tensor("FloatStorage", "0", 2, 0, [2], [1]), S("b"), Tensor("LongStorage", "0", 2, 0, [2], [1])),
            ["0"], (2, Floats(1, 2)));
        Assert.Contains("storage '0' is declared as both float32[2] and int64[2]", Fails(file).Message);
    }

    [Fact]
    public void View_reaching_past_its_storage_is_refused()
    {
        byte[] file = Legacy(StateDict(S("w"), Tensor("FloatStorage", "0", 6, 2, [2, 3], [3, 1])), ["0"], (6, Floats(1, 2, 3, 4, 5, 6)));
        Assert.Contains("reaches past its storage of 6 elements", Fails(file).Message);
        byte[] huge = Legacy(StateDict(S("w"), Tensor("FloatStorage", "0", 6, 0, [2, 2], [int.MaxValue, 1])), ["0"], (6, Floats(1, 2, 3, 4, 5, 6)));
        Assert.Contains("reaches past its storage", Fails(huge).Message);
    }

    [Fact]
    public void Expanded_view_with_more_elements_than_storage_is_refused()
    {
        byte[] file = Legacy(StateDict(S("w"), Tensor("FloatStorage", "0", 1, 0, [1 << 20, 2], [0, 0])), ["0"], (1, Floats(1)));
        Assert.Contains("has 2097152 elements but its storage only 1", Fails(file).Message);
    }

    [Fact]
    public void Unknown_storage_type_and_missing_data_are_refused()
    {
        Assert.Contains("pickle global 'torch.ComplexFloatStorage' is not allowed",
            Fails(Legacy(StateDict(S("w"), Tensor("ComplexFloatStorage", "0", 1, 0, [1], [1])), ["0"], (1, Floats(1)))).Message);
        Assert.Contains("storage '0' is used but its data is missing",
            Fails(Legacy(StateDict(S("w"), Tensor("FloatStorage", "0", 1, 0, [1], [1])), [])).Message);
    }

    [Fact]
    public void State_dict_entry_that_is_not_a_tensor_is_refused()
    {
        byte[] file = Legacy(P(0x80, 2, "}(", S("meta"), "}", S("state_dict"), "}", S("w"), "K", 3, "su."), []);
        Assert.Contains("state_dict entry 'w' is a int, not a tensor", Fails(file).Message);
        Assert.Contains("checkpoint holds a list, not a dict", Fails(Legacy(P(0x80, 2, "]."), [])).Message);
    }
}
