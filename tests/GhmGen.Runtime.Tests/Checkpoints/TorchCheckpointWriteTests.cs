using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text.Json;
using GhmGen.Checkpoints;
using GhmGen.Layers;

namespace GhmGen.Runtime.Tests.Checkpoints;

/// <summary>Writing checkpoints in PyTorch's zip format.</summary>
public sealed class TorchCheckpointWriteTests
{
    /// <summary>Where <see cref="Writes_a_file_for_torch_to_verify"/> leaves its file for tools/reference/checkpoints.py verify.</summary>
    public static string VerifyDirectory => Path.Combine(AppContext.BaseDirectory, "checkpoint-verify");

    private static TestNetwork SampleNetwork()
    {
        var conv = new StateTensor("backbone.conv1.weight", [2, 3, 2, 2], StateKind.Parameter);
        for (int i = 0; i < conv.Data.Length; i++) conv.Data[i] = MathF.Sin(i * 0.37f) * 3 - 0.5f;
        var tracked = new StateTensor("backbone.bn1.num_batches_tracked", [], StateKind.Buffer, StateElementType.Int64);
        tracked.Int64Data[0] = 87948;
        var big = new StateTensor("bbox_head.big_counter", [3], StateKind.Buffer, StateElementType.Int64);
        big.Int64Data[0] = -5;
        big.Int64Data[1] = long.MaxValue;
        big.Int64Data[2] = 1L << 40;
        var acc = new StateTensor("bbox_head.loss_cls.acc_sum", [30], StateKind.Buffer);
        for (int i = 0; i < 30; i++) acc.Data[i] = i * 1.5f + float.Epsilon * i;
        var scalar = new StateTensor("scalar", [], StateKind.Parameter);
        scalar.Data[0] = -0f;
        var empty = new StateTensor("empty", [0, 4], StateKind.Parameter);
        return new TestNetwork("sample", conv, tracked, big, acc, scalar, empty);
    }

    private static PickleValue SampleMeta() => PickleValue.NewDict(
    [
        KeyValuePair.Create("CLASSES", PickleValue.NewTuple(PickleValue.FromString("person"), PickleValue.FromString("car"))),
        KeyValuePair.Create("config", PickleValue.FromString("model = dict(type='RetinaNet')\n# ünïcode ✓")),
        KeyValuePair.Create("epoch", PickleValue.FromInt64(12)),
        KeyValuePair.Create("iter", PickleValue.FromInt64(-70000)),
        KeyValuePair.Create("big", PickleValue.FromInt64(1L << 40)),
        KeyValuePair.Create("huge", PickleValue.FromBigInteger(BigInteger.Pow(2, 70))),
        KeyValuePair.Create("lr", PickleValue.FromDouble(0.01)),
        KeyValuePair.Create("flags", PickleValue.NewList([PickleValue.FromBool(true), PickleValue.FromBool(false), PickleValue.None])),
        KeyValuePair.Create("empty", PickleValue.NewList([])),
        KeyValuePair.Create("nested", PickleValue.NewDict([KeyValuePair.Create("a", PickleValue.NewTuple())], ordered: true)),
    ]);

    [Fact]
    public void Written_file_reads_back_with_the_same_keys_values_and_meta()
    {
        TestNetwork network = SampleNetwork();
        PickleValue meta = SampleMeta();
        string path = Path.Combine(Path.GetTempPath(), $"ghm-write-{Guid.NewGuid():N}.pth");
        try
        {
            TorchCheckpoint.Write(path, network, meta);
            Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, Path.GetFileName(path) + ".tmp-*"));

            using TorchCheckpoint checkpoint = TorchCheckpoint.Read(path);
            Assert.Equal(CheckpointFormat.Zip, checkpoint.Format);
            Assert.Equal(network.State.Select(s => s.Key), checkpoint.Tensors.Select(t => t.Key));
            foreach ((StateTensor want, CheckpointTensor got) in network.State.Zip(checkpoint.Tensors))
            {
                Assert.Equal(want.Shape, got.Shape);
                Assert.True(got.IsContiguous);
                if (want.ElementType == StateElementType.Int64)
                {
                    Assert.Equal(CheckpointDType.Int64, got.DType);
                    Assert.Equal(want.Int64Data, got.ReadInt64());
                }
                else
                {
                    Assert.Equal(CheckpointDType.Float32, got.DType);
                    Assert.Equal(want.Data.Select(BitConverter.SingleToInt32Bits), got.ReadFloat32().Select(BitConverter.SingleToInt32Bits));
                }
            }
            Assert.Equal(meta.ToString(), checkpoint.Meta!.ToString());
            Assert.Equal(["person", "car"], checkpoint.ClassNames);
            Assert.True(checkpoint.Meta["nested"]!.IsOrderedDict);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Entries_are_stored_64_byte_aligned_under_one_archive_folder_with_version_3()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ghm_align_{Guid.NewGuid():N}.pth");
        try
        {
            TorchCheckpoint.Write(path, SampleNetwork(), SampleMeta());
            byte[] bytes = File.ReadAllBytes(path);
            Assert.Equal(0x04034b50u, BinaryPrimitives.ReadUInt32LittleEndian(bytes));
            using var file = new CheckpointBytes.InMemory("x", bytes);
            Dictionary<string, ZipEntry> entries = ZipDirectory.Read(file);
            string archive = Path.GetFileNameWithoutExtension(path);
            Assert.Equal(
                new[] { "data.pkl", "data/0", "data/1", "data/2", "data/3", "data/4", "data/5", "version" }.Select(n => archive + "/" + n),
                entries.Keys);
            Assert.All(entries.Values, e => Assert.Equal(0, e.DataOffset % 64));
            Assert.All(entries.Values, e => Assert.Equal(0, e.Method));
            ZipEntry version = entries[archive + "/version"];
            Assert.Equal("3\n", System.Text.Encoding.ASCII.GetString(bytes, (int)version.DataOffset, (int)version.Size));
            Assert.Equal(2 * 3 * 2 * 2 * 4, entries[archive + "/data/0"].Size);
            Assert.Equal(8, entries[archive + "/data/1"].Size);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_failed_write_leaves_the_existing_file_untouched()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ghm-keep-{Guid.NewGuid():N}.pth");
        try
        {
            File.WriteAllText(path, "previous");
            var duplicate = new StateTensor("a", [1], StateKind.Parameter);
            Assert.Throws<ArgumentException>(() => TorchCheckpoint.Write(path, [duplicate, duplicate]));
            var tensorInMeta = PickleValue.NewDict([KeyValuePair.Create("x", PickleValue.FromBytes([1, 2]))]);
            TorchCheckpoint.Write(path + ".ok", [duplicate], tensorInMeta); // bytes are fine in meta
            Assert.Equal("previous", File.ReadAllText(path));
            using TorchCheckpoint ok = TorchCheckpoint.Read(path + ".ok");
            Assert.Equal(new byte[] { 1, 2 }, ok.Meta!["x"]!.AsBytes.ToArray());
        }
        finally
        {
            File.Delete(path);
            File.Delete(path + ".ok");
        }
    }

    /// <summary>
    /// Leaves bin/.../checkpoint-verify/written_by_ghmgen.pth and its expected JSON for
    /// <c>/usr/bin/python3 tools/reference/checkpoints.py verify</c> (run by hand; CI has no torch).
    /// </summary>
    [Fact]
    public void Writes_a_file_for_torch_to_verify()
    {
        Directory.CreateDirectory(VerifyDirectory);
        string path = Path.Combine(VerifyDirectory, "written_by_ghmgen.pth");
        TestNetwork network = SampleNetwork();
        PickleValue meta = SampleMeta();
        TorchCheckpoint.Write(path, network, meta);

        using (var stream = File.Create(Path.Combine(VerifyDirectory, "written_by_ghmgen.expected.json")))
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("top", "meta+state_dict");
            json.WritePropertyName("meta");
            CheckpointFixtures.WriteTagged(json, meta);
            json.WriteStartArray("tensors");
            foreach (StateTensor tensor in network.State)
            {
                json.WriteStartObject();
                json.WriteString("key", tensor.Key);
                json.WriteString("dtype", tensor.ElementType == StateElementType.Int64 ? "int64" : "float32");
                json.WriteStartArray("shape");
                foreach (int d in tensor.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("values");
                if (tensor.ElementType == StateElementType.Int64) foreach (long v in tensor.Int64Data) json.WriteNumberValue(v);
                else foreach (float v in tensor.Data) json.WriteStringValue(((double)v).ToString("R", CultureInfo.InvariantCulture));
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(path);
        Assert.Equal(network.State.Count, checkpoint.Tensors.Count);
    }
}
