using GhmGen.Description;
using GhmGen.Models.Blocks;

namespace MyApp;

// Deliberately wrong: a head of zero classes. This project must not build: the generator from the
// GhmGen package reports GHM004 at the [Network] attribute (checked by .ci/run).
[Network("bad-detector", Block = nameof(RetinaNet), Args = "classes = 0")]
public sealed partial class BadDetector;
