using System.CommandLine;
using GhmGen.Checkpoints;
using GhmGen.Cli.Commands;
using GhmGen.Models;

namespace GhmGen.Cli;

/// <summary>The <c>ghm</c> root command: wires the subcommands and runs one.</summary>
internal static class GhmCommand
{
    /// <summary>Builds the command tree.</summary>
    public static RootCommand Create() => new("GhmGen: RetinaNet with GHM losses for .NET")
    {
        ModelsCommand.Create(),
        DetectCommand.Create(),
        BenchCommand.Create(),
        CheckpointCommand.Create(() => ModelRegistry.All.Select(m => StateLayout.From(m.Create()))),
    };

    /// <summary>Parses and runs <paramref name="args"/>, writing to the given streams; returns the exit code.</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        ParseResult parsed = Create().Parse(args);
        return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }
}
