using System.CommandLine;
using GhmGen.Datasets;

namespace GhmGen.Cli.Commands;

/// <summary><c>ghm dataset synth</c>: writes the synthetic shapes dataset (COCO json + PNGs).</summary>
internal static class DatasetCommand
{
    public static Command Create() => new("dataset", "Make datasets") { SynthCommand() };

    private static Command SynthCommand()
    {
        var outDir = new Option<string>("--out") { Description = "Folder to write into (created if missing; its parent must exist)", Required = true };
        Option<int> seed = CommonOptions.Int("--seed", "Seed: the same seed gives the same files", defaultValue: 0, min: 0, max: int.MaxValue);
        Option<int> train = CommonOptions.Int("--train-images", "Training images", defaultValue: 400, min: 1, max: 1_000_000);
        Option<int> val = CommonOptions.Int("--val-images", "Validation images", defaultValue: 100, min: 1, max: 1_000_000);
        Option<int> minSide = CommonOptions.Int("--min-side", "Smallest image side in pixels", defaultValue: 128, min: 64, max: 4096);
        Option<int> maxSide = CommonOptions.Int("--max-side", "Largest image side in pixels", defaultValue: 192, min: 64, max: 4096);
        var command = new Command("synth", "Write a COCO-format dataset of shapes (circle, square, triangle, star) on textured backgrounds, with train and val splits")
        {
            outDir, seed, train, val, minSide, maxSide,
        };
        command.SetAction(parse =>
        {
            string dir = parse.GetValue(outDir)!;
            OutputTargets.CheckFolder("--out", dir);
            var options = new SyntheticShapesOptions
            {
                Seed = parse.GetValue(seed),
                TrainImages = parse.GetValue(train),
                ValImages = parse.GetValue(val),
                MinImageSide = parse.GetValue(minSide),
                MaxImageSide = parse.GetValue(maxSide),
            };
            if (options.MinImageSide > options.MaxImageSide)
                throw new UsageException($"--min-side {options.MinImageSide} is larger than --max-side {options.MaxImageSide}");
            TextWriter error = parse.InvocationConfiguration.Error;
            int total = options.TrainImages + options.ValImages;
            var bar = new ProgressBar("ghm dataset synth", error);
            var progress = new BarProgress(bar, total);
            SyntheticShapesSummary summary;
            try
            {
                summary = SyntheticShapes.Write(dir, options, progress);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UsageException($"--out '{dir}' cannot be written: {OutputTargets.Reason(e, dir)}", e);
            }
            bar.Finish(total);
            TextWriter output = parse.InvocationConfiguration.Output;
            foreach (SyntheticSplitSummary split in (SyntheticSplitSummary[])[summary.Train, summary.Val])
                output.WriteLine($"{split.Name}: {split.Images} images, {split.Objects} objects (small {split.Small}, medium {split.Medium}, large {split.Large}); annotations {split.AnnotationFile}, images {split.ImageDirectory}");
            return ExitCodes.Success;
        });
        return command;
    }

    // Progress<T> would post reports to the thread pool, out of order and after Finish.
    private sealed class BarProgress(ProgressBar bar, int total) : IProgress<int>
    {
        public void Report(int value) => bar.Update(value, total, "images");
    }
}
