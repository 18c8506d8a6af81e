using System.Collections.Generic;
using System.Globalization;
using System.Threading;
using GhmGen.Generators.Diagnostics;
using GhmGen.Generators.Models;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace GhmGen.Generators;

public sealed partial class NetworkGenerator
{
    /// <summary>
    /// Reduces a [Block]/[Network] class to a <see cref="BlockDecl"/>: plain data only. Each
    /// attribute is read once into its typed declaration; an argument that is missing, of the
    /// wrong type, or unknown to the generator (an attribute parameter renamed in the runtime)
    /// becomes a GHM010 diagnostic at the attribute, never an exception.
    /// </summary>
    internal static BlockDecl Parse(INamedTypeSymbol type, CancellationToken ct)
    {
        bool isPartial = false;
        foreach (SyntaxReference reference in type.DeclaringSyntaxReferences)
            if (reference.GetSyntax(ct) is ClassDeclarationSyntax cls)
                foreach (var modifier in cls.Modifiers)
                    if (modifier.Text == "partial") isPartial = true;

        bool isBlock = false;
        NetworkDecl? network = null;
        string parameters = "";
        LocationInfo? blockLocation = null;
        var inputs = new List<InputDecl>();
        var outputs = new List<OutputDecl>();
        var lets = new List<LetDecl>();
        var layers = new List<LayerDecl>();
        var diagnostics = new List<DiagnosticInfo>();
        foreach (AttributeData attribute in type.GetAttributes())
        {
            ct.ThrowIfCancellationRequested();
            INamedTypeSymbol? cls = attribute.AttributeClass;
            if (cls is null || cls.ContainingNamespace?.ToDisplayString() != AttributeNamespace) continue;
            string kind = cls.Name.EndsWith("Attribute") ? cls.Name.Substring(0, cls.Name.Length - "Attribute".Length) : cls.Name;
            LocationInfo? location = LocationInfo.From(attribute);
            var a = new AttributeArguments(attribute, kind, location);
            switch (kind)
            {
                case "Network":
                    network = new NetworkDecl(a.RequiredString("name"), a.String("Block"), a.String("Args"),
                        a.Int("MinInputSize", 32), a.String("Frozen"), a.Bool("NormEval", true), location);
                    break;
                case "Block":
                    isBlock = true;
                    blockLocation = location;
                    parameters = a.String("parameters") ?? "";
                    break;
                case "Input":
                    inputs.Add(new InputDecl(a.RequiredString("name"), a.Number("Channels"), location));
                    break;
                case "Output":
                    outputs.Add(new OutputDecl(a.RequiredString("name"), a.RequiredString("from"), location));
                    break;
                case "Let":
                    lets.Add(new LetDecl(a.RequiredString("name"), a.RequiredString("expression"), location));
                    break;
                case "Conv":
                    layers.Add(new ConvDecl(a.RequiredString("name"), a.String("From"), a.String("When"), a.Bool("Trainable", true), location,
                        a.Number("Out"), a.Number("In"), a.Number("Kernel"), a.Number("Stride"), a.Number("Padding"), a.Number("Groups"),
                        a.Bool("Bias", false), a.Bool("Relu", false)));
                    break;
                case "BatchNorm":
                    layers.Add(new BatchNormDecl(a.RequiredString("name"), a.String("From"), a.String("When"), a.Bool("Trainable", true), location));
                    break;
                case "Relu":
                    layers.Add(new ReluDecl(a.String("name"), a.String("From"), a.String("When"), location));
                    break;
                case "MaxPool":
                    layers.Add(new MaxPoolDecl(a.String("name"), a.String("From"), a.String("When"), location,
                        a.Number("Kernel"), a.Number("Stride"), a.Number("Padding")));
                    break;
                case "Upsample":
                    layers.Add(new UpsampleDecl(a.RequiredString("name"), a.String("From"), a.String("When"), location, a.RequiredString("sizeOf")));
                    break;
                case "Add":
                    layers.Add(new AddDecl(a.RequiredString("name"), a.String("From"), a.String("When"), location,
                        a.RequiredString("left"), a.RequiredString("right")));
                    break;
                case "Buffer":
                    layers.Add(new BufferDecl(a.RequiredString("name"), a.RequiredInt("length"), location));
                    break;
                case "Use":
                    layers.Add(new UseDecl(a.RequiredString("name"), a.String("From"), a.String("When"), a.Bool("Trainable", true), location,
                        a.RequiredString("block"), a.String("Args"), a.String("Part")));
                    break;
                case "Stage":
                    layers.Add(new StageDecl(a.RequiredString("name"), a.String("From"), a.String("When"), a.Bool("Trainable", true), location,
                        a.RequiredString("block"), a.Number("Count"), a.String("Args"), a.String("First")));
                    break;
                case "Shared":
                    layers.Add(new SharedDecl(a.RequiredString("name"), a.String("From"), a.String("When"), a.Bool("Trainable", true), location,
                        a.RequiredString("block"), a.String("Args"), a.String("Part")));
                    break;
                default:
                    a.Fail("this attribute is not part of the description language the generator knows");
                    break;
            }
            a.RejectUnread();
            if (a.Error is { } error) diagnostics.Add(error);
        }

        return new BlockDecl(
            type.Name,
            type.ContainingNamespace is { IsGlobalNamespace: false } ns ? ns.ToDisplayString() : "",
            type.DeclaredAccessibility == Accessibility.Public ? "public" : "internal",
            isPartial,
            type.ContainingType is not null || type.IsGenericType,
            isBlock,
            network,
            parameters,
            inputs.ToEquatableArray(),
            outputs.ToEquatableArray(),
            lets.ToEquatableArray(),
            layers.ToEquatableArray(),
            diagnostics.ToEquatableArray(),
            network?.Location ?? blockLocation);
    }

    /// <summary>
    /// The arguments of one attribute by parameter or property name, read by the typed parse above.
    /// The first problem (missing, mistyped, unknown) is kept as <see cref="Error"/>; readers then
    /// return placeholders, so a declaration with an error is never expanded.
    /// </summary>
    private sealed class AttributeArguments
    {
        private readonly Dictionary<string, TypedConstant> _values = new(System.StringComparer.Ordinal);
        private readonly HashSet<string> _read = new(System.StringComparer.Ordinal);
        private readonly List<string> _order = [];
        private readonly string _kind;
        private readonly LocationInfo? _location;

        public AttributeArguments(AttributeData attribute, string kind, LocationInfo? location)
        {
            _kind = kind;
            _location = location;
            IMethodSymbol? ctor = attribute.AttributeConstructor;
            if (ctor is null && attribute.ConstructorArguments.Length > 0)
            {
                Fail("its constructor arguments do not match any constructor");
                return;
            }
            for (int i = 0; ctor is not null && i < attribute.ConstructorArguments.Length && i < ctor.Parameters.Length; i++)
                Add(ctor.Parameters[i].Name, attribute.ConstructorArguments[i]);
            foreach (KeyValuePair<string, TypedConstant> named in attribute.NamedArguments)
                Add(named.Key, named.Value);
        }

        public DiagnosticInfo? Error { get; private set; }

        private string Where
        {
            get
            {
                string? name = _values.TryGetValue("name", out TypedConstant n) && n.Value is string s ? s : null;
                return name is null ? $"[{_kind}]" : $"[{_kind}] '{name}'";
            }
        }

        private void Add(string name, TypedConstant value)
        {
            if (!_values.ContainsKey(name)) _order.Add(name);
            _values[name] = value;
        }

        public void Fail(string problem) => Fail(_kind, problem);

        private void Fail(string argument, string problem)
        {
            Error ??= new DiagnosticInfo(DiagnosticDescriptors.BadExpression.Id,
                new EquatableArray<string>([Where, argument, problem]), _location);
        }

        private bool TryGet(string name, out TypedConstant value)
        {
            _read.Add(name);
            if (_values.TryGetValue(name, out value) && !value.IsNull) return true;
            return false;
        }

        /// <summary>A string argument the attribute cannot do without (a constructor parameter).</summary>
        public string RequiredString(string name)
        {
            if (String(name) is { } text) return text;
            Fail(name, _values.ContainsKey(name)
                ? "the argument is null; give it a value"
                : $"the attribute has no argument '{name}' (the generator and GhmGen.Description disagree on its parameters)");
            return "";
        }

        /// <summary>An optional string argument.</summary>
        public string? String(string name)
        {
            if (!TryGet(name, out TypedConstant value)) return null;
            if (value.Kind == TypedConstantKind.Primitive && value.Value is string s) return s;
            Fail(name, "expected a string");
            return null;
        }

        /// <summary>An optional number of the language: an int, or a string holding an integer expression.</summary>
        public string? Number(string name)
        {
            if (!TryGet(name, out TypedConstant value)) return null;
            if (value.Kind == TypedConstantKind.Primitive)
            {
                if (value.Value is string s) return s;
                if (value.Value is int i) return i.ToString(CultureInfo.InvariantCulture);
            }
            Fail(name, "expected an int or a string holding an integer expression");
            return null;
        }

        /// <summary>An int argument the attribute cannot do without.</summary>
        public int RequiredInt(string name)
        {
            if (!_values.ContainsKey(name))
            {
                Fail(name, $"the attribute has no argument '{name}' (the generator and GhmGen.Description disagree on its parameters)");
                return 0;
            }
            return Int(name, 0);
        }

        public int Int(string name, int fallback)
        {
            if (!TryGet(name, out TypedConstant value)) return fallback;
            if (value.Kind == TypedConstantKind.Primitive && value.Value is int i) return i;
            Fail(name, "expected an int");
            return fallback;
        }

        public bool Bool(string name, bool fallback)
        {
            if (!TryGet(name, out TypedConstant value)) return fallback;
            if (value.Kind == TypedConstantKind.Primitive && value.Value is bool b) return b;
            Fail(name, "expected true or false");
            return fallback;
        }

        /// <summary>An argument the typed parse did not read is one the generator does not know.</summary>
        public void RejectUnread()
        {
            foreach (string name in _order)
                if (!_read.Contains(name))
                    Fail(name, $"[{_kind}] has no argument '{name}' that the generator knows (the generator and GhmGen.Description disagree)");
        }
    }
}
