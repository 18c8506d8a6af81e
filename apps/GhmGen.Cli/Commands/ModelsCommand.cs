using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using GhmGen.Models;

namespace GhmGen.Cli.Commands;

/// <summary><c>ghm models [--json]</c>: the registered models with parameter counts and conv work.</summary>
internal static class ModelsCommand
{
    /// <summary>Input sizes (height x width) reported in the GMAC columns.</summary>
    private static readonly (int Height, int Width)[] Sizes = [(800, 1216), (512, 512)];

    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table" };
        var command = new Command("models", "List the models with parameter counts per part and convolution GMACs") { json };
        command.SetAction(parse =>
        {
            TextWriter output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(json)) WriteJson(output);
            else WriteTable(output);
            return 0;
        });
        return command;
    }

    private static long Part(ModelInfo model, string part) => model.Parts.First(p => p.Part == part).Parameters;

    private static double Gmacs(ModelInfo model, (int Height, int Width) size) => model.MultiplyAccumulates(size.Height, size.Width) / 1e9;

    private static void WriteTable(TextWriter output)
    {
        var inv = CultureInfo.InvariantCulture;
        string header = string.Format(inv, "{0,-30} {1,14} {2,14} {3,12} {4,12} {5,14} {6,13}",
            "model", "parameters", "backbone", "neck", "head", "GMAC 800x1216", "GMAC 512x512");
        output.WriteLine(header);
        output.WriteLine(new string('-', header.Length));
        foreach (ModelInfo m in ModelRegistry.All)
            output.WriteLine(string.Format(inv, "{0,-30} {1,14:N0} {2,14:N0} {3,12:N0} {4,12:N0} {5,14:F1} {6,13:F1}",
                m.Name, m.TotalParameters, Part(m, "backbone"), Part(m, "neck"), Part(m, "head"), Gmacs(m, Sizes[0]), Gmacs(m, Sizes[1])));
    }

    private static void WriteJson(TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartArray();
            foreach (ModelInfo m in ModelRegistry.All)
            {
                writer.WriteStartObject();
                writer.WriteString("name", m.Name);
                writer.WriteStartObject("parameters");
                writer.WriteNumber("total", m.TotalParameters);
                foreach (string part in new[] { "backbone", "neck", "head" }) writer.WriteNumber(part, Part(m, part));
                writer.WriteEndObject();
                writer.WriteStartObject("gmacs");
                foreach ((int Height, int Width) size in Sizes)
                    writer.WriteNumber($"{size.Height}x{size.Width}", Math.Round(Gmacs(m, size), 3));
                writer.WriteEndObject();
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }
}
