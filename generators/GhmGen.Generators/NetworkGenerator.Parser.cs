using System.Collections.Generic;
using System.Globalization;
using System.Threading;
using GhmGen.Generators.Models;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace GhmGen.Generators;

public sealed partial class NetworkGenerator
{
    /// <summary>Reduces a [Block]/[Network] class to a <see cref="BlockDecl"/>: plain data only.</summary>
    internal static BlockDecl Parse(INamedTypeSymbol type, CancellationToken ct)
    {
        bool isPartial = false;
        foreach (SyntaxReference reference in type.DeclaringSyntaxReferences)
            if (reference.GetSyntax(ct) is ClassDeclarationSyntax cls)
                foreach (var modifier in cls.Modifiers)
                    if (modifier.Text == "partial") isPartial = true;

        bool isNetwork = false;
        string? networkName = null, networkBlock = null, networkArgs = null, parameters = "";
        int minInputSize = 32;
        LocationInfo? typeLocation = null;
        var ops = new List<OpDecl>();
        foreach (AttributeData attribute in type.GetAttributes())
        {
            ct.ThrowIfCancellationRequested();
            INamedTypeSymbol? cls = attribute.AttributeClass;
            if (cls is null || cls.ContainingNamespace?.ToDisplayString() != AttributeNamespace) continue;
            string kind = cls.Name.EndsWith("Attribute") ? cls.Name.Substring(0, cls.Name.Length - "Attribute".Length) : cls.Name;
            LocationInfo? location = LocationInfo.From(attribute);
            var settings = new List<Setting>();
            foreach (KeyValuePair<string, TypedConstant> named in attribute.NamedArguments)
                if (AsText(named.Value) is { } text) settings.Add(new Setting(named.Key, text));
            var positional = new List<string?>();
            foreach (TypedConstant arg in attribute.ConstructorArguments) positional.Add(AsText(arg));

            switch (kind)
            {
                case "Network":
                    isNetwork = true;
                    typeLocation = location;
                    networkName = positional.Count > 0 ? positional[0] : null;
                    foreach (Setting s in settings)
                    {
                        if (s.Name == "Block") networkBlock = s.Value;
                        else if (s.Name == "Args") networkArgs = s.Value;
                        else if (s.Name == "MinInputSize") minInputSize = int.Parse(s.Value, CultureInfo.InvariantCulture);
                    }
                    break;
                case "Block":
                    typeLocation ??= location;
                    parameters = positional.Count > 0 ? positional[0] ?? "" : "";
                    break;
                default:
                    // Positional arguments after the name become settings named by the attribute's parameters.
                    string? name = positional.Count > 0 ? positional[0] : null;
                    IMethodSymbol? ctor = attribute.AttributeConstructor;
                    for (int i = 1; i < positional.Count && ctor is not null && i < ctor.Parameters.Length; i++)
                        if (positional[i] is { } value) settings.Add(new Setting(ctor.Parameters[i].Name, value));
                    ops.Add(new OpDecl(kind, name, settings.ToEquatableArray(), location));
                    break;
            }
        }

        return new BlockDecl(
            type.Name,
            type.ContainingNamespace is { IsGlobalNamespace: false } ns ? ns.ToDisplayString() : "",
            type.DeclaredAccessibility == Accessibility.Public ? "public" : "internal",
            isPartial,
            type.ContainingType is not null || type.IsGenericType,
            isNetwork,
            networkName,
            networkBlock,
            networkArgs,
            minInputSize,
            parameters,
            ops.ToEquatableArray(),
            typeLocation);
    }

    private static string? AsText(TypedConstant constant)
    {
        if (constant.IsNull || constant.Kind == TypedConstantKind.Array) return null;
        return constant.Value switch
        {
            string s => s,
            bool b => b ? "true" : "false",
            int i => i.ToString(CultureInfo.InvariantCulture),
            long l => l.ToString(CultureInfo.InvariantCulture),
            _ => System.Convert.ToString(constant.Value, CultureInfo.InvariantCulture),
        };
    }
}
