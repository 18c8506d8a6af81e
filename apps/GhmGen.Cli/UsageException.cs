namespace GhmGen.Cli;

/// <summary>
/// Bad usage or a bad input file, found by a command: <see cref="GhmCommand.Run"/> prints the
/// message after the command's name and exits with <see cref="ExitCodes.Usage"/>.
/// </summary>
internal sealed class UsageException(string message, Exception? inner = null) : Exception(message, inner);
