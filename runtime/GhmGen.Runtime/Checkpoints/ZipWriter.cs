using System.Buffers.Binary;
using System.Text;

namespace GhmGen.Checkpoints;

/// <summary>
/// Writes an uncompressed zip the way PyTorch's <c>PyTorchStreamWriter</c> does: every entry's
/// data starts on a 64-byte boundary (padded with an 'FB' extra field), and the archive ends
/// with Zip64 end records followed by the classic end-of-directory record.
/// </summary>
internal sealed class ZipWriter(Stream output)
{
    private const int Alignment = 64;
    private readonly List<(byte[] Name, uint Crc, long Size, long Offset)> _entries = [];
    private long _position;

    public void Add(string name, ReadOnlySpan<byte> data)
    {
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        uint crc = Crc32.Compute(data);
        long offset = _position;
        if (offset + data.Length + 4096 > uint.MaxValue) throw new NotSupportedException("checkpoints of 4 GiB or more are not supported");
        int headerEnd = (int)((offset + 30 + nameBytes.Length + 4) % Alignment);
        int padding = (Alignment - headerEnd) % Alignment;

        Span<byte> header = stackalloc byte[30];
        BinaryPrimitives.WriteUInt32LittleEndian(header, 0x04034b50);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], 20); // version needed
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], 0); // flags
        BinaryPrimitives.WriteUInt16LittleEndian(header[8..], 0); // stored
        BinaryPrimitives.WriteUInt16LittleEndian(header[10..], 0); // time
        BinaryPrimitives.WriteUInt16LittleEndian(header[12..], 0x21); // date 1980-01-01
        BinaryPrimitives.WriteUInt32LittleEndian(header[14..], crc);
        BinaryPrimitives.WriteUInt32LittleEndian(header[18..], (uint)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[22..], (uint)data.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(header[26..], (ushort)nameBytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(header[28..], (ushort)(4 + padding));
        Write(header);
        Write(nameBytes);
        Span<byte> extra = stackalloc byte[4 + padding];
        extra.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(extra, 0x4246); // "FB"
        BinaryPrimitives.WriteUInt16LittleEndian(extra[2..], (ushort)padding);
        Write(extra);
        Write(data);
        _entries.Add((nameBytes, crc, data.Length, offset));
    }

    public void Finish()
    {
        long directoryOffset = _position;
        Span<byte> header = stackalloc byte[46];
        foreach ((byte[] name, uint crc, long size, long offset) in _entries)
        {
            header.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(header, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(header[4..], 0x031e); // made by: unix, 3.0
            BinaryPrimitives.WriteUInt16LittleEndian(header[6..], 20);
            BinaryPrimitives.WriteUInt16LittleEndian(header[14..], 0x21);
            BinaryPrimitives.WriteUInt32LittleEndian(header[16..], crc);
            BinaryPrimitives.WriteUInt32LittleEndian(header[20..], (uint)size);
            BinaryPrimitives.WriteUInt32LittleEndian(header[24..], (uint)size);
            BinaryPrimitives.WriteUInt16LittleEndian(header[28..], (ushort)name.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(header[42..], (uint)offset);
            Write(header);
            Write(name);
        }
        long directorySize = _position - directoryOffset;
        long zip64End = _position;

        Span<byte> record = stackalloc byte[56];
        record.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(record, 0x06064b50);
        BinaryPrimitives.WriteUInt64LittleEndian(record[4..], 44);
        BinaryPrimitives.WriteUInt16LittleEndian(record[12..], 0x031e);
        BinaryPrimitives.WriteUInt16LittleEndian(record[14..], 45);
        BinaryPrimitives.WriteUInt64LittleEndian(record[24..], (ulong)_entries.Count);
        BinaryPrimitives.WriteUInt64LittleEndian(record[32..], (ulong)_entries.Count);
        BinaryPrimitives.WriteUInt64LittleEndian(record[40..], (ulong)directorySize);
        BinaryPrimitives.WriteUInt64LittleEndian(record[48..], (ulong)directoryOffset);
        Write(record);

        Span<byte> locator = stackalloc byte[20];
        locator.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(locator, 0x07064b50);
        BinaryPrimitives.WriteUInt64LittleEndian(locator[8..], (ulong)zip64End);
        BinaryPrimitives.WriteUInt32LittleEndian(locator[16..], 1);
        Write(locator);

        if (_entries.Count > ushort.MaxValue) throw new NotSupportedException("more than 65535 zip entries are not supported");
        Span<byte> end = stackalloc byte[22];
        end.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end[8..], (ushort)_entries.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(end[10..], (ushort)_entries.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(end[12..], (uint)directorySize);
        BinaryPrimitives.WriteUInt32LittleEndian(end[16..], (uint)directoryOffset);
        Write(end);
    }

    private void Write(ReadOnlySpan<byte> bytes)
    {
        output.Write(bytes);
        _position += bytes.Length;
    }
}

/// <summary>CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as zip requires, slicing by 8 bytes.</summary>
internal static class Crc32
{
    private static readonly uint[] Table = BuildTable();

    private static uint[] BuildTable()
    {
        var table = new uint[8 * 256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        for (int t = 1; t < 8; t++)
        {
            for (int i = 0; i < 256; i++) table[t * 256 + i] = (table[(t - 1) * 256 + i] >> 8) ^ table[table[(t - 1) * 256 + i] & 0xff];
        }
        return table;
    }

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFFu;
        uint[] t = Table;
        int i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            uint lo = BinaryPrimitives.ReadUInt32LittleEndian(data[i..]) ^ crc;
            uint hi = BinaryPrimitives.ReadUInt32LittleEndian(data[(i + 4)..]);
            crc = t[7 * 256 + (lo & 0xff)] ^ t[6 * 256 + ((lo >> 8) & 0xff)] ^ t[5 * 256 + ((lo >> 16) & 0xff)] ^ t[4 * 256 + (lo >> 24)]
                ^ t[3 * 256 + (hi & 0xff)] ^ t[2 * 256 + ((hi >> 8) & 0xff)] ^ t[256 + ((hi >> 16) & 0xff)] ^ t[hi >> 24];
        }
        for (; i < data.Length; i++) crc = t[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
        return ~crc;
    }
}
