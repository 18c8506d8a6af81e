namespace GhmGen.Evaluation;

/// <summary>Where <see cref="CocoEvaluator.Evaluate(CocoResults, int, IProgress{CocoEvaluationProgress}?, CancellationToken)"/> stands: reported once per category.</summary>
/// <param name="CategoriesDone">Categories evaluated so far, this one included: 1 to <paramref name="Categories"/>.</param>
/// <param name="Categories">Categories of the ground truth (all of them are evaluated).</param>
/// <param name="Category">The category just evaluated: its index in <see cref="CocoGroundTruth.Categories"/>.</param>
public sealed record CocoEvaluationProgress(int CategoriesDone, int Categories, int Category);
