using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using GhmGen.Imaging;
using GhmGen.Models;

namespace GhmGen.Cli;

/// <summary>
/// Options several commands share, and number options that check their value while parsing, so
/// a bad value is a parse error (exit 2) with a message in words rather than .NET's.
/// </summary>
internal static class CommonOptions
{
    /// <summary>Largest accepted <c>--threads</c>: each thread is a worker with its own scratch buffer.</summary>
    public const int MaxThreads = 1024;

    /// <summary><c>--model NAME</c>, required, one of the registered models.</summary>
    public static Option<string> Model()
    {
        var option = new Option<string>("--model") { Description = "Model name (see ghm models)", Required = true };
        option.Validators.Add(result =>
        {
            string? name = result.GetValueOrDefault<string>();
            if (name is not null && ModelRegistry.Find(name) is null)
                result.AddError($"unknown model '{name}'; known models: {string.Join(", ", ModelRegistry.All.Select(m => m.Name))}");
        });
        return option;
    }

    /// <summary><c>--threads N</c>: CPU threads, 0 (all cores) to <see cref="MaxThreads"/>.</summary>
    public static Option<int> Threads() => Int("--threads", "CPU threads (0 = all cores)", defaultValue: 0, min: 0, max: MaxThreads);

    /// <summary><c>--device auto|cpu|cuda</c>.</summary>
    public static Option<string> Device()
    {
        var option = new Option<string>("--device") { Description = "auto, cpu or cuda", DefaultValueFactory = _ => "auto" };
        option.AcceptOnlyFromAmong(Devices.Names);
        return option;
    }

    /// <summary>Smallest and largest edge <c>--scale</c> accepts, in pixels.</summary>
    public const int MinScaleEdge = 32, MaxScaleEdge = 8192;

    /// <summary>
    /// <c>--scale LONGxSHORT</c>: mmdetection's test <c>img_scale</c>, the box each image is resized
    /// into keeping its aspect ratio (default 1333x800). As in mmcv, the larger number bounds the
    /// long edge and the smaller the short one, so <c>96x160</c> is <c>160x96</c>.
    /// </summary>
    public static Option<PreprocessOptions?> Scale() => new("--scale")
    {
        Description = $"Resize each image to fit LONGxSHORT, keeping its aspect ratio (mmdetection's test img_scale; edges {MinScaleEdge} to {MaxScaleEdge}) [default: 1333x800]",
        CustomParser = result =>
        {
            string? text = SingleToken(result);
            if (text is null) return null;
            string[] parts = text.Split('x', 'X');
            if (parts.Length != 2
                || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int a)
                || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int b))
            {
                result.AddError($"--scale '{text}' is not LONGxSHORT (two whole numbers, e.g. 1333x800)");
                return PreprocessOptions.Default;
            }
            if (Math.Min(a, b) < MinScaleEdge || Math.Max(a, b) > MaxScaleEdge)
                result.AddError($"--scale {text} is out of range: each edge must be between {MinScaleEdge} and {MaxScaleEdge}");
            return PreprocessOptions.Default with { LongEdge = Math.Max(a, b), ShortEdge = Math.Min(a, b) };
        },
    };

    /// <summary>An integer option with a default, accepting <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static Option<int> Int(string name, string description, int defaultValue, int min, int max) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            string? text = SingleToken(result);
            if (text is null) return defaultValue;
            if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value))
                result.AddError($"{name} '{text}' is not a whole number");
            else if (value < min || value > max)
                result.AddError($"{name} {value} is out of range: it must be between {min} and {max}");
            return value;
        },
    };

    /// <summary>A number option with a default, accepting <paramref name="min"/> &lt;= value &lt; <paramref name="maxExclusive"/>.</summary>
    public static Option<float> Float(string name, string description, float defaultValue, float min, float maxExclusive) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            string? text = SingleToken(result);
            if (text is null) return defaultValue;
            if (!float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) || !float.IsFinite(value))
                result.AddError($"{name} '{text}' is not a number");
            else if (!(value >= min && value < maxExclusive))
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"{name} {text} is out of range: it must be in [{min}, {maxExclusive})"));
            return value;
        },
    };

    private static string? SingleToken(ArgumentResult result) => result.Tokens.Count == 0 ? null : result.Tokens[0].Value;
}
