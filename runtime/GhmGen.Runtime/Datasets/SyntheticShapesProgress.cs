namespace GhmGen.Datasets;

/// <summary>Where <see cref="SyntheticShapes.Write(string, SyntheticShapesOptions, IProgress{SyntheticShapesProgress}, CancellationToken)"/> stands: reported once per image written.</summary>
/// <param name="Written">Images written so far over both splits, this one included: 1 to <paramref name="Total"/> (train first, then val).</param>
/// <param name="Total">Images of both splits (<see cref="SyntheticShapesOptions.TrainImages"/> + <see cref="SyntheticShapesOptions.ValImages"/>).</param>
/// <param name="Split">The split being written: <see cref="SyntheticShapes.TrainSplit"/> or <see cref="SyntheticShapes.ValSplit"/>.</param>
public sealed record SyntheticShapesProgress(int Written, int Total, string Split);
