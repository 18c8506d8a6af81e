using System.Diagnostics;
using System.Text;
using GhmGen.Training;
using Xunit.Abstractions;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>
/// Random corruptions of a valid annotation file: every outcome must be a dataset or a
/// <see cref="DatasetFormatException"/>, never another exception, a hang or an allocation out of
/// proportion to the input.
/// </summary>
public sealed class CocoDatasetFuzzTests(ITestOutputHelper output)
{
    private const int Mutations = 6000;

    /// <summary>Allowed allocation per parse: this many bytes per input byte, plus a constant.</summary>
    private const long BytesPerInputByte = 64, AllocationSlack = 256 * 1024;

    private static readonly string[] Tokens =
        ["[", "]", "{", "}", ",", ":", "\"", "null", "true", "-1", "1e308", "1e999", "0.5", "\"bbox\"", "\"id\"", "\"images\"", "[[[[[[[[", "\\u0000", "\\ud800", "\u00ff"];

    [Fact]
    public void Random_mutations_give_a_dataset_or_a_format_error()
    {
        byte[] original = Encoding.UTF8.GetBytes(CocoDetectionDatasetTests.Valid());
        var random = new Random(20260512);
        var failures = new List<string>();
        int parsed = 0, refused = 0;
        double slowest = 0;
        long mostAllocated = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < Mutations; i++)
        {
            byte[] bytes = Mutate(original, random, out string how);
            long before = GC.GetAllocatedBytesForCurrentThread();
            long started = Stopwatch.GetTimestamp();
            try
            {
                CocoDetectionDataset dataset = CocoDetectionDataset.Parse(bytes, "fuzz.json", "/images");
                foreach (CocoImage image in dataset.Images)
                {
                    Assert.Equal(image.GtLabels.Length * 4, image.GtBoxes.Length);
                    Assert.All(image.GtLabels, l => Assert.InRange(l, 0, dataset.NumClasses - 1));
                }
                parsed++;
            }
            catch (DatasetFormatException e)
            {
                if (!e.Message.StartsWith("fuzz.json: ", StringComparison.Ordinal) && failures.Count < 10)
                    failures.Add($"#{i} ({how}): message does not name the file: {e.Message}");
                refused++;
            }
            catch (Exception e)
            {
                if (failures.Count < 10) failures.Add($"#{i} ({how}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            }
            double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            slowest = Math.Max(slowest, seconds);
            mostAllocated = Math.Max(mostAllocated, allocated);
            if (allocated > BytesPerInputByte * bytes.Length + AllocationSlack && failures.Count < 10)
                failures.Add($"#{i} ({how}): allocated {allocated} bytes for a {bytes.Length}-byte input");
            if (seconds > 2 && failures.Count < 10)
                failures.Add($"#{i} ({how}): took {seconds:F2} s");
        }
        output.WriteLine($"{Mutations} mutations in {clock.Elapsed.TotalSeconds:F2} s: {parsed} parsed, {refused} refused; " +
            $"slowest {slowest * 1000:F1} ms, most allocated {mostAllocated} bytes (input {original.Length} bytes)");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.True(parsed > 0 && refused > 0, "the mutations should both break and spare some files");
    }

    [Fact]
    public void Every_truncation_is_a_format_error()
    {
        byte[] original = Encoding.UTF8.GetBytes(CocoDetectionDatasetTests.Valid());
        // The file ends with "]}\n": every cut before the closing brace is incomplete JSON.
        int end = Array.LastIndexOf(original, (byte)'}');
        for (int length = 0; length <= end; length++)
        {
            var e = Assert.Throws<DatasetFormatException>(() => CocoDetectionDataset.Parse(original.AsSpan(0, length), "cut.json", "/images"));
            Assert.StartsWith("cut.json: ", e.Message);
        }
    }

    private static byte[] Mutate(byte[] original, Random random, out string how)
    {
        byte[] bytes = (byte[])original.Clone();
        switch (random.Next(6))
        {
            case 0: return ByteMutations.Truncate(bytes, random, out how);
            case 1: return ByteMutations.RandomBytes(bytes, random, out how);
            case 2: return ByteMutations.BitFlip(bytes, random.Next(bytes.Length), random, out how);
            case 3: return ByteMutations.Insert(bytes, random, Tokens, out how);
            case 4:
            {
                // Swap a digit run for another value: ids, sizes and boxes take odd values.
                int at = random.Next(bytes.Length);
                while (at < bytes.Length && !char.IsAsciiDigit((char)bytes[at])) at++;
                int endAt = at;
                while (endAt < bytes.Length && (char.IsAsciiDigit((char)bytes[endAt]) || bytes[endAt] == '.')) endAt++;
                string[] values = ["0", "-5", "100", "2147483648", "9223372036854775808", "1.5", "31", "1e3", "100000"];
                string value = values[random.Next(values.Length)];
                how = $"number at {at} -> {value}";
                return [.. bytes[..at], .. Encoding.UTF8.GetBytes(value), .. bytes[endAt..]];
            }
            default: return ByteMutations.Delete(bytes, random, 16, out how);
        }
    }
}
