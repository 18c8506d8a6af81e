using System.Collections.Generic;
using System.Linq;
using System.Threading;
using GhmGen.Generators.Models;
using Microsoft.CodeAnalysis;

namespace GhmGen.Generators;

public sealed partial class NetworkGenerator
{
    /// <summary>
    /// The [Block] classes of the assemblies a compilation references, read from their metadata:
    /// a package such as GhmGen.Models ships its blocks compiled, with the description attributes
    /// kept on each class, so a user's one-line <c>[Network(..., Block = nameof(RetinaNet))]</c>
    /// expands them as if they were declared in the user's project. Only assemblies that reference
    /// the assembly of the attributes are walked, and only blocks accessible from the compilation
    /// (public, or internal with InternalsVisibleTo) are taken. The same simple name in two
    /// referenced assemblies: the first in reference order wins.
    /// </summary>
    internal static class ReferencedBlocks
    {
        public static EquatableArray<BlockDecl> Read(Compilation compilation, CancellationToken ct)
        {
            INamedTypeSymbol? attribute = compilation.GetTypeByMetadataName(AttributeNamespace + ".BlockAttribute");
            if (attribute is null) return EquatableArray<BlockDecl>.Empty;
            IAssemblySymbol attributeAssembly = attribute.ContainingAssembly;
            var found = new List<BlockDecl>();
            foreach (IAssemblySymbol assembly in compilation.SourceModule.ReferencedAssemblySymbols)
            {
                ct.ThrowIfCancellationRequested();
                if (!SymbolEqualityComparer.Default.Equals(assembly, attributeAssembly) && !References(assembly, attributeAssembly.Name)) continue;
                Walk(assembly.GlobalNamespace, compilation, attribute, assembly.Identity.Name, found, ct);
            }
            return found.ToEquatableArray();
        }

        private static bool References(IAssemblySymbol assembly, string name) =>
            assembly.Modules.Any(m => m.ReferencedAssemblies.Any(r => r.Name == name));

        private static void Walk(INamespaceOrTypeSymbol container, Compilation compilation, INamedTypeSymbol attribute,
            string assemblyName, List<BlockDecl> found, CancellationToken ct)
        {
            if (container is INamespaceSymbol ns)
                foreach (INamespaceSymbol child in ns.GetNamespaceMembers())
                    Walk(child, compilation, attribute, assemblyName, found, ct);
            foreach (INamedTypeSymbol type in container.GetTypeMembers())
            {
                ct.ThrowIfCancellationRequested();
                if (type.TypeKind != TypeKind.Class || !compilation.IsSymbolAccessibleWithin(type, compilation.Assembly)) continue;
                if (type.GetAttributes().Any(a => SymbolEqualityComparer.Default.Equals(a.AttributeClass, attribute)))
                    found.Add(Parse(type, ct) with { Assembly = assemblyName });
                Walk(type, compilation, attribute, assemblyName, found, ct);
            }
        }
    }
}
