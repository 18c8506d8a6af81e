using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;
using GhmGen.Checkpoints;
using GhmGen.Cli.Commands;
using GhmGen.Models;

namespace GhmGen.Cli;

/// <summary>
/// The <c>ghm</c> root command: wires the subcommands and runs one, turning every outcome into
/// one of the <see cref="ExitCodes"/>. Errors go to standard error; standard output carries only
/// results (and <c>--help</c>, <c>--version</c>).
/// </summary>
internal static class GhmCommand
{
    /// <summary>
    /// Builds the command tree. <paramref name="checkpointCandidates"/> yields the layouts that
    /// <c>checkpoint inspect</c> compares files with (default: the registered models).
    /// </summary>
    public static RootCommand Create(Func<IEnumerable<StateLayout>>? checkpointCandidates = null)
    {
        var root = new RootCommand("GhmGen: RetinaNet with GHM losses for .NET")
        {
            ModelsCommand.Create(),
            DetectCommand.Create(),
            TrainCommand.Create(),
            TestCommand.Create(),
            EvalCommand.Create(),
            DemoCommand.Create(),
            DatasetCommand.Create(),
            BenchCommand.Create(),
            CheckpointCommand.Create(checkpointCandidates ?? (() => ModelRegistry.All.Select(m => StateLayout.From(m.Create())))),
        };
        // On every command: an internal error prints the full exception too.
        root.Options.Add(new Option<bool>(VerboseName)
        {
            Description = "On an internal error, print the full exception with its stack trace",
            Recursive = true,
        });
        return root;
    }

    private const string VerboseName = "--verbose";

    /// <summary>Parses and runs <paramref name="args"/>, writing to the given streams; returns one of the <see cref="ExitCodes"/>.</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error, Func<IEnumerable<StateLayout>>? checkpointCandidates = null)
    {
        RootCommand root = Create(checkpointCandidates);
        ParseResult parsed = root.Parse(args);
        var configuration = new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false };
        VersionOption version = root.Options.OfType<VersionOption>().Single();
        if (parsed.Action is HelpAction || ReferenceEquals(parsed.Action, version.Action))
            return parsed.Invoke(configuration); // prints to standard output, exit 0

        string command = CommandName(parsed.CommandResult);
        List<string> problems = [.. parsed.Errors.Select(e => e.Message), .. OptionLikeArguments(parsed)];
        if (problems.Count > 0)
        {
            foreach (string problem in problems) error.WriteLine($"{command}: {problem}");
            error.WriteLine($"Run '{command} --help' for usage.");
            return ExitCodes.Usage;
        }

        try
        {
            return parsed.Invoke(configuration);
        }
        catch (UsageException e)
        {
            error.WriteLine($"{command}: {e.Message}");
            return ExitCodes.Usage;
        }
        catch (Exception e)
        {
            string message = e.Message.ReplaceLineEndings(" ").Trim();
            bool verbose = parsed.GetValue((Option<bool>)root.Options.Single(o => o.Name == VerboseName));
            error.WriteLine($"{command}: internal error: {e.GetType().Name}{(message.Length > 0 ? ": " + message : "")}"
                + (verbose ? "" : " (run with --verbose for the stack trace)"));
            if (verbose) error.WriteLine(e.ToString());
            return ExitCodes.Internal;
        }
    }

    /// <summary>"ghm detect", "ghm checkpoint seed": the command as typed, for message prefixes.</summary>
    private static string CommandName(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is CommandResult c; r = c.Parent)
            if (c.Parent is not null) names.Insert(0, c.Command.Name);
        return string.Join(' ', ["ghm", .. names]);
    }

    /// <summary>
    /// Unknown options that System.CommandLine took as values of a command's argument (an image
    /// path, a checkpoint file): any such value starting with '-' before a <c>--</c> separator.
    /// A file whose name starts with '-' is given after <c>--</c> or as <c>./-name</c>.
    /// </summary>
    private static IEnumerable<string> OptionLikeArguments(ParseResult parsed)
    {
        IReadOnlyList<Token> tokens = parsed.Tokens;
        int separator = tokens.Count;
        for (int i = 0; i < tokens.Count; i++)
            if (tokens[i].Type == TokenType.DoubleDash) { separator = i; break; }
        foreach (ArgumentResult argument in parsed.CommandResult.Children.OfType<ArgumentResult>())
            foreach (Token token in argument.Tokens)
            {
                if (token.Value.Length < 2 || token.Value[0] != '-') continue;
                int index = 0;
                while (index < tokens.Count && !ReferenceEquals(tokens[index], token)) index++;
                if (index < separator) yield return $"Unrecognized option '{token.Value}'.";
            }
    }
}
