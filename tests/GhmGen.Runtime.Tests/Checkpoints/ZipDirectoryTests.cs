using System.Buffers.Binary;
using System.Text;
using GhmGen.Checkpoints;

namespace GhmGen.Runtime.Tests.Checkpoints;

/// <summary>Zip64 records: sizes and offsets that live in the zip64 extra field of the central directory.</summary>
public sealed class ZipDirectoryTests
{
    /// <summary>
    /// Rebuilds a zip with every central-directory size and local-header offset saturated to
    /// 0xFFFFFFFF and the real values in a zip64 extra field (what writers emit past 4 GiB),
    /// written plainly here from APPNOTE 4.5.3 rather than with the code under test.
    /// </summary>
    private static byte[] WithZip64Extras(byte[] original)
    {
        using var source = new CheckpointBytes.InMemory("src", original);
        Dictionary<string, ZipEntry> entries = ZipDirectory.Read(source);
        var output = new MemoryStream();
        var offsets = new List<(ZipEntry Entry, long Offset)>();
        foreach (ZipEntry entry in entries.Values)
        {
            byte[] name = Encoding.UTF8.GetBytes(entry.Name);
            var local = new byte[30];
            BinaryPrimitives.WriteUInt32LittleEndian(local, 0x04034b50);
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(4), 45);
            BinaryPrimitives.WriteUInt32LittleEndian(local.AsSpan(18), (uint)entry.Size);
            BinaryPrimitives.WriteUInt32LittleEndian(local.AsSpan(22), (uint)entry.Size);
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(26), (ushort)name.Length);
            offsets.Add((entry, output.Position));
            output.Write(local);
            output.Write(name);
            output.Write(original, (int)entry.DataOffset, (int)entry.Size);
        }
        long directory = output.Position;
        foreach ((ZipEntry entry, long offset) in offsets)
        {
            byte[] name = Encoding.UTF8.GetBytes(entry.Name);
            var central = new byte[46];
            BinaryPrimitives.WriteUInt32LittleEndian(central, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(central.AsSpan(6), 45);
            BinaryPrimitives.WriteUInt32LittleEndian(central.AsSpan(20), uint.MaxValue);
            BinaryPrimitives.WriteUInt32LittleEndian(central.AsSpan(24), uint.MaxValue);
            BinaryPrimitives.WriteUInt16LittleEndian(central.AsSpan(28), (ushort)name.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(central.AsSpan(30), 4 + 24 + 8); // zip64 field + an unrelated one
            BinaryPrimitives.WriteUInt32LittleEndian(central.AsSpan(42), uint.MaxValue);
            var extra = new byte[36];
            BinaryPrimitives.WriteUInt16LittleEndian(extra, 0x0001);
            BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(2), 24);
            BinaryPrimitives.WriteInt64LittleEndian(extra.AsSpan(4), entry.Size);
            BinaryPrimitives.WriteInt64LittleEndian(extra.AsSpan(12), entry.Size);
            BinaryPrimitives.WriteInt64LittleEndian(extra.AsSpan(20), offset);
            BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(28), 0x5455); // a timestamp field, to be skipped
            BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(30), 4);
            output.Write(central);
            output.Write(name);
            output.Write(extra);
        }
        long directorySize = output.Position - directory;
        long record = output.Position;
        var zip64End = new byte[56];
        BinaryPrimitives.WriteUInt32LittleEndian(zip64End, 0x06064b50);
        BinaryPrimitives.WriteInt64LittleEndian(zip64End.AsSpan(4), 44);
        BinaryPrimitives.WriteInt64LittleEndian(zip64End.AsSpan(24), entries.Count);
        BinaryPrimitives.WriteInt64LittleEndian(zip64End.AsSpan(32), entries.Count);
        BinaryPrimitives.WriteInt64LittleEndian(zip64End.AsSpan(40), directorySize);
        BinaryPrimitives.WriteInt64LittleEndian(zip64End.AsSpan(48), directory);
        output.Write(zip64End);
        var locator = new byte[20];
        BinaryPrimitives.WriteUInt32LittleEndian(locator, 0x07064b50);
        BinaryPrimitives.WriteInt64LittleEndian(locator.AsSpan(8), record);
        BinaryPrimitives.WriteUInt32LittleEndian(locator.AsSpan(16), 1);
        output.Write(locator);
        var end = new byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(8), 0xFFFF);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(10), 0xFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(12), uint.MaxValue);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(16), uint.MaxValue);
        output.Write(end);
        return output.ToArray();
    }

    [Fact]
    public void Sizes_and_offsets_from_zip64_extra_fields_are_used()
    {
        byte[] original = File.ReadAllBytes(CheckpointFixtures.PathOf("mixed_zip.pth"));
        byte[] zip64 = WithZip64Extras(original);

        using TorchCheckpoint expected = TorchCheckpoint.Read(original, "mixed_zip.pth");
        using TorchCheckpoint actual = TorchCheckpoint.Read(zip64, "mixed_zip64.pth");

        Assert.Equal(CheckpointFormat.Zip, actual.Format);
        Assert.Equal(expected.Tensors.Select(t => t.Key), actual.Tensors.Select(t => t.Key));
        foreach ((CheckpointTensor a, CheckpointTensor b) in expected.Tensors.Zip(actual.Tensors)) Assert.Equal(a.ReadFloat32(), b.ReadFloat32());
    }

    [Fact]
    public void Short_zip64_extra_field_is_refused()
    {
        byte[] zip64 = WithZip64Extras(File.ReadAllBytes(CheckpointFixtures.PathOf("mixed_zip.pth")));
        int field = zip64.AsSpan().IndexOf(new byte[] { 0x01, 0x00, 24, 0 });
        zip64[field + 2] = 16; // claims 16 bytes: size and compressed size, but no offset
        var error = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Read(zip64, "z.pth"));
        Assert.Contains("short zip64 extra field", error.Message);
    }
}
