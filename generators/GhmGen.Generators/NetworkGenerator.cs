using System.Collections.Immutable;
using GhmGen.Generators.Diagnostics;
using GhmGen.Generators.Emit;
using GhmGen.Generators.Models;
using GhmGen.Generators.Planning;
using Microsoft.CodeAnalysis;

namespace GhmGen.Generators;

/// <summary>
/// Turns classes marked [Network] (and the [Block]s they use) into typed layer code:
/// declarations -> typed, equatable declarations -> flattened, checked graph -> one plan of the
/// forward and backward passes and their memory -> C# text.
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed partial class NetworkGenerator : IIncrementalGenerator
{
    /// <summary>Tracking name of the step that reads [Block] classes.</summary>
    public const string BlocksStep = "Blocks";

    /// <summary>Tracking name of the step that reads [Network] classes.</summary>
    public const string NetworksStep = "Networks";

    /// <summary>Tracking name of the step that reads the public [Block] classes of referenced assemblies (e.g. GhmGen.Models' ResNet, Fpn, RetinaHead, RetinaNet).</summary>
    public const string ReferencedBlocksStep = "ReferencedBlocks";

    /// <summary>Tracking name of the step that collects all blocks: the compilation's own, then the referenced ones.</summary>
    public const string AllBlocksStep = "AllBlocks";

    /// <summary>Tracking name of the step that expands and checks each network.</summary>
    public const string ExpandStep = "Expand";

    /// <summary>Tracking name of the step that plans each network's forward and backward passes and their memory.</summary>
    public const string PlanStep = "Plan";

    /// <summary>Tracking name of the step that holds the planned networks for emission.</summary>
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

        // Blocks compiled into referenced assemblies (a package's blocks) are read from metadata.
        // This runs on every compilation change, but only walks the assemblies that reference the
        // description attributes, and its value compares equal while they are unchanged, so the
        // steps after it stay cached.
        IncrementalValueProvider<EquatableArray<BlockDecl>> referencedBlocks = context.CompilationProvider
            .Select(static (compilation, ct) => ReferencedBlocks.Read(compilation, ct))
            .WithTrackingName(ReferencedBlocksStep);

        // A block declared in this compilation wins over a referenced one of the same name.
        IncrementalValueProvider<EquatableArray<BlockDecl>> allBlocks = blocks.Collect()
            .Combine(referencedBlocks)
            .Select(static (pair, _) => new EquatableArray<BlockDecl>([.. pair.Left, .. pair.Right]))
            .WithTrackingName(AllBlocksStep);

        IncrementalValuesProvider<ExpansionResult> expanded = networks
            .Combine(allBlocks)
            .Select(static (pair, _) => Expander.Expand(pair.Left, pair.Right))
            .WithTrackingName(ExpandStep);

        IncrementalValuesProvider<PlanResult> planned = expanded
            .Select(static (expansion, _) => NetworkPlanner.Plan(expansion))
            .WithTrackingName(PlanStep);

        // Diagnostics on their own branch, apart from source output: a block's attribute errors
        // once per block, everything else once per network.
        context.RegisterSourceOutput(blocks.SelectMany(static (b, _) => b.Diagnostics), Report);
        context.RegisterSourceOutput(planned.SelectMany(static (r, _) => r.Diagnostics), Report);

        IncrementalValuesProvider<PlannedNetwork> models = planned
            .Where(static r => r.Network is not null)
            .Select(static (r, _) => r.Network!)
            .WithTrackingName(ModelsStep);

        context.RegisterSourceOutput(models, static (spc, network) =>
        {
            spc.AddSource($"{network.Model.TypeName}.Network.g.cs", NetworkEmitter.Emit(network));
            spc.AddSource($"{network.Model.TypeName}.Training.g.cs", TrainingEmitter.Emit(network));
            spc.AddSource($"{network.Model.TypeName}.Descriptor.g.cs", DescriptorEmitter.Emit(network));
        });
    }

    private static void Report(SourceProductionContext spc, DiagnosticInfo d) => spc.ReportDiagnostic(Diagnostic.Create(
        DiagnosticDescriptors.ById[d.Id], d.Location?.ToLocation(), d.Arguments.ToArrayCompat()));
}
