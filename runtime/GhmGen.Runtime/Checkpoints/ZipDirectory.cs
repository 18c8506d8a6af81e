using System.Buffers.Binary;
using System.Text;

namespace GhmGen.Checkpoints;

/// <summary>One entry of a zip archive: where its (stored) data lies in the file.</summary>
internal readonly record struct ZipEntry(string Name, long DataOffset, long Size, int Method);

/// <summary>
/// Reads the central directory of a zip file (PKWARE APPNOTE 6.3), Zip64 records included, and
/// locates each entry's data through its local header. Every offset and count is checked against
/// the file before use; nothing is decompressed (PyTorch stores entries uncompressed).
/// </summary>
internal static class ZipDirectory
{
    private const uint LocalHeaderSignature = 0x04034b50;
    private const uint CentralHeaderSignature = 0x02014b50;
    private const uint EndSignature = 0x06054b50;
    private const uint Zip64EndSignature = 0x06064b50;
    private const uint Zip64LocatorSignature = 0x07064b50;
    private const int EndSize = 22;
    private const int CentralHeaderSize = 46;
    private const int LocalHeaderSize = 30;

    public static Dictionary<string, ZipEntry> Read(CheckpointBytes file)
    {
        long end = FindEnd(file);
        ReadOnlySpan<byte> eocd = file.Slice(end, EndSize);
        long entryCount = BinaryPrimitives.ReadUInt16LittleEndian(eocd[10..]);
        long directorySize = BinaryPrimitives.ReadUInt32LittleEndian(eocd[12..]);
        long directoryOffset = BinaryPrimitives.ReadUInt32LittleEndian(eocd[16..]);

        if (end >= 20 && BinaryPrimitives.ReadUInt32LittleEndian(file.Slice(end - 20, 4)) == Zip64LocatorSignature)
        {
            ulong recordOffset = BinaryPrimitives.ReadUInt64LittleEndian(file.Slice(end - 20 + 8, 8));
            if (recordOffset > (ulong)(end - 20) || !file.Contains((long)recordOffset, 56)) throw file.Fail($"zip64 end record offset {recordOffset} is outside the file");
            ReadOnlySpan<byte> record = file.Slice((long)recordOffset, 56);
            if (BinaryPrimitives.ReadUInt32LittleEndian(record) != Zip64EndSignature) throw file.Fail("zip64 end record has a bad signature");
            entryCount = Checked(BinaryPrimitives.ReadUInt64LittleEndian(record[32..]), file, "zip64 entry count");
            directorySize = Checked(BinaryPrimitives.ReadUInt64LittleEndian(record[40..]), file, "zip64 directory size");
            directoryOffset = Checked(BinaryPrimitives.ReadUInt64LittleEndian(record[48..]), file, "zip64 directory offset");
        }

        if (!file.Contains(directoryOffset, directorySize) || directorySize > int.MaxValue)
        {
            throw file.Fail($"zip central directory ({directorySize} bytes at {directoryOffset}) is outside the file");
        }
        if (entryCount > directorySize / CentralHeaderSize)
        {
            throw file.Fail($"zip declares {entryCount} entries but its directory holds at most {directorySize / CentralHeaderSize}");
        }

        ReadOnlySpan<byte> directory = file.Slice(directoryOffset, (int)directorySize);
        var entries = new Dictionary<string, ZipEntry>(StringComparer.Ordinal);
        int pos = 0;
        for (long i = 0; i < entryCount; i++)
        {
            if (directory.Length - pos < CentralHeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(directory[pos..]) != CentralHeaderSignature)
            {
                throw file.Fail($"zip central directory entry {i} is corrupt");
            }
            ReadOnlySpan<byte> header = directory[pos..];
            int method = BinaryPrimitives.ReadUInt16LittleEndian(header[10..]);
            long compressedSize = BinaryPrimitives.ReadUInt32LittleEndian(header[20..]);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(header[24..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(header[28..]);
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(header[30..]);
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(header[32..]);
            long localOffset = BinaryPrimitives.ReadUInt32LittleEndian(header[42..]);
            int total = CentralHeaderSize + nameLength + extraLength + commentLength;
            if (total > directory.Length - pos) throw file.Fail($"zip central directory entry {i} runs past the directory");
            string name = Encoding.UTF8.GetString(header.Slice(CentralHeaderSize, nameLength));
            ReadZip64Extra(header.Slice(CentralHeaderSize + nameLength, extraLength), ref size, ref compressedSize, ref localOffset, file, name);
            pos += total;

            if (!file.Contains(localOffset, LocalHeaderSize)) throw file.Fail($"zip entry '{name}' has its header outside the file");
            ReadOnlySpan<byte> local = file.Slice(localOffset, LocalHeaderSize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(local) != LocalHeaderSignature) throw file.Fail($"zip entry '{name}' has a bad local header");
            long dataOffset = localOffset + LocalHeaderSize + BinaryPrimitives.ReadUInt16LittleEndian(local[26..]) + BinaryPrimitives.ReadUInt16LittleEndian(local[28..]);
            long stored = method == 0 ? size : compressedSize;
            if (!file.Contains(dataOffset, stored)) throw file.Fail($"zip entry '{name}' ({stored} bytes at {dataOffset}) runs past the end of the file");
            entries[name] = new ZipEntry(name, dataOffset, size, method);
        }
        return entries;
    }

    private static long FindEnd(CheckpointBytes file)
    {
        if (file.Length < EndSize) throw file.Fail("zip file is too short to hold an end-of-directory record");
        long lowest = Math.Max(0, file.Length - EndSize - ushort.MaxValue);
        for (long at = file.Length - EndSize; at >= lowest; at--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(file.Slice(at, 4)) == EndSignature) return at;
        }
        throw file.Fail("zip end-of-directory record not found (file truncated?)");
    }

    private static void ReadZip64Extra(ReadOnlySpan<byte> extra, ref long size, ref long compressedSize, ref long localOffset, CheckpointBytes file, string name)
    {
        while (extra.Length >= 4)
        {
            int id = BinaryPrimitives.ReadUInt16LittleEndian(extra);
            int length = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (length > extra.Length - 4) throw file.Fail($"zip entry '{name}' has a corrupt extra field");
            ReadOnlySpan<byte> field = extra.Slice(4, length);
            if (id == 0x0001)
            {
                // Only the values whose 32-bit field is saturated appear, in this order.
                int at = 0;
                if (size == uint.MaxValue) size = Zip64Value(field, ref at, file, name);
                if (compressedSize == uint.MaxValue) compressedSize = Zip64Value(field, ref at, file, name);
                if (localOffset == uint.MaxValue) localOffset = Zip64Value(field, ref at, file, name);
            }
            extra = extra[(4 + length)..];
        }
    }

    private static long Zip64Value(ReadOnlySpan<byte> field, ref int at, CheckpointBytes file, string name)
    {
        if (field.Length - at < 8) throw file.Fail($"zip entry '{name}' has a short zip64 extra field");
        long value = Checked(BinaryPrimitives.ReadUInt64LittleEndian(field[at..]), file, "zip64 value");
        at += 8;
        return value;
    }

    private static long Checked(ulong value, CheckpointBytes file, string what) =>
        value <= (ulong)file.Length ? (long)value : throw file.Fail($"{what} {value} exceeds the file size {file.Length}");
}
