namespace GhmGen.Generators.Tests;

/// <summary>
/// Compares text with a committed snapshot file in tests/GhmGen.Generators.Tests/Snapshots.
/// A changed snapshot always fails and leaves a <c>.received</c> file beside it to diff; a
/// missing one fails under CI=true and is otherwise written (review it, then commit it).
/// </summary>
internal static class Snapshot
{
    public static void Match(string name, string actual)
    {
        string dir = Path.Combine(GeneratorHarness.RepositoryRoot(), "tests", "GhmGen.Generators.Tests", "Snapshots");
        string verified = Path.Combine(dir, name + ".verified.cs");
        string received = Path.Combine(dir, name + ".received.cs");
        actual = actual.Replace("\r\n", "\n");
        if (!File.Exists(verified))
        {
            if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
                Assert.Fail($"snapshot {verified} is missing (CI=true): run the tests locally and commit it");
            Directory.CreateDirectory(dir);
            File.WriteAllText(verified, actual);
            return;
        }
        string expected = File.ReadAllText(verified).Replace("\r\n", "\n");
        if (expected != actual)
        {
            File.WriteAllText(received, actual);
            int line = FirstDifferentLine(expected, actual);
            Assert.Fail($"generated code differs from {verified} at line {line}; compare with {received}, and replace the snapshot if the change is intended");
        }
        if (File.Exists(received)) File.Delete(received);
    }

    private static int FirstDifferentLine(string a, string b)
    {
        string[] x = a.Split('\n'), y = b.Split('\n');
        for (int i = 0; i < Math.Min(x.Length, y.Length); i++)
            if (x[i] != y[i]) return i + 1;
        return Math.Min(x.Length, y.Length) + 1;
    }
}
