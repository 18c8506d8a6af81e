using System.Text.Json;

namespace GhmGen.Cli.Tests.Commands;

/// <summary><c>ghm models</c>: the table and the JSON against docs/MODEL.md §1 and §8.</summary>
public class ModelsCommandTests
{
    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GhmCommand.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Json_HasEveryModelWithSpecCountsAndGmacs()
    {
        (int code, string output, _) = Run("models", "--json");
        Assert.Equal(0, code);
        using JsonDocument doc = JsonDocument.Parse(output);
        JsonElement[] models = doc.RootElement.EnumerateArray().ToArray();
        Assert.Equal(["retinanet-ghm-r50-fpn", "retinanet-ghm-r101-fpn", "retinanet-ghm-x101-32x4d-fpn", "retinanet-ghm-x101-64x4d-fpn", "ghm-demo-r18-fpn"],
            models.Select(m => m.GetProperty("name").GetString()));
        JsonElement r50 = models[0];
        JsonElement p = r50.GetProperty("parameters");
        Assert.Equal(37_968_692, p.GetProperty("total").GetInt64());
        Assert.Equal(23_508_032, p.GetProperty("backbone").GetInt64());
        Assert.Equal(7_997_440, p.GetProperty("neck").GetInt64());
        Assert.Equal(6_463_220, p.GetProperty("head").GetInt64());
        // PyTorch hook count (tools/reference/state_keys.py): 226,633,931,776 MACs at 800x1216, 61,023,076,352 at 512x512.
        Assert.Equal(226.634, r50.GetProperty("gmacs").GetProperty("800x1216").GetDouble(), 3);
        Assert.Equal(61.023, r50.GetProperty("gmacs").GetProperty("512x512").GetDouble(), 3);
        Assert.Equal(447.094, models[3].GetProperty("gmacs").GetProperty("800x1216").GetDouble(), 3);
        Assert.Equal(95_866_932, models[3].GetProperty("parameters").GetProperty("total").GetInt64());
    }

    [Fact]
    public void Table_ListsEveryModel()
    {
        (int code, string output, _) = Run("models");
        Assert.Equal(0, code);
        Assert.Contains("retinanet-ghm-x101-64x4d-fpn", output);
        Assert.Contains("37,968,692", output);
        Assert.Contains("226.6", output);
    }

    [Fact]
    public void UnknownCommand_IsExit2_WithTheErrorOnStderrAndNoHelpOnStdout()
    {
        (int code, string output, string error) = Run("nonsense");
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains("ghm: Unrecognized command or argument 'nonsense'.", error);
        Assert.Contains("Run 'ghm --help' for usage.", error);
    }
}

/// <summary><c>ghm checkpoint inspect</c> recognises a checkpoint of a registered model.</summary>
public class CheckpointInspectRegistryTests
{
    [Fact]
    public void CheckpointOfR50_IsMatchedToItsModel()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ghm-r50-{Guid.NewGuid():N}.pth");
        try
        {
            GhmGen.Checkpoints.TorchCheckpoint.Write(path, new GhmGen.Models.RetinaNetGhmR50Fpn());
            var output = new StringWriter();
            int code = GhmCommand.Run(["checkpoint", "inspect", path, "--json"], output, new StringWriter());
            Assert.Equal(0, code);
            using JsonDocument doc = JsonDocument.Parse(output.ToString());
            Assert.Equal("retinanet-ghm-r50-fpn", doc.RootElement.GetProperty("model").GetString());
            Assert.Equal(358, doc.RootElement.GetProperty("tensors").GetArrayLength());
        }
        finally
        {
            File.Delete(path);
        }
    }
}
