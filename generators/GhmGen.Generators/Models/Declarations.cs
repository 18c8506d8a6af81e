using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace GhmGen.Generators.Models;

/// <summary>A source location as plain data (file path and spans), so models stay equatable.</summary>
internal sealed record LocationInfo(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
{
    public Location ToLocation() => Location.Create(FilePath, Span, LineSpan);

    public static LocationInfo? From(AttributeData attribute)
    {
        SyntaxReference? reference = attribute.ApplicationSyntaxReference;
        if (reference is null) return null;
        Location location = reference.SyntaxTree.GetLocation(reference.Span);
        return new LocationInfo(reference.SyntaxTree.FilePath, reference.Span, location.GetLineSpan().Span);
    }
}

/// <summary>One named argument of a layer attribute, its value as text (ints and bools are converted).</summary>
internal sealed record Setting(string Name, string Value);

/// <summary>One attribute of a block or network declaration, in source order.</summary>
/// <param name="Kind">The attribute's short name: Conv, BatchNorm, Relu, MaxPool, Upsample, Add, Use, Stage, Shared, Input, Output, Let, Buffer.</param>
/// <param name="Name">Its name argument, if any.</param>
/// <param name="Settings">Every other argument.</param>
/// <param name="Location">Where the attribute is written.</param>
internal sealed record OpDecl(string Kind, string? Name, EquatableArray<Setting> Settings, LocationInfo? Location)
{
    public string? Get(string name)
    {
        foreach (Setting s in Settings)
            if (s.Name == name) return s.Value;
        return null;
    }
}

/// <summary>A class marked [Block] or [Network], reduced to data.</summary>
internal sealed record BlockDecl(
    string TypeName,
    string Namespace,
    string Accessibility,
    bool IsPartial,
    bool IsNested,
    bool IsNetwork,
    string? NetworkName,
    string? NetworkBlock,
    string? NetworkArgs,
    int MinInputSize,
    string Parameters,
    EquatableArray<OpDecl> Ops,
    LocationInfo? Location);

/// <summary>A diagnostic as data: descriptor id, message arguments and location.</summary>
internal sealed record DiagnosticInfo(string Id, EquatableArray<string> Arguments, LocationInfo? Location);
