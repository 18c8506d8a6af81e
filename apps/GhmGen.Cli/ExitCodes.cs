namespace GhmGen.Cli;

/// <summary>
/// The exit codes of every <c>ghm</c> command, the same for all of them (README, "Exit codes and
/// output files"). A script can rely on them; messages go to standard error.
/// </summary>
internal static class ExitCodes
{
    /// <summary>Everything asked for was done.</summary>
    public const int Success = 0;

    /// <summary>
    /// The command finished, but not with every input intact: an image was skipped, decoded with a
    /// warning (a truncated JPEG), or an output file of one image could not be written.
    /// </summary>
    public const int Incomplete = 1;

    /// <summary>
    /// Bad usage or a bad input file (unknown option, unparsable value, missing required option,
    /// unknown model, unusable checkpoint or output path): stopped before any work, nothing on
    /// standard output.
    /// </summary>
    public const int Usage = 2;

    /// <summary>An unexpected exception: a one-line message (the stack trace with <c>--verbose</c>).</summary>
    public const int Internal = 3;

    // ghm train also uses 4 (a loss became NaN or infinite), 5 (under mpirun: a rank died or a
    // collective timed out; MpiCommunicator.LostRankExitCode) and 130 (Ctrl+C): TrainCommand.
}
