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

/// <summary>A diagnostic as data: descriptor id, message arguments and location.</summary>
internal sealed record DiagnosticInfo(string Id, EquatableArray<string> Arguments, LocationInfo? Location);

// Numbers of the language (channels, kernel sizes, counts, conditions) stay text here: an int
// literal or an integer expression over the block's parameters, evaluated per block instance.

/// <summary>A <c>[Network]</c> attribute.</summary>
/// <param name="Name">The network's public name.</param>
/// <param name="Block">The block instantiated as the whole network, or null for the class's own layers.</param>
/// <param name="Args">Arguments for <paramref name="Block"/>.</param>
/// <param name="MinInputSize">The smallest input height and width.</param>
/// <param name="Frozen">Comma-separated key paths whose parameters are not trained, or null.</param>
/// <param name="NormEval">Whether trained batch norms train with running statistics (folded, mmdetection's norm_eval) rather than the batch's.</param>
/// <param name="Location">Where the attribute is written, for diagnostics.</param>
internal sealed record NetworkDecl(string Name, string? Block, string? Args, int MinInputSize, string? Frozen, bool NormEval, LocationInfo? Location);

/// <summary>An <c>[Input]</c> of a block or network.</summary>
internal sealed record InputDecl(string Name, string? Channels, LocationInfo? Location);

/// <summary>An <c>[Output]</c> of a block or network.</summary>
internal sealed record OutputDecl(string Name, string From, LocationInfo? Location);

/// <summary>A <c>[Let]</c>: a named integer of a block instance.</summary>
internal sealed record LetDecl(string Name, string Expression, LocationInfo? Location);

/// <summary>
/// One layer attribute of a block, in source order: what every layer has (its name, input,
/// condition and whether it is trained); each kind adds its own arguments.
/// </summary>
internal abstract record LayerDecl(string? Name, string? From, string? When, bool Trainable, LocationInfo? Location)
{
    /// <summary>The attribute's short name (for messages and automatic layer names).</summary>
    public abstract string Kind { get; }
}

/// <summary><c>[Conv]</c>.</summary>
internal sealed record ConvDecl(string? Name, string? From, string? When, bool Trainable, LocationInfo? Location,
    string? Out, string? In, string? Kernel, string? Stride, string? Padding, string? Groups, bool Bias, bool Relu)
    : LayerDecl(Name, From, When, Trainable, Location)
{
    public override string Kind => "Conv";
}

/// <summary><c>[BatchNorm]</c>.</summary>
internal sealed record BatchNormDecl(string? Name, string? From, string? When, bool Trainable, LocationInfo? Location)
    : LayerDecl(Name, From, When, Trainable, Location)
{
    public override string Kind => "BatchNorm";
}

/// <summary><c>[Relu]</c>.</summary>
internal sealed record ReluDecl(string? Name, string? From, string? When, LocationInfo? Location)
    : LayerDecl(Name, From, When, true, Location)
{
    public override string Kind => "Relu";
}

/// <summary><c>[MaxPool]</c>.</summary>
internal sealed record MaxPoolDecl(string? Name, string? From, string? When, LocationInfo? Location,
    string? Kernel, string? Stride, string? Padding)
    : LayerDecl(Name, From, When, true, Location)
{
    public override string Kind => "MaxPool";
}

/// <summary><c>[Upsample]</c>: nearest to the size of <paramref name="SizeOf"/>.</summary>
internal sealed record UpsampleDecl(string? Name, string? From, string? When, LocationInfo? Location, string SizeOf)
    : LayerDecl(Name, From, When, true, Location)
{
    public override string Kind => "Upsample";
}

/// <summary><c>[Add]</c>.</summary>
internal sealed record AddDecl(string? Name, string? From, string? When, LocationInfo? Location, string Left, string Right)
    : LayerDecl(Name, From, When, true, Location)
{
    public override string Kind => "Add";
}

/// <summary><c>[Buffer]</c>: state saved with the weights, never trained.</summary>
internal sealed record BufferDecl(string Name, int Length, LocationInfo? Location)
    : LayerDecl(Name, null, null, false, Location)
{
    public override string Kind => "Buffer";
}

/// <summary><c>[Use]</c>: one instance of a block.</summary>
internal sealed record UseDecl(string? Name, string? From, string? When, bool Trainable, LocationInfo? Location,
    string Block, string? Args, string? Part)
    : LayerDecl(Name, From, When, Trainable, Location)
{
    public override string Kind => "Use";
}

/// <summary><c>[Stage]</c>: <paramref name="Count"/> chained instances of a block.</summary>
internal sealed record StageDecl(string? Name, string? From, string? When, bool Trainable, LocationInfo? Location,
    string Block, string? Count, string? Args, string? First)
    : LayerDecl(Name, From, When, Trainable, Location)
{
    public override string Kind => "Stage";
}

/// <summary><c>[Shared]</c>: one set of a block's weights applied to each value of <c>From</c>.</summary>
internal sealed record SharedDecl(string? Name, string? From, string? When, bool Trainable, LocationInfo? Location,
    string Block, string? Args, string? Part)
    : LayerDecl(Name, From, When, Trainable, Location)
{
    public override string Kind => "Shared";
}

/// <summary>A class marked [Block] or [Network], reduced to data.</summary>
/// <param name="TypeName">The class's name.</param>
/// <param name="Namespace">Its namespace ("" for the global namespace).</param>
/// <param name="Accessibility">Its accessibility as written in C# (<c>public</c>, <c>internal</c>).</param>
/// <param name="IsPartial">Whether it is declared <c>partial</c> (a network must be, for the generator to add to it).</param>
/// <param name="IsNested">Whether it is nested in another type (not supported for networks).</param>
/// <param name="IsBlock">Whether the class is marked [Block] (it is then parsed, and its errors reported, as a block).</param>
/// <param name="Network">The [Network] attribute, when the class has one.</param>
/// <param name="Parameters">The [Block] parameter list ("" for none).</param>
/// <param name="Inputs">Its <c>[Input]</c> attributes in order.</param>
/// <param name="Outputs">Its <c>[Output]</c> attributes in order.</param>
/// <param name="Lets">Its <c>[Let]</c> attributes in order.</param>
/// <param name="Layers">Its layer attributes in declaration order.</param>
/// <param name="Diagnostics">Errors found while reading the attributes (the declaration is unusable when any).</param>
/// <param name="Location">Where the [Network] or [Block] attribute is; null for a block read from a referenced assembly.</param>
internal sealed record BlockDecl(
    string TypeName,
    string Namespace,
    string Accessibility,
    bool IsPartial,
    bool IsNested,
    bool IsBlock,
    NetworkDecl? Network,
    string Parameters,
    EquatableArray<InputDecl> Inputs,
    EquatableArray<OutputDecl> Outputs,
    EquatableArray<LetDecl> Lets,
    EquatableArray<LayerDecl> Layers,
    EquatableArray<DiagnosticInfo> Diagnostics,
    LocationInfo? Location)
{
    /// <summary>The referenced assembly the block was read from (its metadata), or null for a class of the compilation being generated.</summary>
    public string? Assembly { get; init; }
}
