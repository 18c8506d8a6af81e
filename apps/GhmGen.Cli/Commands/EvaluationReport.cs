using System.Globalization;
using System.Text;
using System.Text.Json;
using GhmGen.Evaluation;

namespace GhmGen.Cli.Commands;

/// <summary>
/// What <c>ghm eval</c> and <c>ghm test</c> print on standard output: pycocotools' 12 summary
/// lines; with <c>--classwise</c>, mmdetection's per-category AP table; with <c>--json</c>, one
/// JSON object as the last line:
/// <c>{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl", "per_class": {"NAME": AP}}</c>.
/// Numbers are written in full (shortest round-trip form of the double); a summary figure
/// without ground truth is -1 (as in pycocotools' <c>stats</c>), a category without ground truth
/// has AP null (NaN in mmdetection). Two categories with one name are keyed <c>"NAME (id N)"</c>.
/// </summary>
internal static class EvaluationReport
{
    /// <summary>Writes the summary, the table when <paramref name="classwise"/>, the JSON line when <paramref name="json"/>.</summary>
    public static void Write(TextWriter output, CocoEvaluation evaluation, bool classwise, bool json)
    {
        var text = new StringBuilder(evaluation.Summary.Format());
        if (classwise) text.Append(ClasswiseTable(evaluation));
        if (json) text.Append(Json(evaluation)).Append('\n');
        output.Write(text.ToString().ReplaceLineEndings(output.NewLine));
    }

    /// <summary>
    /// mmdetection's classwise table (terminaltables' AsciiTable): up to three (category, AP) pairs
    /// per row, AP with 3 decimals ("nan" without ground truth), each line ending in '\n'.
    /// </summary>
    public static string ClasswiseTable(CocoEvaluation evaluation)
    {
        IReadOnlyList<CocoCategoryAp> perCategory = evaluation.PerCategory;
        var cells = new List<string>(2 * perCategory.Count);
        foreach (CocoCategoryAp c in perCategory)
        {
            cells.Add(c.Category.Name.ReplaceLineEndings(" "));
            cells.Add(CocoSummary.FormatFixed3(c.AP));
        }
        int columns = Math.Max(2, Math.Min(6, cells.Count));
        var rows = new List<string[]> { Enumerable.Range(0, columns).Select(i => i % 2 == 0 ? "category" : "AP").ToArray() };
        for (int start = 0; start < cells.Count; start += columns)
            rows.Add(Enumerable.Range(start, columns).Select(i => i < cells.Count ? cells[i] : "").ToArray());
        int[] widths = Enumerable.Range(0, columns).Select(col => rows.Max(r => r[col].Length)).ToArray();

        string border = "+" + string.Join("+", widths.Select(w => new string('-', w + 2))) + "+\n";
        var table = new StringBuilder(border);
        for (int r = 0; r < rows.Count; r++)
        {
            table.Append('|');
            for (int col = 0; col < columns; col++) table.Append(' ').Append(rows[r][col].PadRight(widths[col])).Append(" |");
            table.Append('\n');
            if (r == 0) table.Append(border);
        }
        return table.Append(border).ToString();
    }

    /// <summary>The JSON object (one line, no newline).</summary>
    public static string Json(CocoEvaluation evaluation)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            IReadOnlyList<string> keys = CocoSummary.Keys;
            for (int i = 0; i < keys.Count; i++)
            {
                double value = evaluation.Summary.Stats[i];
                if (double.IsFinite(value)) writer.WriteNumber(keys[i], value);
                else writer.WriteNull(keys[i]);
            }
            writer.WriteStartObject("per_class");
            IReadOnlyList<CocoCategoryAp> perCategory = evaluation.PerCategory;
            var nameCount = perCategory.GroupBy(c => c.Category.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
            foreach (CocoCategoryAp c in perCategory)
            {
                string key = nameCount[c.Category.Name] > 1
                    ? string.Create(CultureInfo.InvariantCulture, $"{c.Category.Name} (id {c.Category.Id})")
                    : c.Category.Name;
                if (!double.IsFinite(c.AP)) writer.WriteNull(key);
                else writer.WriteNumber(key, c.AP);
            }
            writer.WriteEndObject();
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
