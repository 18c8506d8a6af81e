namespace GhmGen.Bench.SideBySide;

/// <summary>One framework's prepared forward pass of a seeded network on the seeded input.</summary>
internal interface IFrameworkRunner : IDisposable
{
    /// <summary>The framework label printed in the side-by-side table, e.g. <c>ghmgen</c>.</summary>
    string Framework { get; }

    /// <summary>Runs one forward pass to completion (outputs materialised in host memory).</summary>
    void Forward();

    /// <summary>
    /// The ten head outputs of the last <see cref="Forward"/>, in the order
    /// cls_p3..cls_p7 then reg_p3..reg_p7, each row-major, concatenated.
    /// </summary>
    float[] HeadOutputs();
}
