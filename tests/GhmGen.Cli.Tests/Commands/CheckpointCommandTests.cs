using System.Text.Json;
using GhmGen.Checkpoints;
using GhmGen.Layers;

namespace GhmGen.Cli.Tests.Commands;

/// <summary><c>ghm checkpoint inspect</c> run through <see cref="GhmCommand.Run"/> with captured output and given candidate layouts.</summary>
public sealed class CheckpointCommandTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Checkpoints", name);

    /// <summary>The key layout PyTorch recorded for the mmdet_like fixtures.</summary>
    private static StateLayout MmdetLikeLayout(string name, int skip = 0)
    {
        using JsonDocument expected = JsonDocument.Parse(File.ReadAllBytes(Fixture("mmdet_like.expected.json")));
        return new StateLayout(name, expected.RootElement.GetProperty("tensors").EnumerateArray().Skip(skip).Select(t => new StateEntry(
            t.GetProperty("key").GetString()!,
            t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray(),
            t.GetProperty("dtype").GetString() == "int64" ? StateElementType.Int64 : StateElementType.Float32)).ToArray());
    }

    private static (int Code, string Output, string Error) Run(IEnumerable<StateLayout> candidates, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GhmCommand.Run(args, output, error, () => candidates);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Inspect_prints_format_meta_every_tensor_and_the_matching_model()
    {
        (int code, string output, string error) = Run([MmdetLikeLayout("other", skip: 2), MmdetLikeLayout("tiny_ghm")],
            "checkpoint", "inspect", Fixture("mmdet_like_legacy.pth"));

        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Contains("format: legacy", output);
        Assert.Contains("  CLASSES: ('person', 'bicycle', 'car')", output);
        Assert.Contains("  config: <text: 4 lines, ", output);
        Assert.Contains("  epoch: 12", output);
        Assert.Matches(@"backbone\.bn1\.num_batches_tracked\s+int64\s+\[\]", output);
        Assert.Matches(@"backbone\.conv1\.weight\s+float32\s+\[4, 3, 3, 3\]", output);
        Assert.Matches(@"bbox_head\.loss_cls\.acc_sum\s+float32\s+\[30\]", output);
        Assert.Contains("tensors: 14", output);
        Assert.Contains("model: tiny_ghm (all 14 keys match)", output);
    }

    [Fact]
    public void Inspect_json_has_format_meta_tensors_and_model()
    {
        (int code, string output, _) = Run([MmdetLikeLayout("tiny_ghm")], "checkpoint", "inspect", Fixture("mmdet_like_zip.pth"), "--json");

        Assert.Equal(0, code);
        using JsonDocument json = JsonDocument.Parse(output);
        JsonElement root = json.RootElement;
        Assert.Equal("zip", root.GetProperty("format").GetString());
        Assert.Equal("tiny_ghm", root.GetProperty("model").GetString());
        Assert.Equal(["person", "bicycle", "car"], root.GetProperty("meta").GetProperty("CLASSES").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(87948, root.GetProperty("meta").GetProperty("iter").GetInt32());

        using JsonDocument expected = JsonDocument.Parse(File.ReadAllBytes(Fixture("mmdet_like.expected.json")));
        JsonElement[] want = [.. expected.RootElement.GetProperty("tensors").EnumerateArray()];
        JsonElement[] got = [.. root.GetProperty("tensors").EnumerateArray()];
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
        {
            Assert.Equal(want[i].GetProperty("key").GetString(), got[i].GetProperty("key").GetString());
            Assert.Equal(want[i].GetProperty("dtype").GetString(), got[i].GetProperty("dtype").GetString());
            Assert.Equal(want[i].GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()), got[i].GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
        }
    }

    [Fact]
    public void Inspect_names_the_closest_model_and_what_it_lacks()
    {
        StateLayout full = MmdetLikeLayout("tiny_ghm");
        var changed = new StateLayout("tiny_ghm_wide", [.. full.Entries.Skip(1), new StateEntry("neck.fpn_convs.0.conv.weight", [4, 4, 3, 3], StateElementType.Float32)]);

        (int code, string text, _) = Run([changed], "checkpoint", "inspect", Fixture("mmdet_like_zip.pth"));
        Assert.Equal(0, code);
        Assert.Contains("model: none; closest is tiny_ghm_wide (1 missing, 1 unexpected, 0 mismatched)", text);
        Assert.Contains("  missing: neck.fpn_convs.0.conv.weight", text);
        Assert.Contains("  unexpected: backbone.conv1.weight", text);

        (_, string output, _) = Run([changed], "checkpoint", "inspect", Fixture("mmdet_like_zip.pth"), "--json");
        using JsonDocument json = JsonDocument.Parse(output);
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("model").ValueKind);
        JsonElement closest = json.RootElement.GetProperty("closest");
        Assert.Equal("tiny_ghm_wide", closest.GetProperty("model").GetString());
        Assert.Equal(["neck.fpn_convs.0.conv.weight"], closest.GetProperty("missing").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["backbone.conv1.weight"], closest.GetProperty("unexpected").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public void Inspect_without_candidates_says_so()
    {
        (int code, string output, _) = Run([], "checkpoint", "inspect", Fixture("mmdet_like_zip.pth"), "--json");
        Assert.Equal(0, code);
        using JsonDocument json = JsonDocument.Parse(output);
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("model").ValueKind);
        Assert.False(json.RootElement.TryGetProperty("closest", out _));
    }

    [Fact]
    public void Bad_file_exits_2_with_the_error_on_stderr_only()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ghm-bad-{Guid.NewGuid():N}.pth");
        try
        {
            File.WriteAllText(path, "definitely not a checkpoint");
            (int code, string output, string error) = Run([], "checkpoint", "inspect", path);
            Assert.Equal(2, code);
            Assert.Equal("", output);
            Assert.StartsWith($"ghm checkpoint inspect: checkpoint '{Path.GetFileName(path)}': not a PyTorch checkpoint", error);

            (int missingCode, string missingOutput, string missingError) = Run([], "checkpoint", "inspect", path + ".missing", "--json");
            Assert.Equal(2, missingCode);
            Assert.Equal("", missingOutput);
            Assert.Contains($"cannot open '{path}.missing': no such file", missingError);

            (int folderCode, _, string folderError) = Run([], "checkpoint", "inspect", Path.GetTempPath());
            Assert.Equal(2, folderCode);
            Assert.Contains("it is a folder", folderError);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
