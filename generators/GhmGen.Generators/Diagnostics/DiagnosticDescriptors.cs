using System.Collections.Generic;
using Microsoft.CodeAnalysis;

namespace GhmGen.Generators.Diagnostics;

/// <summary>Every diagnostic the generator reports. IDs are recorded in AnalyzerReleases.*.md.</summary>
internal static class DiagnosticDescriptors
{
    private const string Category = "GhmGen.Description";
    private const string HelpLink = "https://github.com/ghmgen/ghmgen/blob/main/README.md#diagnostics";

    /// <summary>GHM001: "Type '{0}' must be declared partial so the generator can add its layers".</summary>
    public static readonly DiagnosticDescriptor NotPartial = Error("GHM001",
        "Network type must be partial",
        "Type '{0}' must be declared partial so the generator can add its layers; add the 'partial' modifier");

    /// <summary>GHM002: "{0}: expected {1} input channels but '{2}' has {3}".</summary>
    public static readonly DiagnosticDescriptor ChannelMismatch = Error("GHM002",
        "Channel mismatch between connected layers",
        "{0}: expected {1} channels but '{2}' has {3}; change the declared channels or connect a value with {1} channels");

    /// <summary>GHM003: "{0}: groups {1} must divide both input channels {2} and output channels {3}".</summary>
    public static readonly DiagnosticDescriptor GroupsDoNotDivide = Error("GHM003",
        "Groups must divide the channels",
        "{0}: groups {1} must divide both input channels {2} and output channels {3}; choose a group count that divides both");

    /// <summary>GHM004: "{0}: {1} must be {2} but is {3}".</summary>
    public static readonly DiagnosticDescriptor NonPositive = Error("GHM004",
        "Value out of range",
        "{0}: {1} must be {2} but is {3}");

    /// <summary>GHM005: "Name '{0}' is declared twice{1}".</summary>
    public static readonly DiagnosticDescriptor Duplicate = Error("GHM005",
        "Duplicate layer or key name",
        "Name '{0}' is declared twice{1}; give each layer a unique name");

    /// <summary>GHM006: "Unknown block '{0}': no class marked [Block] has this name".</summary>
    public static readonly DiagnosticDescriptor UnknownBlock = Error("GHM006",
        "Unknown block",
        "Unknown block '{0}': no class marked [Block] has this name; declare it or use nameof(...) of an existing block");

    /// <summary>GHM007: "{0}: unknown value '{1}'{2}".</summary>
    public static readonly DiagnosticDescriptor UnknownValue = Error("GHM007",
        "Reference to an unknown layer or value",
        "{0}: unknown value '{1}'{2}");

    /// <summary>GHM008: "{0} forms a cycle: {1}".</summary>
    public static readonly DiagnosticDescriptor Cycle = Error("GHM008",
        "Cycle in the network",
        "{0} forms a cycle: {1}; a layer cannot depend on its own output");

    /// <summary>GHM009: "{0}: the feature map shrinks to {1}x{2} for the minimum input size {3}x{3}".</summary>
    public static readonly DiagnosticDescriptor ShrinksToNothing = Error("GHM009",
        "Feature map shrinks to nothing",
        "{0}: the feature map shrinks to {1}x{2} for the minimum input size {3}x{3}; add padding, reduce the stride, or raise MinInputSize");

    /// <summary>GHM010: "{0}: cannot evaluate '{1}': {2}".</summary>
    public static readonly DiagnosticDescriptor BadExpression = Error("GHM010",
        "Invalid expression or argument",
        "{0}: cannot evaluate '{1}': {2}");

    /// <summary>GHM011: "{0}: missing required argument '{1}' of block '{2}'".</summary>
    public static readonly DiagnosticDescriptor MissingArgument = Error("GHM011",
        "Missing required argument",
        "{0}: missing required argument '{1}' of block '{2}'; pass it in Args");

    /// <summary>GHM012: "{0}: {1}".</summary>
    public static readonly DiagnosticDescriptor BadShape = Error("GHM012",
        "Invalid network inputs or outputs",
        "{0}: {1}");

    /// <summary>GHM013: "Type '{0}' must be a non-generic top-level class".</summary>
    public static readonly DiagnosticDescriptor NestedType = Error("GHM013",
        "Network type must be top-level",
        "Type '{0}' must be a non-generic class declared directly in a namespace");

    /// <summary>GHM014: "{0}: {1}".</summary>
    public static readonly DiagnosticDescriptor NoForward = Error("GHM014",
        "Layer pattern the forward pass cannot run",
        "{0}: {1}");

    /// <summary>GHM015: "{0}: frozen path '{1}' names no layer".</summary>
    public static readonly DiagnosticDescriptor FrozenPathNamesNothing = Error("GHM015",
        "Frozen path names nothing",
        "{0}: frozen path '{1}' names no layer; write the checkpoint key of a layer, or of a block instance or stage (a dotted prefix of its layers' keys)");

    /// <summary>All descriptors by ID (diagnostics travel through the pipeline as IDs).</summary>
    public static readonly IReadOnlyDictionary<string, DiagnosticDescriptor> ById = new Dictionary<string, DiagnosticDescriptor>
    {
        [NotPartial.Id] = NotPartial,
        [ChannelMismatch.Id] = ChannelMismatch,
        [GroupsDoNotDivide.Id] = GroupsDoNotDivide,
        [NonPositive.Id] = NonPositive,
        [Duplicate.Id] = Duplicate,
        [UnknownBlock.Id] = UnknownBlock,
        [UnknownValue.Id] = UnknownValue,
        [Cycle.Id] = Cycle,
        [ShrinksToNothing.Id] = ShrinksToNothing,
        [BadExpression.Id] = BadExpression,
        [MissingArgument.Id] = MissingArgument,
        [BadShape.Id] = BadShape,
        [NestedType.Id] = NestedType,
        [NoForward.Id] = NoForward,
        [FrozenPathNamesNothing.Id] = FrozenPathNamesNothing,
    };

    private static DiagnosticDescriptor Error(string id, string title, string message) =>
        new(id, title, message, Category, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: HelpLink);
}
