using System.Collections.Immutable;
using GhmGen.Generators.Diagnostics;
using GhmGen.Generators.Models;
using Microsoft.CodeAnalysis;

namespace GhmGen.Generators;

/// <summary>
/// Turns classes marked [Network] (and the [Block]s they use) into typed layer code:
/// declarations -> equatable models -> flattened, checked graph -> C# text.
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed partial class NetworkGenerator : IIncrementalGenerator
{
    /// <summary>Tracking name of the step that reads [Block] classes.</summary>
    public const string BlocksStep = "Blocks";

    /// <summary>Tracking name of the step that reads [Network] classes.</summary>
    public const string NetworksStep = "Networks";

    /// <summary>Tracking name of the step that collects all blocks.</summary>
    public const string AllBlocksStep = "AllBlocks";

    /// <summary>Tracking name of the step that expands and checks each network.</summary>
    public const string ExpandStep = "Expand";

    /// <summary>Tracking name of the step that holds the valid models for emission.</summary>
    public const string ModelsStep = "Models";

    internal const string AttributeNamespace = "GhmGen.Description";

    /// <inheritdoc/>
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        IncrementalValuesProvider<BlockDecl> blocks = context.SyntaxProvider
            .ForAttributeWithMetadataName(AttributeNamespace + ".BlockAttribute",
                static (node, _) => node is Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax,
                static (ctx, ct) => Parse((INamedTypeSymbol)ctx.TargetSymbol, ct))
            .WithTrackingName(BlocksStep);

        IncrementalValuesProvider<BlockDecl> networks = context.SyntaxProvider
            .ForAttributeWithMetadataName(AttributeNamespace + ".NetworkAttribute",
                static (node, _) => node is Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax,
                static (ctx, ct) => Parse((INamedTypeSymbol)ctx.TargetSymbol, ct))
            .WithTrackingName(NetworksStep);

        IncrementalValueProvider<ImmutableArray<BlockDecl>> allBlocks = blocks.Collect().WithTrackingName(AllBlocksStep);

        IncrementalValuesProvider<ExpansionResult> expanded = networks
            .Combine(allBlocks)
            .Select(static (pair, _) => Expander.Expand(pair.Left, pair.Right))
            .WithTrackingName(ExpandStep);

        // Diagnostics on their own branch, apart from source output.
        context.RegisterSourceOutput(expanded.SelectMany(static (r, _) => r.Diagnostics),
            static (spc, d) => spc.ReportDiagnostic(Diagnostic.Create(
                DiagnosticDescriptors.ById[d.Id], d.Location?.ToLocation(), d.Arguments.ToArrayCompat())));

        IncrementalValuesProvider<NetworkModel> models = expanded
            .Where(static r => r.Model is not null)
            .Select(static (r, _) => r.Model!)
            .WithTrackingName(ModelsStep);

        context.RegisterSourceOutput(models, static (spc, model) =>
            spc.AddSource($"{model.TypeName}.Network.g.cs", Emitter.Emit(model)));
    }
}
