using GhmGen.Checkpoints;

namespace GhmGen.Cli.Tests;

/// <summary>
/// The exit codes every <c>ghm</c> command shares (README, "Exit codes and output files"): 2 for
/// bad usage with the message on stderr and nothing on stdout, 3 for an internal error in one
/// line, 0 for --help and --version on stdout. None of these cases runs a model.
/// </summary>
public sealed class ExitCodeTests
{
    private const string R50 = "retinanet-ghm-r50-fpn";

    private static string Image => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging", "img40x61.png");

    private static (int Code, string Output, string Error) Run(params string[] args) => Run(null, args);

    private static (int Code, string Output, string Error) Run(Func<IEnumerable<StateLayout>>? candidates, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GhmCommand.Run(args, output, error, candidates);
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>Exit 2, nothing on stdout, and each expected line on stderr, followed by the usage hint.</summary>
    private static void AssertUsageError(string[] args, params string[] expectedLines)
    {
        (int code, string output, string error) = Run(args);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        foreach (string line in expectedLines) Assert.Contains(line + Environment.NewLine, error);
        Assert.DoesNotContain("(Parameter", error);
        Assert.DoesNotContain("Actual value was", error);
        Assert.DoesNotContain("System.", error);
        Assert.DoesNotContain("   at ", error);
    }

    public static TheoryData<string[], string> UnknownOptions => new()
    {
        { ["models", "--bogus"], "ghm models: Unrecognized command or argument '--bogus'." },
        { ["detect", "--model", R50, "--checkpoint", "x.pth", "--bogus", Image], "ghm detect: Unrecognized option '--bogus'." },
        { ["bench", "--model", R50, "--bogus"], "ghm bench: Unrecognized command or argument '--bogus'." },
        { ["checkpoint", "inspect", "--bogus"], "ghm checkpoint inspect: Unrecognized option '--bogus'." },
        { ["checkpoint", "seed", "--model", R50, "--out", "x.pth", "--bogus"], "ghm checkpoint seed: Unrecognized command or argument '--bogus'." },
    };

    [Theory]
    [MemberData(nameof(UnknownOptions))]
    public void UnknownOption_IsExit2_OnStderrOnly(string[] args, string expected)
    {
        string command = expected[..expected.IndexOf(':')];
        AssertUsageError(args, expected, $"Run '{command} --help' for usage.");
    }

    [Fact]
    public void AnImageNamedLikeAnOption_IsAcceptedAfterTheSeparator()
    {
        // After "--" nothing is an option: the file is looked for (and skipped: it does not exist),
        // which needs the checkpoint, so a missing checkpoint is what stops it.
        (int code, string output, string error) = Run("detect", "--model", R50, "--checkpoint", "no-such.pth", "--", "-image.png");
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains("checkpoint 'no-such.pth': cannot open", error);
    }

    public static TheoryData<string[], string> BadValues => new()
    {
        { ["detect", "--model", R50, "--checkpoint", "x.pth", "--threads", "-3", Image], "ghm detect: --threads -3 is out of range: it must be between 0 and 1024" },
        { ["detect", "--model", R50, "--checkpoint", "x.pth", "--threads", "many", Image], "ghm detect: --threads 'many' is not a whole number" },
        { ["detect", "--model", R50, "--checkpoint", "x.pth", "--score-thr", "nan", Image], "ghm detect: --score-thr 'nan' is not a number" },
        { ["detect", "--model", R50, "--checkpoint", "x.pth", "--score-thr", "1.5", Image], "ghm detect: --score-thr 1.5 is out of range: it must be in [0, 1)" },
        { ["detect", "--model", R50, "--checkpoint", "x.pth", "--device", "tpu", Image], "ghm detect: Argument 'tpu' not recognized. Must be one of:" },
        { ["test", "--model", R50, "--checkpoint", "x.pth", "--ann", "a.json", "--images", ".", "--batch", "0"], "ghm test: --batch 0 is out of range: it must be between 1 and 64" },
        { ["test", "--model", R50, "--checkpoint", "x.pth", "--ann", "a.json", "--images", ".", "--scale", "160"], "ghm test: --scale '160' is not LONGxSHORT (two whole numbers, e.g. 1333x800)" },
        { ["test", "--model", R50, "--checkpoint", "x.pth", "--ann", "a.json", "--images", ".", "--scale", "160x16"], "ghm test: --scale 160x16 is out of range: each edge must be between 32 and 8192" },
        { ["bench", "--model", R50, "--runs", "0"], "ghm bench: --runs 0 is out of range: it must be between 1 and 100000" },
        { ["bench", "--model", R50, "--threads", "99999999999"], "ghm bench: --threads '99999999999' is not a whole number" },
        { ["bench", "--model", R50, "--size", "800by600"], "ghm bench: --size '800by600' is not HxW with sides between 1 and 8192, e.g. 800x1216" },
    };

    [Theory]
    [MemberData(nameof(BadValues))]
    public void UnparsableOrOutOfRangeValue_IsExit2_InWords(string[] args, string expected)
    {
        (int code, string output, string error) = Run(args);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains(expected, error);
        Assert.DoesNotContain("(Parameter", error);
        Assert.DoesNotContain("Actual value was", error);
        Assert.DoesNotContain("System.Int32", error);
    }

    [Fact]
    public void MissingRequiredOptions_AreExit2_EachNamed()
    {
        AssertUsageError(["detect", Image], "ghm detect: Option '--model' is required.", "ghm detect: Option '--checkpoint' is required.");
        AssertUsageError(["checkpoint", "seed", "--model", R50], "ghm checkpoint seed: Option '--out' is required.");
        AssertUsageError(["bench"], "ghm bench: Option '--model' is required.");
        AssertUsageError(["eval", "--results", "r.json"], "ghm eval: Option '--ann' is required.");
        AssertUsageError(["test", "--model", R50, "--checkpoint", "x.pth"], "ghm test: Option '--ann' is required.", "ghm test: Option '--images' is required.");
        AssertUsageError(["checkpoint", "inspect"], "ghm checkpoint inspect: Required argument missing for command: 'inspect'.");
        AssertUsageError([], "ghm: Required command was not provided.");
    }

    [Fact]
    public void UnknownModel_IsExit2_ForEveryCommandThatTakesOne()
    {
        const string known = "known models: retinanet-ghm-r50-fpn, retinanet-ghm-r101-fpn, retinanet-ghm-x101-32x4d-fpn, retinanet-ghm-x101-64x4d-fpn, ghm-demo-r18-fpn";
        AssertUsageError(["detect", "--model", "nope", "--checkpoint", "x.pth", Image], $"ghm detect: unknown model 'nope'; {known}");
        AssertUsageError(["bench", "--model", "nope"], $"ghm bench: unknown model 'nope'; {known}");
        AssertUsageError(["checkpoint", "seed", "--model", "nope", "--out", "x.pth"], $"ghm checkpoint seed: unknown model 'nope'; {known}");
    }

    [Fact]
    public void SeedIntoAMissingFolder_IsExit2_BeforeWriting()
    {
        string folder = Path.Combine(Path.GetTempPath(), "ghm-no-such-" + Guid.NewGuid().ToString("N"));
        (int code, string output, string error) = Run("checkpoint", "seed", "--model", R50, "--out", Path.Combine(folder, "r50.pth"));
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Equal($"ghm checkpoint seed: --out '{Path.Combine(folder, "r50.pth")}': the folder '{folder}' does not exist", error.TrimEnd());
        Assert.False(Directory.Exists(folder));
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    public void Help_IsExit0_OnStdout(string flag)
    {
        (int code, string output, string error) = Run(flag);
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Contains("detect", output);
        Assert.Contains("--verbose", output);

        (code, output, error) = Run("detect", flag);
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Contains("--save-raw", output);
    }

    [Fact]
    public void Version_IsExit0_OnStdout()
    {
        (int code, string output, string error) = Run("--version");
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Matches(@"^\d+\.\d+", output);
    }

    [Fact]
    public async Task Version_OfTheGhmProgram_IsThePackageVersion()
    {
        // In-process the entry assembly is the test host's, so run ghm.dll itself, as the tool does.
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "GhmGen.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("GhmGen.sln not found");
        string props = File.ReadAllText(Path.Combine(root, "build", "Version.props"));
        string expected = System.Text.RegularExpressions.Regex.Match(props, "<GhmGenVersion>([^<]+)</GhmGenVersion>").Groups[1].Value;
        Assert.Matches(@"^\d+\.\d+\.\d+", expected);

        var start = new System.Diagnostics.ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ghm.dll"));
        start.ArgumentList.Add("--version");
        using var process = System.Diagnostics.Process.Start(start)!;
        Task<string> error = process.StandardError.ReadToEndAsync();
        string output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.Equal("", await error);
        Assert.Equal(0, process.ExitCode);
        Assert.Equal(expected, output.TrimEnd());
    }

    [Fact]
    public void UnexpectedException_IsExit3_InOneLine_WithTheStackTraceOnlyWhenVerbose()
    {
        string checkpoint = Path.Combine(AppContext.BaseDirectory, "Fixtures", "Checkpoints", "mmdet_like_zip.pth");
        Func<IEnumerable<StateLayout>> broken = () => throw new InvalidOperationException("layout store is broken");

        (int code, string output, string error) = Run(broken, "checkpoint", "inspect", checkpoint);
        Assert.Equal(3, code);
        Assert.Equal("", output);
        Assert.Equal(
            "ghm checkpoint inspect: internal error: InvalidOperationException: layout store is broken (run with --verbose for the stack trace)",
            error.TrimEnd());

        (code, output, error) = Run(broken, "checkpoint", "inspect", checkpoint, "--verbose");
        Assert.Equal(3, code);
        Assert.Equal("", output);
        string[] lines = error.TrimEnd().Split(Environment.NewLine);
        Assert.Equal("ghm checkpoint inspect: internal error: InvalidOperationException: layout store is broken", lines[0]);
        Assert.Contains(lines, l => l.TrimStart().StartsWith("at GhmGen.Cli.", StringComparison.Ordinal));
    }
}
