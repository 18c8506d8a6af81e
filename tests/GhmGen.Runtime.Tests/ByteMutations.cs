using System.Text;

namespace GhmGen.Runtime.Tests;

/// <summary>
/// The byte-level mutations the fuzz tests of untrusted files share (checkpoints, COCO results
/// and annotation files). Each draws from <c>random</c> in a fixed order, so a seed gives the same
/// mutation in every test that uses it, and returns a description of what it did in <c>how</c>.
/// The format-aware mutations (structure-targeted bit flips, number swaps) stay in their tests.
/// </summary>
internal static class ByteMutations
{
    /// <summary>Cuts the bytes at a random length.</summary>
    public static byte[] Truncate(byte[] bytes, Random random, out string how)
    {
        int length = random.Next(bytes.Length);
        how = $"truncate to {length}";
        return bytes[..length];
    }

    /// <summary>Overwrites 1 to 4 random bytes with random values, in place.</summary>
    public static byte[] RandomBytes(byte[] bytes, Random random, out string how)
    {
        int flips = 1 + random.Next(4);
        how = $"{flips} random bytes";
        for (int f = 0; f < flips; f++) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
        return bytes;
    }

    /// <summary>Flips one random bit of the byte at <paramref name="at"/>, in place.</summary>
    public static byte[] BitFlip(byte[] bytes, int at, Random random, out string how)
    {
        how = $"bit flip at {at}";
        bytes[at] ^= (byte)(1 << random.Next(8));
        return bytes;
    }

    /// <summary>Deletes 1 to <paramref name="maxCount"/> bytes at a random position.</summary>
    public static byte[] Delete(byte[] bytes, Random random, int maxCount, out string how)
    {
        int at = random.Next(bytes.Length);
        int count = 1 + random.Next(maxCount);
        how = $"delete {count} at {at}";
        return [.. bytes[..at], .. bytes[Math.Min(bytes.Length, at + count)..]];
    }

    /// <summary>Inserts one of <paramref name="tokens"/> (UTF-8) at a random position.</summary>
    public static byte[] Insert(byte[] bytes, Random random, string[] tokens, out string how)
    {
        int at = random.Next(bytes.Length);
        string token = tokens[random.Next(tokens.Length)];
        how = $"insert '{token}' at {at}";
        return [.. bytes[..at], .. Encoding.UTF8.GetBytes(token), .. bytes[at..]];
    }
}
