using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace GhmGen.Cli;

/// <summary>Writes float32 arrays as NumPy <c>.npy</c> files (format 1.0, little-endian, C order).</summary>
internal static class NpyWriter
{
    public static void Write(string path, ReadOnlySpan<float> values, params int[] shape)
    {
        long count = 1;
        foreach (int d in shape) count *= d;
        if (count != values.Length)
            throw new ArgumentException($"{values.Length} values do not fill shape ({string.Join(", ", shape)})");
        string dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture)));
        string header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}";
        // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in '\n'.
        int total = 10 + header.Length + 1;
        header = header.PadRight(header.Length + (64 - total % 64) % 64) + "\n";
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write);
        file.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0]);
        Span<byte> length = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)header.Length);
        file.Write(length);
        file.Write(Encoding.ASCII.GetBytes(header));
        byte[] buffer = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(i * 4), values[i]);
        file.Write(buffer);
    }
}
