using System.CommandLine;
using GhmGen.Evaluation;

namespace GhmGen.Cli.Commands;

/// <summary>
/// <c>ghm eval --ann GT.json --results RES.json [--json] [--classwise]</c>: COCO box evaluation of
/// a results file, exactly as pycocotools computes it (<see cref="CocoEvaluator"/>). A results
/// entry whose image or category is not in the ground truth, malformed JSON or a missing field is
/// exit code 2 with a message naming the file and the entry; standard output stays empty then.
/// </summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var ann = new Option<string>("--ann") { Description = "COCO ground-truth file (instances_*.json)", Required = true };
        var results = new Option<string>("--results")
        {
            Description = "COCO results file: a JSON array of {\"image_id\", \"category_id\", \"bbox\": [x, y, w, h], \"score\"}",
            Required = true,
        };
        var json = new Option<bool>("--json") { Description = "Also print the figures and per-category AP as one JSON object, the last line" };
        var classwise = new Option<bool>("--classwise") { Description = "Also print a table of each category's AP (as mmdetection's classwise option)" };
        var command = new Command("eval", "Evaluate a COCO results file against its ground truth (box AP and AR, as pycocotools)")
        {
            ann, results, json, classwise,
        };
        command.SetAction(parse =>
        {
            CocoGroundTruth groundTruth = CocoFiles.LoadGroundTruth("--ann", parse.GetValue(ann)!);
            CocoResults detections = CocoFiles.LoadResults("--results", parse.GetValue(results)!, groundTruth);
            CocoEvaluation evaluation = CocoEvaluator.Evaluate(detections);
            EvaluationReport.Write(parse.InvocationConfiguration.Output, evaluation, parse.GetValue(classwise), parse.GetValue(json));
            return ExitCodes.Success;
        });
        return command;
    }
}
