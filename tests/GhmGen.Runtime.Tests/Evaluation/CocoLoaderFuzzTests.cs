using System.Text;
using GhmGen.Evaluation;
using Xunit.Abstractions;

namespace GhmGen.Runtime.Tests.Evaluation;

/// <summary>
/// Random corruptions of a ground-truth and a results file: every outcome must be a successful load
/// (then evaluated) or a <see cref="CocoFormatException"/> whose message starts with the file name;
/// never another exception, crash or hang. Also deep nesting, huge numbers and the file-size limit.
/// </summary>
public sealed class CocoLoaderFuzzTests(ITestOutputHelper output)
{
    /// <summary>Mutations per file (two files).</summary>
    private const int MutationsPerFile = 3000;

    private static readonly string[] Tokens =
    [
        "null", "true", "false", "\"x\"", "{}", "[]", ",", ":", "\"", "{", "}", "[", "]", "-", "1e999999", "-1e400",
        "123456789012345678901234567890", "1.7976931348623157e309", "4.9e-325", "NaN", "\"\\ud800\"", "\"\\u00\"", "\"id\": 0,",
        "\"iscrowd\": 7,", "\"bbox\": [1, 2, -3, 4],", "0", "-0", "1e308",
    ];

    [Fact]
    public void Mutated_files_load_or_give_a_format_error()
    {
        CocoCase c = CocoEvaluatorPropertyTests.RandomCase(3);
        byte[] gtBytes = c.GroundTruthJson(), resultBytes = c.ResultsJson();
        CocoGroundTruth gt = CocoGroundTruth.Parse(gtBytes, "gt.json");
        var random = new Random(20261125);
        var failures = new List<string>();
        int loaded = 0, refused = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int file = 0; file < 2; file++)
        {
            byte[] original = file == 0 ? gtBytes : resultBytes;
            string name = file == 0 ? "gt.json" : "results.json";
            for (int i = 0; i < MutationsPerFile; i++)
            {
                byte[] bytes = Mutate(original, random, out string how);
                try
                {
                    CocoResults results = file == 0
                        ? CocoResults.Parse(resultBytes, "results.json", CocoGroundTruth.Parse(bytes, name), dropUnknownCategories: true)
                        : CocoResults.Parse(bytes, name, gt, dropUnknownCategories: random.Next(2) == 0);
                    CocoEvaluation evaluation = CocoEvaluator.Evaluate(results, threads: 1);
                    _ = evaluation.Summary.Format();
                    loaded++;
                }
                catch (CocoFormatException e)
                {
                    // A mutated ground truth can also make the (intact) results refer to an unknown image.
                    if (!e.Message.StartsWith(name + ": ", StringComparison.Ordinal) && !(file == 0 && e.Message.StartsWith("results.json: ", StringComparison.Ordinal)))
                        failures.Add($"{name} #{i} ({how}): message without the file name: {e.Message}");
                    refused++;
                }
                catch (Exception e)
                {
                    if (failures.Count < 10) failures.Add($"{name} #{i} ({how}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                }
            }
        }
        output.WriteLine($"{2 * MutationsPerFile} mutations in {clock.Elapsed.TotalSeconds:F2} s: {loaded} loaded and evaluated, {refused} refused");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.True(loaded > 0 && refused > 0, "the mutations should both break and spare some files");
    }

    [Fact]
    public void Deep_nesting_is_refused_quickly()
    {
        string deep = new('[', 1_000_000);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e1 = Assert.Throws<CocoFormatException>(() => CocoGroundTruth.Parse(Encoding.UTF8.GetBytes("{\"images\": [], \"categories\": [], \"x\": " + deep), "gt.json"));
        Assert.StartsWith("gt.json: malformed JSON in the top level: ", e1.Message);
        var e2 = Assert.Throws<CocoFormatException>(() => CocoResults.Parse(Encoding.UTF8.GetBytes(deep), "results.json", new CocoCase().LoadGroundTruth()));
        Assert.StartsWith("results.json: ", e2.Message);
        Assert.True(clock.Elapsed.TotalSeconds < 5, $"took {clock.Elapsed}");
    }

    [Fact]
    public void Huge_numbers_are_refused_or_read_as_doubles()
    {
        CocoGroundTruth gt = new CocoCase().LoadGroundTruth();
        string Entry(string score) => "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": " + score + "}]";
        Assert.Equal("results.json: entry 0: 'score' must be a number",
            Assert.Throws<CocoFormatException>(() => CocoResults.Parse(Encoding.UTF8.GetBytes(Entry("1e999999")), "results.json", gt)).Message);
        Assert.Equal("results.json: entry 0: 'score' must be a number",
            Assert.Throws<CocoFormatException>(() => CocoResults.Parse(Encoding.UTF8.GetBytes(Entry("-" + new string('9', 400))), "results.json", gt)).Message);
        Assert.Equal(0, CocoResults.Parse(Encoding.UTF8.GetBytes(Entry("1e-400")), "results.json", gt).Detections[0].Score);
        Assert.Equal(1e30, CocoResults.Parse(Encoding.UTF8.GetBytes(Entry("1" + new string('0', 30) + "." + new string('0', 100_000))), "results.json", gt).Detections[0].Score);
    }

    [Fact]
    public void Files_over_the_limit_are_refused_without_reading_them_whole()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"ghmgen-coco-fuzz-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "big.json");
            File.WriteAllBytes(path, new byte[5000]);
            Assert.Equal($"{path}: the file has 5000 bytes; the limit is 4096 bytes",
                Assert.Throws<CocoFormatException>(() => CocoJson.ReadFile(path, 4096, out _)).Message);
            CocoJson.ReadFile(path, 5000, out int length);
            Assert.Equal(5000, length);
            Assert.Equal(2_000_000_000, CocoGroundTruth.MaxFileBytes);
            Assert.Equal(CocoGroundTruth.MaxFileBytes, CocoResults.MaxFileBytes);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
        // A device with no length (reads forever) stops at the limit.
        if (File.Exists("/dev/zero"))
        {
            Assert.Equal("/dev/zero: the file has more than 1000000 bytes; the limit is 1000000 bytes",
                Assert.Throws<CocoFormatException>(() => CocoJson.ReadFile("/dev/zero", 1_000_000, out _)).Message);
        }
    }

    private static byte[] Mutate(byte[] original, Random random, out string how)
    {
        byte[] bytes = (byte[])original.Clone();
        switch (random.Next(7))
        {
            case 0: return ByteMutations.Truncate(bytes, random, out how);
            case 1: return ByteMutations.RandomBytes(bytes, random, out how);
            case 2: return ByteMutations.BitFlip(bytes, random.Next(bytes.Length), random, out how);
            case 3: return ByteMutations.Delete(bytes, random, 32, out how);
            case 4: return ByteMutations.Insert(bytes, random, Tokens, out how);
            case 5:
            {
                // Replace a number with a huge or odd one.
                int at = random.Next(bytes.Length);
                while (at < bytes.Length && !char.IsAsciiDigit((char)bytes[at])) at++;
                int end = at;
                while (end < bytes.Length && (char.IsAsciiDigit((char)bytes[end]) || bytes[end] is (byte)'.' or (byte)'e' or (byte)'-')) end++;
                string token = Tokens[14 + random.Next(6)];
                how = $"number at {at} -> {token}";
                return [.. bytes[..at], .. Encoding.UTF8.GetBytes(token), .. bytes[end..]];
            }
            default:
            {
                // Repeat a chunk (duplicated entries, keys and ids).
                int at = random.Next(bytes.Length);
                int count = 1 + random.Next(Math.Min(400, bytes.Length - at));
                how = $"repeat {count} at {at}";
                return [.. bytes[..(at + count)], .. bytes[at..]];
            }
        }
    }
}
