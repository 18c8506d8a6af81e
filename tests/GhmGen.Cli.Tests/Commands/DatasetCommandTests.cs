using System.Text.Json;

namespace GhmGen.Cli.Tests.Commands;

/// <summary><c>ghm dataset synth</c> through the whole command line.</summary>
public sealed class DatasetCommandTests
{
    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GhmCommand.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Synth_writes_both_splits_and_says_what_it_wrote()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"ghm-synth-{Guid.NewGuid():N}");
        try
        {
            (int code, string output, string error) = Run("dataset", "synth", "--out", dir, "--train-images", "6", "--val-images", "3", "--seed", "4");

            Assert.Equal(0, code);
            Assert.Equal("", error);
            string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(2, lines.Length);
            Assert.StartsWith("train: 6 images, ", lines[0]);
            Assert.StartsWith("val: 3 images, ", lines[1]);
            using JsonDocument train = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "annotations", "instances_train.json")));
            Assert.Equal(6, train.RootElement.GetProperty("images").GetArrayLength());
            Assert.Equal(4, train.RootElement.GetProperty("categories").GetArrayLength());
            Assert.Equal(9, Directory.GetFiles(dir, "*.png", SearchOption.AllDirectories).Length);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("--train-images", "0", "--train-images 0 is out of range")]
    [InlineData("--min-side", "300", "--min-side 300 is larger than --max-side 192")]
    public void Bad_values_are_exit_2_with_nothing_written(string option, string value, string message)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"ghm-synth-{Guid.NewGuid():N}");
        (int code, string output, string error) = Run("dataset", "synth", "--out", dir, option, value);

        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains(message, error);
        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public void An_out_folder_whose_parent_is_missing_is_exit_2()
    {
        (int code, string output, string error) = Run("dataset", "synth", "--out", "/nonexistent-parent-ghm/x");

        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains("parent folder '/nonexistent-parent-ghm' does not exist", error);
    }
}
