using System.Text;

namespace GhmGen.Generators.Emit;

/// <summary>An indented text writer for generated C#.</summary>
internal sealed class CodeWriter
{
    private readonly StringBuilder _text = new();
    private int _depth;

    public CodeWriter Line(string line = "")
    {
        if (line.Length > 0) _text.Append(' ', _depth * 4).Append(line);
        _text.Append('\n');
        return this;
    }

    public CodeWriter Open(string line)
    {
        Line(line);
        Line("{");
        _depth++;
        return this;
    }

    /// <summary>Starts a collection expression: the line, then "[" on its own line.</summary>
    public CodeWriter OpenList(string line)
    {
        Line(line);
        Line("[");
        _depth++;
        return this;
    }

    public CodeWriter CloseList()
    {
        _depth--;
        return Line("];");
    }

    public CodeWriter Close(string suffix = "")
    {
        _depth--;
        return Line("}" + suffix);
    }

    public override string ToString() => _text.ToString();
}
